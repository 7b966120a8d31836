"""Django signals sent while an event is processed.

``webhook_received`` fires for every event; each event type in the catalogue has its
own signal, named after it (``deal_won``, ``email_bounced``, ...; ``SIGNALS`` maps type
names to them). Receivers get ``sender=WebhookEvent`` and ``event=`` the typed
`Event`::

    from django.dispatch import receiver
    from iverton_webhooks.contrib.django.signals import deal_won

    @receiver(deal_won)
    def celebrate(sender, event, **kwargs): ...

Each connected receiver is tracked as a handler of its own: its outcome is recorded,
and a retry runs only the receivers that failed.

Lifecycle signals, one per `Hook`, named
``iverton_<hook>`` (``iverton_dead``, ``iverton_endpoint_at_risk``, ...; ``HOOK_SIGNALS``
maps hooks to them), are sent with ``sender=WebhookEvent`` and ``notice=`` the
`Notice`. They observe only: a receiver that raises is
logged, and changes neither the reply nor the event's outcome::

    from django.dispatch import receiver
    from iverton_webhooks.contrib.django.signals import iverton_dead

    @receiver(iverton_dead)
    def page_someone(sender, notice, **kwargs): ...
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

from ..._catalogue import CATALOGUE, Catalogue
from ..._logs import fields
from ..._text import printable
from ...hooks import Hook, Hooks, Notice
from .dispatch import ListedSignal

log = logging.getLogger("iverton_webhooks")

webhook_received = ListedSignal()


def signal_name(event_type: str) -> str:
    """The module attribute for a type's signal: ``"deal.won"`` -> ``"deal_won"``."""
    return event_type.replace(".", "_")


def build_signals(catalogue: Catalogue) -> dict[str, Signal]:
    """One new signal per event type of ``catalogue``, keyed by type name."""
    return {event_type: ListedSignal() for event_type in catalogue.types}


#: Event type name -> its signal.
SIGNALS: dict[str, Signal] = build_signals(CATALOGUE)

# Derived from the catalogue, so a new family brings its signals with it; each one is
# also a module attribute so ``from ...signals import deal_won`` works.
globals().update({signal_name(event_type): signal for event_type, signal in SIGNALS.items()})


#: Lifecycle hook -> its signal.
HOOK_SIGNALS: dict[Hook, Signal] = {hook: Signal() for hook in Hook}
globals().update({f"iverton_{hook.value}": signal for hook, signal in HOOK_SIGNALS.items()})


class SignalHooks(Hooks):
    """Hooks that also send each hook's signal. A hook is wanted while a plain
    subscriber or a signal receiver listens to it, so an ack that nobody observes
    builds no `Notice` and sends nothing. A signal receiver that raises is logged, and
    the others still run."""

    def wants(self, hook: Hook) -> bool:
        return bool(HOOK_SIGNALS[hook].receivers) or super().wants(hook)

    def __bool__(self) -> bool:
        return any(signal.receivers for signal in HOOK_SIGNALS.values()) or super().__bool__()

    def emit(self, notice: Notice) -> None:
        signal = HOOK_SIGNALS[notice.hook]
        if signal.receivers:
            from .models import WebhookEvent  # at send time: the app registry is ready

            for receiver, outcome in signal.send_robust(sender=WebhookEvent, notice=notice):
                if isinstance(outcome, Exception):
                    log.error(
                        "signal iverton_%s receiver %s raised (ignored): %s",
                        notice.hook.value,
                        printable(getattr(receiver, "__qualname__", receiver)),
                        printable(outcome),
                        exc_info=outcome,
                        extra=fields(
                            event_id=notice.event_id,
                            event_type=notice.event_type,
                            endpoint=notice.endpoint,
                            handler=notice.handler,
                        ),
                    )
        super().emit(notice)


#: The hooks of every receiver built from the settings: each hook sends its signal.
#: Subscribe plain functions here too (``signal_hooks.on(Hook.DEAD)``).
signal_hooks = SignalHooks()


def __getattr__(name: str) -> Signal:
    # Never reached for a real signal (those are module attributes); tells type checkers
    # that the generated names exist.
    raise AttributeError(f"module {__name__!r} has no signal {name!r}")
