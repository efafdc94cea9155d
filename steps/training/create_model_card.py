"""Step: the model card (Markdown and HTML) of this run's model version."""

from typing import Annotated

from zenml import log_metadata, step
from zenml.types import HTMLString, MarkdownString

from xray.logic.constants import MODEL_CARD_ARTIFACT, MODEL_CARD_HTML_ARTIFACT
from xray.logic.records import ReleaseRecord
from xray.reporting.model_card import card_from_release, render_model_card


@step
def create_model_card(
    release: ReleaseRecord,
) -> tuple[
    Annotated[MarkdownString, MODEL_CARD_ARTIFACT],
    Annotated[HTMLString, MODEL_CARD_HTML_ARTIFACT],
]:
    """Writes what a user of this version must know: intended use and the not-a-medical-
    device statement, data and licence, split, training config, test metrics with 95 %
    bootstrap intervals, the threshold and why, calibration, validation verdicts and
    known limitations.

    Args:
        release: The version's release record (``make_release_record``).

    Returns:
        The card as Markdown and as standalone HTML (both are dashboard visualizations).
    """
    markdown, html = render_model_card(card_from_release(release))
    log_metadata(metadata={"model_card_chars": len(markdown)})
    return MarkdownString(markdown), HTMLString(html)
