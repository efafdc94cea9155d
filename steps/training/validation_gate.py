"""Step: stop the run (or warn) on the data quality and drift verdicts."""

import logging
from typing import Annotated

from zenml import log_metadata, step

from xray.integrations.validation import gate
from xray.logic.constants import VALIDATION_SUMMARY_ARTIFACT
from xray.logic.records import GateVerdict, ValidationSummary

logger = logging.getLogger(__name__)


@step
def validation_gate(
    quality_verdict: GateVerdict, drift_verdict: GateVerdict
) -> Annotated[ValidationSummary, VALIDATION_SUMMARY_ARTIFACT]:
    """Fails listing every failed check of a gate in ``fail`` mode; records warnings.

    Args:
        quality_verdict: Verdict of ``check_data_quality``.
        drift_verdict: Verdict of ``check_data_drift``.

    Returns:
        A summary (passed, warnings) that the model version records.
    """
    warnings = gate([quality_verdict.model_dump(), drift_verdict.model_dump()])
    for line in warnings:
        logger.warning("Data validation warning: %s", line)
    summary = ValidationSummary(
        passed=quality_verdict.passed and drift_verdict.passed,
        warnings=warnings,
        quality_failed_checks=quality_verdict.failed_checks,
        drift_failed_checks=drift_verdict.failed_checks,
        drift_share=drift_verdict.details.get("drift_share", 0.0),
        skipped=quality_verdict.details.get("skipped", 0),
    )
    log_metadata(metadata=summary.model_dump(mode="json"))
    return summary
