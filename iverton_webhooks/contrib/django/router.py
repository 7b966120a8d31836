"""A router that also dispatches to the receivers of the Django signals."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from django.dispatch import Signal

from ..._router import Handler, Router
from ...events import Event
from .dispatch import ListedSignal
from .models import WebhookEvent
from .signals import SIGNALS, webhook_received


def _live_receivers(signal: Signal) -> list[Callable[..., Any]]:
    # Our signals list their receivers (public API only); any other Signal cannot be
    # asked one by one without Django's private API, so it is not dispatched here.
    if isinstance(signal, ListedSignal):
        return signal.receivers_for(WebhookEvent)
    return []


def _send(signal: Signal, receiver: Callable[..., Any], event: Event[Any]) -> Any:
    return receiver(signal=signal, sender=WebhookEvent, event=event)


def _signal_name(signal: Signal) -> str:
    if signal is webhook_received:
        return "webhook_received"
    return next(t for t, s in SIGNALS.items() if s is signal).replace(".", "_")


class SignalRouter(Router):
    """``base``'s handlers, then one handler per live receiver of ``webhook_received`` and
    of the event type's signal. Receivers are looked up at processing time, so ones
    connected later count too. A receiver's handler name is its ``module.qualname`` plus
    the signal, stable across processes."""

    def __init__(self, base: Router) -> None:
        super().__init__(strict=base.strict)
        self.include(base)

    def handlers_for(self, event_type: str) -> list[Handler]:
        handlers = super().handlers_for(event_type)
        signals: list[Signal] = [webhook_received]
        if event_type in SIGNALS:
            signals.append(SIGNALS[event_type])
        for signal in signals:
            for receiver in _live_receivers(signal):
                name = f"{receiver.__module__}.{receiver.__qualname__} ({_signal_name(signal)})"
                handlers.append(
                    Handler(
                        func=partial(_send, signal, receiver),
                        name=name,
                        is_async=inspect.iscoroutinefunction(receiver),
                    )
                )
        return handlers
