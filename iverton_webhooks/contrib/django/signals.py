"""Django signals sent while an event is processed.

``webhook_received`` fires for every event; each of the 22 types has its own signal
(``deal_won``, ``email_bounced``, ...; ``SIGNALS`` maps type names to them). Receivers get
``sender=WebhookEvent`` and ``event=`` the typed :class:`~iverton_webhooks.Event`::

    from django.dispatch import receiver
    from iverton_webhooks.contrib.django.signals import deal_won

    @receiver(deal_won)
    def celebrate(sender, event, **kwargs): ...

Each connected receiver is tracked as a handler of its own: its outcome is recorded,
and a retry runs only the receivers that failed.
"""

from __future__ import annotations

from django.dispatch import Signal

webhook_received = Signal()

contact_created = Signal()
contact_updated = Signal()
contact_deleted = Signal()
contact_subscribed = Signal()
contact_unsubscribed = Signal()
campaign_created = Signal()
campaign_scheduled = Signal()
campaign_sent = Signal()
campaign_completed = Signal()
email_delivered = Signal()
email_opened = Signal()
email_clicked = Signal()
email_bounced = Signal()
email_complained = Signal()
deal_created = Signal()
deal_updated = Signal()
deal_stage_changed = Signal()
deal_won = Signal()
deal_lost = Signal()
client_created = Signal()
client_updated = Signal()
client_deleted = Signal()

#: Event type name -> its signal.
SIGNALS: dict[str, Signal] = {
    name.replace("_", ".", 1): signal
    for name, signal in list(globals().items())
    if isinstance(signal, Signal) and name != "webhook_received"
}
