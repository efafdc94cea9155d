"""Workarounds for defects of the pinned ZenML version that a stack in ``stacks/`` hits.

Each names the defect and how it shows; ``tests/unit/test_upstream.py`` fails once the
pinned version fixes it, so the workaround is removed rather than kept by habit.
"""

from stacks.registry import StackSpec


def sagemaker_step_operator_session() -> bool:
    """ZenML 0.98's ``SagemakerStepOperator.sagemaker_session`` reads
    ``self._sagemaker_session``, which nothing sets unless a service connector has
    expired, so every step it submits fails with ``AttributeError: 'SagemakerStepOperator'
    object has no attribute '_sagemaker_session'`` (found by rehearsing
    ``sagemaker-hybrid``). The class default makes the property build the session.

    Returns:
        Whether the workaround was needed (False once ZenML initializes it).
    """
    from zenml.integrations.aws.step_operators.sagemaker_step_operator import (
        SagemakerStepOperator,
    )

    if hasattr(SagemakerStepOperator, "_sagemaker_session"):
        return False
    SagemakerStepOperator._sagemaker_session = None  # type: ignore[attr-defined]
    return True


def apply_upstream_fixes(spec: StackSpec) -> None:
    """Applies the workarounds ``spec``'s components need, in this process (where a
    hybrid stack's step operator submits its jobs)."""
    operator = spec.component("step_operator")
    if operator is not None and operator.flavor == "sagemaker":
        sagemaker_step_operator_session()
