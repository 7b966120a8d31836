"""Webhook handlers of the example CRM. They run after the 2xx, in an app context.

``from iverton_webhooks import on`` and ``@on("deal.won")`` register on the global router,
which the extension uses by default. This example keeps its own :class:`Router` instead, so
importing it (its tests do) adds nothing to other code's global router.
"""

from __future__ import annotations

import logging

from crm import connect
from flask import current_app

from iverton_webhooks import Event, Router
from iverton_webhooks.events import Contact, Deal, Email

router = Router()
log = logging.getLogger(__name__)


@router.on("deal.won")
def record_won_deal(event: Event[Deal]) -> None:
    deal = event.data
    fields = deal.model_extra or {}  # the sender documents only the id: read extras carefully
    with connect(current_app.config["CRM_DATABASE"]) as db:
        # Keyed by deal id: a replayed event updates the row instead of adding another.
        db.execute(
            "INSERT OR REPLACE INTO won_deals (deal_id, name, value, currency, event_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (deal.id, fields.get("name"), fields.get("value"), fields.get("currency"), event.id),
        )


@router.on("email.bounced", "email.complained")
def suppress_address(event: Event[Email]) -> None:
    address = (event.data.model_extra or {}).get("to")
    if not address:
        log.warning("%s %s names no address; nothing to suppress", event.type, event.id)
        return
    with connect(current_app.config["CRM_DATABASE"]) as db:
        db.execute(
            "INSERT OR IGNORE INTO suppressed (address, reason, event_id) VALUES (?, ?, ?)",
            (address, event.type, event.id),
        )


@router.on("contact.*")
def log_contact(event: Event[Contact]) -> None:
    log.info("%s: %s", event.type, event.data.email)
