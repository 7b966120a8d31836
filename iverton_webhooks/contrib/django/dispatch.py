"""A Django signal that can say who listens to it, through public API only.

The router runs each receiver of an event's signals as a handler of its own (its outcome
recorded, only failed ones retried), so it needs the receivers one by one. Django lists
them only through ``Signal._live_receivers``, a private method whose return type already
changed once (5.0). `ListedSignal` keeps its own list as receivers connect and
disconnect (``connect``/``disconnect`` are public and keep working as in Django).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from django.dispatch import Signal

__all__ = ["ListedSignal"]

Ref = Callable[[], Any]


def _ident(target: object) -> Hashable:
    # As Django keys receivers: a bound method by its object and function, so the same
    # method of two objects is two receivers.
    if hasattr(target, "__func__") and hasattr(target, "__self__"):
        return (id(target.__self__), id(target.__func__))
    return id(target)


def _ref(receiver: Callable[..., Any], weak: bool) -> Ref:
    if not weak:
        return lambda: receiver
    if hasattr(receiver, "__func__") and hasattr(receiver, "__self__"):
        return weakref.WeakMethod(receiver)
    return weakref.ref(receiver)


class ListedSignal(Signal):
    """A `Signal` whose `receivers_for` lists its live
    receivers for a sender, in the order they connected."""

    def __init__(self, use_caching: bool = False) -> None:
        super().__init__(use_caching=use_caching)
        self._listed: dict[tuple[Hashable, Hashable], tuple[Ref, int | None]] = {}
        self._listed_lock = threading.Lock()

    def connect(
        self,
        receiver: Callable[..., Any],
        sender: object | None = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
    ) -> None:
        super().connect(receiver, sender, weak, dispatch_uid)
        key = (dispatch_uid or _ident(receiver), _ident(sender))
        with self._listed_lock:
            known = self._listed.get(key)
            # Django keeps the first of two connections under one key while it lives.
            if known is None or known[0]() is None:
                self._listed[key] = (_ref(receiver, weak), None if sender is None else id(sender))

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object | None = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        removed = super().disconnect(receiver, sender, dispatch_uid)
        key = (dispatch_uid or _ident(receiver), _ident(sender))
        with self._listed_lock:
            self._listed.pop(key, None)
        return removed

    def receivers_for(self, sender: object) -> list[Callable[..., Any]]:
        """The live receivers that a ``send(sender, ...)`` would call now."""
        found: list[Callable[..., Any]] = []
        with self._listed_lock:
            for key, (ref, sender_id) in list(self._listed.items()):
                receiver = ref()
                if receiver is None:
                    del self._listed[key]  # collected: Django dropped it too
                elif sender_id is None or sender_id == id(sender):
                    found.append(receiver)
        return found
