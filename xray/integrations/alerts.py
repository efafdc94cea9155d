"""Sending an alert to a webhook (Slack-compatible JSON: ``text`` plus the details)."""

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

WEBHOOK_ENV = "XRAY_ALERT_WEBHOOK_URL"


def webhook_url() -> str | None:
    """The webhook from ``XRAY_ALERT_WEBHOOK_URL`` (a secret: never logged)."""
    return os.environ.get(WEBHOOK_ENV) or None


def post_webhook(url: str, text: str, details: dict[str, Any], timeout: float = 10) -> str:
    """POSTs ``{"text": ..., "details": ...}`` to ``url``.

    Returns:
        What happened, for the report: ``webhook: delivered (HTTP 200)`` or why not (the
        URL is not repeated: it often carries a token).
    """
    import httpx

    try:
        response = httpx.post(url, json={"text": text, "details": details}, timeout=timeout)
    except httpx.HTTPError as exc:
        logger.warning("Alert webhook unreachable: %s", type(exc).__name__)
        return f"webhook: not delivered ({type(exc).__name__}: the receiver cannot be reached)"
    if response.status_code >= 300:
        logger.warning("Alert webhook answered HTTP %d", response.status_code)
        return f"webhook: not delivered (HTTP {response.status_code})"
    return f"webhook: delivered (HTTP {response.status_code})"
