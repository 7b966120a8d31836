"""A realistic sample payload for each of the 22 event types (for tests, demos, "send test").

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

from .events import EVENT_TYPES

_CONTACT = {
    "id": "con_456def",
    "email": "john@example.com",
    "first_name": "John",
    "last_name": "Doe",
    "phone": "+44 20 7946 0958",
    "company": "Acme Ltd",
    "tags": ["newsletter", "trial"],
    "lists": ["lst_01h2x"],
    "created_at": "2024-01-15T10:29:58Z",
}
_CAMPAIGN = {
    "id": "cmp_789ghi",
    "name": "January product update",
    "subject": "What's new in January",
    "from_email": "news@example.com",
    "list_ids": ["lst_01h2x"],
    "status": "draft",
    "recipients": 1250,
}
_EMAIL = {
    "id": "eml_321jkl",
    "campaign_id": "cmp_789ghi",
    "contact_id": "con_456def",
    "to": "john@example.com",
    "subject": "What's new in January",
    "sent_at": "2024-01-15T10:00:00Z",
}
_DEAL = {
    "id": "deal_654mno",
    "name": "Acme Ltd annual plan",
    "value": 12000,
    "currency": "GBP",
    "stage": "proposal",
    "pipeline": "sales",
    "contact_id": "con_456def",
    "client_id": "cli_987pqr",
    "owner": "usr_12",
}
_CLIENT = {
    "id": "cli_987pqr",
    "name": "Acme Ltd",
    "domain": "acme.example",
    "industry": "Manufacturing",
    "owner": "usr_12",
}

_EXTRAS: dict[str, dict[str, Any]] = {
    "contact.updated": {"changed": ["phone"]},
    "contact.deleted": {"deleted": True},
    "contact.subscribed": {"list_id": "lst_01h2x", "source": "signup_form"},
    "contact.unsubscribed": {"list_id": "lst_01h2x", "reason": "too_frequent"},
    "campaign.scheduled": {"status": "scheduled", "scheduled_at": "2024-01-16T09:00:00Z"},
    "campaign.sent": {"status": "sending", "sent_at": "2024-01-16T09:00:02Z"},
    "campaign.completed": {"status": "sent", "delivered": 1231, "bounced": 19},
    "email.delivered": {"delivered_at": "2024-01-16T09:00:05Z"},
    "email.opened": {"opened_at": "2024-01-16T09:12:44Z", "user_agent": "Mozilla/5.0"},
    "email.clicked": {"url": "https://example.com/pricing", "clicked_at": "2024-01-16T09:13:02Z"},
    "email.bounced": {"bounce_type": "hard", "reason": "550 5.1.1 mailbox does not exist"},
    "email.complained": {"feedback_type": "abuse", "reported_at": "2024-01-16T11:40:00Z"},
    "deal.updated": {"changed": ["value"], "value": 14000},
    "deal.stage_changed": {"previous_stage": "qualified", "stage": "proposal"},
    "deal.won": {"stage": "won", "closed_at": "2024-01-20T16:05:00Z"},
    "deal.lost": {"stage": "lost", "lost_reason": "budget", "closed_at": "2024-01-20T16:05:00Z"},
    "client.updated": {"changed": ["industry"]},
    "client.deleted": {"deleted": True},
}
_BY_FAMILY: dict[str, dict[str, Any]] = {
    "contact": _CONTACT,
    "campaign": _CAMPAIGN,
    "email": _EMAIL,
    "deal": _DEAL,
    "client": _CLIENT,
}


def new_event_id() -> str:
    """A fresh id in the sender's style, unique per call."""
    return "evt_" + secrets.token_hex(12)


def sample_event(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A payload dict for ``event_type`` with a fresh id and the current time.

    Keyword arguments replace envelope fields; a ``data`` dict is merged into the
    sample resource instead of replacing it.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"no sample for {event_type!r}; known types: {', '.join(EVENT_TYPES)}")
    data = {**_BY_FAMILY[event_type.partition(".")[0]], **_EXTRAS.get(event_type, {})}
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
    """:func:`sample_event` serialised the way the sender does: compact UTF-8 JSON."""
    return json.dumps(sample_event(event_type, **overrides), separators=(",", ":")).encode()


def send_sample(
    url: str, event_type: str, secret: str, *, timeout: float = 10.0, **overrides: Any
) -> tuple[int, bytes]:
    """POST a signed sample event to ``url``, like the dashboard's "Send Test" button.

    Returns the response status and body; HTTP errors are returned, not raised.
    """
    import urllib.error
    import urllib.request

    from .signature import SIGNATURE_HEADER, sign

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
