"""The pinned ZenML's defects that the project works around (stacks/upstream.py)."""

import subprocess
import sys

from stacks.registry import load_stack_spec
from stacks.upstream import apply_upstream_fixes

PROBE = """
from zenml.integrations.aws.step_operators.sagemaker_step_operator import SagemakerStepOperator
print(hasattr(SagemakerStepOperator, "_sagemaker_session"))
"""


def test_zenml_still_leaves_the_sagemaker_step_operator_session_unset() -> None:
    """When this fails, ZenML has fixed it: delete sagemaker_step_operator_session."""
    fresh = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert fresh.stdout.strip().splitlines()[-1] == "False", fresh.stderr[-2000:]


def test_the_sagemaker_hybrid_stack_gets_a_session_default() -> None:
    from zenml.integrations.aws.step_operators.sagemaker_step_operator import (
        SagemakerStepOperator,
    )

    apply_upstream_fixes(load_stack_spec("sagemaker-hybrid", placeholders=True))
    assert SagemakerStepOperator._sagemaker_session is None  # the property then builds it
