"""Handlers by event name: exact (``"deal.won"``), family (``"deal.*"``) or all (``"*"``).

>>> router = Router()
>>> @router.on("deal.won", "deal.lost")
... def close_deal(event: Event) -> None: ...
>>> [h.name for h in router.handlers_for("deal.won")]
['iverton_webhooks.router.close_deal']
>>> router.on("deal.wonn")
Traceback (most recent call last):
...
ValueError: unknown event name 'deal.wonn': did you mean 'deal.won'? ...
"""

from __future__ import annotations

import difflib
import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .events import EVENT_TYPES, FAMILIES

F = TypeVar("F", bound=Callable[..., Any])

_registration_order = itertools.count()
_VALID_NAMES = (*EVENT_TYPES, *(f"{family}.*" for family in FAMILIES), "*")


@dataclass(frozen=True)
class Handler:
    """A registered function and the stable name its outcomes are recorded under."""

    func: Callable[..., Any]
    name: str
    is_async: bool = field(compare=False)
    order: int = field(compare=False, default_factory=lambda: next(_registration_order))

    @classmethod
    def wrap(cls, func: Callable[..., Any], name: str | None = None) -> Handler:
        return cls(
            func=func,
            name=name or f"{func.__module__}.{func.__qualname__}",
            is_async=inspect.iscoroutinefunction(func),
        )


class Router:
    """A set of handlers keyed by event name. Routers compose with :meth:`include`.

    With ``strict=True`` (the default) a name that is not a known event type (see
    :data:`EVENT_TYPES`), a ``family.*`` pattern or ``"*"`` is refused when registered,
    so a typo fails at import instead of silently never running.
    """

    def __init__(self, *, strict: bool = True) -> None:
        self.strict = strict
        self._handlers: dict[str, list[Handler]] = {}
        self._included: list[Router] = []

    def on(self, *names: str) -> Callable[[F], F]:
        """Decorator: run the function for events matching any of ``names``."""
        if not names:
            raise ValueError("on() needs at least one event name, e.g. on('deal.won') or on('*')")
        for name in names:
            self._check_name(name)

        def register(func: F) -> F:
            self.add(func, *names)
            return func

        return register

    def add(self, func: Callable[..., Any], *names: str, name: str | None = None) -> Handler:
        """Register ``func`` for ``names`` without a decorator; returns its :class:`Handler`."""
        handler = Handler.wrap(func, name)
        for event_name in names:
            self._check_name(event_name)
            bucket = self._handlers.setdefault(event_name, [])
            if handler not in bucket:
                bucket.append(handler)
        return handler

    def include(self, other: Router) -> None:
        """Also dispatch to ``other``'s handlers (including ones it registers later)."""
        if other is self or self in other._walk():
            raise ValueError("including this router would create a cycle")
        self._included.append(other)

    def handlers_for(self, event_type: str) -> list[Handler]:
        """Every handler matching ``event_type``, each once, in registration order."""
        family = event_type.partition(".")[0]
        keys = (event_type, f"{family}.*", "*")
        found: dict[str, Handler] = {}
        for router in self._walk():
            for key in keys:
                for handler in router._handlers.get(key, ()):
                    found.setdefault(handler.name, handler)
        return sorted(found.values(), key=lambda handler: handler.order)

    def clear(self) -> None:
        """Forget every handler and included router (useful between tests)."""
        self._handlers.clear()
        self._included.clear()

    def _walk(self) -> list[Router]:
        routers = [self]
        for child in self._included:
            routers.extend(child._walk())
        return routers

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"event names are non-empty strings, not {name!r}")
        if self.strict and name not in _VALID_NAMES:
            close = difflib.get_close_matches(name, _VALID_NAMES, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown event name {name!r}: {hint}Use one of the "
                f"{len(EVENT_TYPES)} event types, a family pattern such as 'deal.*', or '*'; "
                "Router(strict=False) accepts names this library does not know yet."
            )


default_router = Router()
"""The router behind the module-level :func:`on`."""


def on(*names: str) -> Callable[[F], F]:
    """Register a handler on the default router: ``@on("deal.won")``."""
    return default_router.on(*names)
