"""Lifecycle hooks: one way, for every framework, to be told what happens to events
(see docs/monitoring.md). A subscriber is given a `Notice`.

Hooks only observe: a subscriber that raises is logged and skipped. Subscribers run in
the thread that reached the moment (the request thread for the receive-side hooks), so
keep them quick.

>>> hooks = Hooks()
>>> seen = []
>>> hooks.add(seen.append, Hook.DUPLICATE)
>>> hooks.emit(Notice(Hook.RECEIVED, "default", event_id="evt_1"))
>>> hooks.emit(Notice(Hook.DUPLICATE, "default", event_id="evt_1"))
>>> [(n.hook.value, n.event_id) for n in seen]
[('duplicate', 'evt_1')]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from ._logs import fields
from ._text import printable

__all__ = ["Hook", "Hooks", "Notice", "Subscriber"]

log = logging.getLogger("iverton_webhooks")


class Hook(str, Enum):
    """The moments a subscriber can be told about."""

    #: A new event was verified and recorded (answered 200 accepted).
    RECEIVED = "received"
    #: A delivery of an event already recorded (answered 200 duplicate).
    DUPLICATE = "duplicate"
    #: Signed but unreadable: kept aside unprocessed, at receipt or at processing.
    QUARANTINED = "quarantined"
    #: Verified but older than ``max_age``: answered 200 expired, not recorded.
    EXPIRED = "expired"
    #: The signature did not verify: answered 401.
    REFUSED = "refused"
    #: The store could not record the event: answered 503.
    STORE_DOWN = "store_down"
    #: One handler raised (or timed out) on an event; it will be retried or die.
    HANDLER_FAILED = "handler_failed"
    #: A newest-only handler was not given an event older than one it already applied
    #: (``handler`` names it); the event still ends done.
    SUPERSEDED = "superseded"
    #: An event used up its attempts; it waits for a replay.
    DEAD = "dead"
    #: No handler matches the event's type; it is kept, replayable.
    UNHANDLED = "unhandled"
    #: Every handler of an event succeeded.
    DONE = "done"
    #: Several non-2xx answers in a row: the sender may soon disable the endpoint.
    ENDPOINT_AT_RISK = "endpoint_at_risk"


@dataclass(frozen=True)
class Notice:
    """What a subscriber is told. Fields that do not apply to the hook are None.

    ``event_id`` and ``event_type`` are the sender's (signed, but foreign: escape them
    before printing); ``error`` is a handler's failure or a quarantine reason;
    ``status_code`` the HTTP status answered (receive-side hooks); ``detail`` a
    sentence for people (e.g. the likely cause of an endpoint at risk).
    """

    hook: Hook
    endpoint: str
    event_id: str | None = None
    event_type: str | None = None
    handler: str | None = None
    error: str | None = None
    status_code: int | None = None
    detail: str | None = None


Subscriber = Callable[[Notice], object]
F = TypeVar("F", bound=Subscriber)


class Hooks:
    """Subscribers by hook. A `Receiver` and its processor
    share one (``receiver.hooks``); pass your own with ``Receiver(hooks=...)``."""

    def __init__(self) -> None:
        self._subscribers: dict[Hook, tuple[Subscriber, ...]] = {}
        self._lock = threading.Lock()
        #: The hooks that may have a subscriber, so the receiver can skip building a
        #: notice no one reads; `wants` gives the precise answer.
        self.watched: frozenset[Hook] = self._watched()

    def _watched(self) -> frozenset[Hook]:
        if type(self).wants is not Hooks.wants:
            # A subclass decides in wants() (Django's signals may connect at any time).
            return frozenset(Hook)
        return frozenset(hook for hook, funcs in self._subscribers.items() if funcs)

    def add(self, func: Subscriber, *hooks: Hook | str) -> None:
        """Call ``func(notice)`` at each of ``hooks`` (every hook when none is named)."""
        chosen = [Hook(h) for h in hooks] or list(Hook)
        with self._lock:
            for hook in chosen:
                self._subscribers[hook] = (*self._subscribers.get(hook, ()), func)
            self.watched = self._watched()

    def on(self, *hooks: Hook | str) -> Callable[[F], F]:
        """Decorator form of `add`."""

        def register(func: F) -> F:
            self.add(func, *hooks)
            return func

        return register

    def remove(self, func: Subscriber) -> None:
        """Stop calling ``func`` at any hook."""
        with self._lock:
            self._subscribers = {
                hook: tuple(f for f in funcs if f != func)
                for hook, funcs in self._subscribers.items()
            }
            self.watched = self._watched()

    def __bool__(self) -> bool:
        return any(self._subscribers.values())

    def wants(self, hook: Hook) -> bool:
        """Whether anything subscribes to ``hook`` (so a caller can skip building a Notice)."""
        return bool(self._subscribers.get(hook))

    def emit(self, notice: Notice) -> None:
        """Call every subscriber of ``notice.hook``; never raises."""
        # Copy-on-write tuples: reading needs no lock, and a subscriber may (un)subscribe.
        for func in self._subscribers.get(notice.hook, ()):
            try:
                func(notice)
            except Exception:
                log.exception(
                    "hook %s subscriber %s raised (ignored)",
                    notice.hook.value,
                    printable(getattr(func, "__qualname__", func)),
                    extra=fields(
                        event_id=notice.event_id,
                        event_type=notice.event_type,
                        endpoint=notice.endpoint,
                        handler=notice.handler,
                    ),
                )
