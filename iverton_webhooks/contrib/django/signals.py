"""Django signals sent while an event is processed.

``webhook_received`` fires for every event; each event type in the catalogue has its
own signal, named after it (``deal_won``, ``email_bounced``, ...; ``SIGNALS`` maps type
names to them). Receivers get ``sender=WebhookEvent`` and ``event=`` the typed
:class:`~iverton_webhooks.Event`::

    from django.dispatch import receiver
    from iverton_webhooks.contrib.django.signals import deal_won

    @receiver(deal_won)
    def celebrate(sender, event, **kwargs): ...

Each connected receiver is tracked as a handler of its own: its outcome is recorded,
and a retry runs only the receivers that failed.
"""

from __future__ import annotations

from django.dispatch import Signal

from ...catalogue import CATALOGUE, Catalogue

webhook_received = Signal()


def signal_name(event_type: str) -> str:
    """The module attribute for a type's signal: ``"deal.won"`` -> ``"deal_won"``."""
    return event_type.replace(".", "_")


def build_signals(catalogue: Catalogue) -> dict[str, Signal]:
    """One new signal per event type of ``catalogue``, keyed by type name."""
    return {event_type: Signal() for event_type in catalogue.types}


#: Event type name -> its signal.
SIGNALS: dict[str, Signal] = build_signals(CATALOGUE)

# Derived from the catalogue, so a new family brings its signals with it; each one is
# also a module attribute so ``from ...signals import deal_won`` works.
globals().update({signal_name(event_type): signal for event_type, signal in SIGNALS.items()})


def __getattr__(name: str) -> Signal:
    # Never reached for a real signal (those are module attributes); tells type checkers
    # that the generated names exist.
    raise AttributeError(f"module {__name__!r} has no signal {name!r}")
