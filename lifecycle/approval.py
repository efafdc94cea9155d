"""A person's sign-off on a model version, and moving a version into production by hand
(after ``require_approval``, or on a challenger's live evidence)."""

import logging
from datetime import UTC, datetime
from typing import Any

from xray.logic.constants import (
    MODEL_CARD_ARTIFACT,
    MODEL_CARD_HTML_ARTIFACT,
    REGISTERED_RELEASE_ARTIFACT,
)

logger = logging.getLogger(__name__)


class ApprovalError(RuntimeError):
    """The version cannot be signed off or promoted; the message says why and what to do."""


def find_version(model_name: str, version: str) -> Any:
    """A model version by number or stage.

    Raises:
        ApprovalError: No such version.
    """
    from zenml.client import Client

    try:
        return Client().get_model_version(model_name, version)
    except KeyError:
        raise ApprovalError(
            f"Model '{model_name}' has no version {version!r}: list them with "
            f"zenml model version list {model_name}"
        ) from None


def log_model_metadata(version: Any, metadata: dict[str, Any]) -> None:
    """Adds metadata to a model version found with the client (outside a step)."""
    from zenml import log_metadata

    log_metadata(metadata=metadata, model_version_id=version.id)


def passed_gates(version: Any) -> tuple[bool, list[str]]:
    """Whether the version's promotion decision passed every gate, and the failed ones."""
    promotion = version.run_metadata.get("promotion") or {}
    checks = promotion.get("checks") or {}
    failed = [r for r in promotion.get("reasons", []) if str(r).startswith("FAILED")]
    return bool(checks) and all(checks.values()), failed


def sign_off(version: Any, by: str, note: str, evidence: str = "") -> dict[str, Any]:
    """Records the sign-off in the version's metadata (``approval``) and as a new
    version of its model card (Markdown and HTML, linked to the model version), then
    makes it the production version (the previous one is archived).

    Returns:
        The recorded approval.
    """
    from zenml import Model, link_artifact_to_model, save_artifact
    from zenml.types import HTMLString, MarkdownString

    from xray.reporting.model_card import card_from_release, render_model_card

    approval = {
        "by": by,
        "note": note,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "evidence": evidence,
        "previous_stage": str(version.stage or ""),
    }
    log_model_metadata(version, {"approval": approval})
    try:
        release = version.get_artifact(REGISTERED_RELEASE_ARTIFACT).load()
    except (AttributeError, KeyError):
        release = None
    if release is not None:
        card = card_from_release(release)
        card["approval"] = approval
        markdown, html = render_model_card(card)
        model = Model(name=version.model.name, version=str(version.number))
        for data, name in (
            (MarkdownString(markdown), MODEL_CARD_ARTIFACT),
            (HTMLString(html), MODEL_CARD_HTML_ARTIFACT),
        ):
            link_artifact_to_model(save_artifact(data, name=name), model=model)
    else:
        logger.warning("Version %s has no release record: its card is unchanged", version.number)
    version.set_stage("production", force=True)
    return approval


def approve(model_name: str, version_id: str, by: str, note: str) -> tuple[Any, dict[str, Any]]:
    """``python run.py approve``: signs a version off and promotes it.

    Raises:
        ApprovalError: No such version, no name or note, or a version that did not pass
            the promotion gates (listing the failed ones).
    """
    if not by.strip() or not note.strip():
        raise ApprovalError("A sign-off needs a name and a note: --by NAME --note TEXT")
    version = find_version(model_name, version_id)
    passed, failed = passed_gates(version)
    if not passed:
        raise ApprovalError(
            f"Version {version.number} did not pass the promotion gates, so it cannot be "
            "signed off: " + ("; ".join(failed) or "it has no promotion decision")
        )
    return version, sign_off(version, by, note)
