"""A realistic sample payload for every event type (for tests, demos, "send test").

The sample resources live in the catalogue (`iverton_webhooks._catalogue`).

>>> event = sample_event("deal.won", id="evt_42")
>>> event["id"], event["type"], event["data"]["stage"]
('evt_42', 'deal.won', 'won')
>>> sample_event("contact.created", data={"email": "ada@example.com"})["data"]["email"]
'ada@example.com'
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from typing import Any

from ._catalogue import CATALOGUE

__all__ = [
    "new_event_id",
    "sample_body",
    "sample_event",
    "send_sample",
]


def new_event_id() -> str:
    """A fresh id in the sender's style, unique per call."""
    return "evt_" + secrets.token_hex(12)


def sample_event(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A payload dict for ``event_type`` with a fresh id and the current time.

    Keyword arguments replace envelope fields; a ``data`` dict is merged into the
    sample resource instead of replacing it.
    """
    data = CATALOGUE.sample_data(event_type)  # ValueError for a type it does not know
    data.update(overrides.pop("data", None) or {})
    event: dict[str, Any] = {
        "id": new_event_id(),
        "type": event_type,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": data,
    }
    event.update(overrides)
    return event


def sample_body(event_type: str, **overrides: Any) -> bytes:
    """`sample_event` serialised the way the sender does: compact UTF-8 JSON."""
    return json.dumps(sample_event(event_type, **overrides), separators=(",", ":")).encode()


def send_sample(
    url: str, event_type: str, secret: str, *, timeout: float = 10.0, **overrides: Any
) -> tuple[int, bytes]:
    """POST a signed sample event to ``url``, like the dashboard's "Send Test" button.

    Returns the response status and body; HTTP errors are returned, not raised.
    """
    import urllib.error
    import urllib.request

    from ._signature import SIGNATURE_HEADER, sign

    body = sample_body(event_type, **overrides)
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
