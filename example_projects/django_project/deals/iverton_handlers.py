"""Imported at start-up by the iverton_webhooks app (like admin.py). Handlers run after
the sender has its 200, in worker threads; each one is retried on its own if it fails."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from iverton_webhooks import Event, on
from iverton_webhooks.contrib.django.signals import webhook_received
from iverton_webhooks.events import Contact, Deal

log = logging.getLogger("deals")


@on("deal.won")
def celebrate(event: Event[Deal]) -> None:
    log.info("deal %s won (event %s)", event.data.id, event.id)


@on("contact.created", "contact.updated")
def sync_contact(event: Event[Contact]) -> None:
    log.info("contact %s is %s", event.data.id, event.data.email)


# Django signals work too: every event, or one type (signals.deal_won, ...).
@receiver(webhook_received)
def audit(sender: Any, event: Event, **kwargs: Any) -> None:
    log.info("audit: %s %s", event.type, event.id)
