"""Handlers by event name: exact (``"deal.won"``), family (``"deal.*"``) or all (``"*"``).

The names type the handler for the type checker: ``@on("deal.won")``, ``@on("deal.*")``
or ``@on("deal.won", "deal.lost")`` take a function of ``Event[Deal]``; ``@on("*")``, names
of several families and names the catalogue lacks take one of any event: plain ``Event``
(that is ``Event[Resource]``) or ``Event[Any]``, which fit every name. A handler returns
None or is ``async``.

>>> router = Router()
>>> @router.on("deal.won", "deal.lost")
... def close_deal(event: Event) -> None: ...
>>> [h.name for h in router.handlers_for("deal.won")]
['iverton_webhooks._router.close_deal']
>>> router.on("deal.wonn")
Traceback (most recent call last):
...
ValueError: unknown event name 'deal.wonn': did you mean 'deal.won'? ...
"""

from __future__ import annotations

import difflib
import inspect
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar, overload

from . import _catalogue as catalogue
from .events import EVENT_TYPES, FAMILIES, Event, Resource

# Strings: the type checker reads them, and importing the router parametrises no model.
HandlerResult: TypeAlias = "Awaitable[None] | None"
"""What a handler returns: nothing, or an awaitable of nothing (``async def``)."""
AnyEventHandler: TypeAlias = "Callable[[Event[Resource]], HandlerResult]"
"""A handler of any event (plain ``Event``, or ``Event[Any]``): it fits every name."""
AnyHandler = TypeVar("AnyHandler", bound=AnyEventHandler)
"""A handler for ``"*"``, names of several families, or names the catalogue lacks."""

# The overloads below give each family's names their handler type. They are written by
# `python -m tools.gen_typing` from the catalogue: edit the catalogue and rerun.
# <generated:names>
# fmt: off
ContactName = Literal[
    "contact.*",
    "contact.created",
    "contact.updated",
    "contact.deleted",
    "contact.subscribed",
    "contact.unsubscribed",
]
ContactHandler = TypeVar(
    "ContactHandler",
    bound="Callable[[Event[catalogue.Contact]], HandlerResult] | AnyEventHandler",
)
CampaignName = Literal[
    "campaign.*",
    "campaign.created",
    "campaign.scheduled",
    "campaign.sent",
    "campaign.completed",
]
CampaignHandler = TypeVar(
    "CampaignHandler",
    bound="Callable[[Event[catalogue.Campaign]], HandlerResult] | AnyEventHandler",
)
EmailName = Literal[
    "email.*",
    "email.delivered",
    "email.opened",
    "email.clicked",
    "email.bounced",
    "email.complained",
]
EmailHandler = TypeVar(
    "EmailHandler",
    bound="Callable[[Event[catalogue.Email]], HandlerResult] | AnyEventHandler",
)
DealName = Literal[
    "deal.*",
    "deal.created",
    "deal.updated",
    "deal.stage_changed",
    "deal.won",
    "deal.lost",
]
DealHandler = TypeVar(
    "DealHandler",
    bound="Callable[[Event[catalogue.Deal]], HandlerResult] | AnyEventHandler",
)
ClientName = Literal[
    "client.*",
    "client.created",
    "client.updated",
    "client.deleted",
]
ClientHandler = TypeVar(
    "ClientHandler",
    bound="Callable[[Event[catalogue.Client]], HandlerResult] | AnyEventHandler",
)
# fmt: on
# </generated:names>

_registration_order = itertools.count()
_VALID_NAMES = (*EVENT_TYPES, *(f"{family}.*" for family in FAMILIES), "*")


@dataclass(frozen=True)
class Handler:
    """A registered function and the stable name its outcomes are recorded under."""

    func: Callable[..., Any]
    name: str
    is_async: bool = field(compare=False)
    order: int = field(compare=False, default_factory=lambda: next(_registration_order))
    #: Holds its resource's mark while it runs, and skips older events: see ``Router.on``.
    newest_only: bool = field(compare=False, default=False)

    @classmethod
    def wrap(
        cls, func: Callable[..., Any], name: str | None = None, *, newest_only: bool = False
    ) -> Handler:
        return cls(
            func=func,
            name=name or f"{func.__module__}.{func.__qualname__}",
            is_async=inspect.iscoroutinefunction(func),
            newest_only=newest_only,
        )


class Router:
    """A set of handlers keyed by event name. Routers compose with `include`.

    With ``strict=True`` (the default) a name that is not a known event type (see
    `EVENT_TYPES`), a ``family.*`` pattern or ``"*"`` is refused when registered,
    so a typo fails at import instead of silently never running.
    """

    def __init__(self, *, strict: bool = True) -> None:
        self.strict = strict
        self._handlers: dict[str, list[Handler]] = {}
        self._included: list[Router] = []

    # <generated:method>
    # fmt: off
    @overload
    def on(
        self, name: ContactName, /, *names: ContactName, newest_only: bool = ...
    ) -> Callable[[ContactHandler], ContactHandler]: ...
    @overload
    def on(
        self, name: CampaignName, /, *names: CampaignName, newest_only: bool = ...
    ) -> Callable[[CampaignHandler], CampaignHandler]: ...
    @overload
    def on(
        self, name: EmailName, /, *names: EmailName, newest_only: bool = ...
    ) -> Callable[[EmailHandler], EmailHandler]: ...
    @overload
    def on(
        self, name: DealName, /, *names: DealName, newest_only: bool = ...
    ) -> Callable[[DealHandler], DealHandler]: ...
    @overload
    def on(
        self, name: ClientName, /, *names: ClientName, newest_only: bool = ...
    ) -> Callable[[ClientHandler], ClientHandler]: ...
    @overload
    def on(
        self, *names: str, newest_only: bool = ...
    ) -> Callable[[AnyHandler], AnyHandler]: ...
    # fmt: on
    # </generated:method>
    def on(self, *names: str, newest_only: bool = False) -> Callable[[AnyHandler], AnyHandler]:
        """Decorator: run the function for events matching any of ``names``.

        Returns the function unchanged. Its type is checked against the names: see the
        module docstring.

        ``newest_only=True`` guards a handler that writes a resource's state: for each
        endpoint and resource (the event's family and ``data.id``) it is given one event
        at a time, across every worker sharing the store, and never an event created
        before one it already applied; such an event's outcome for it is ``superseded``
        (see docs/ordering.md).
        """
        if not names:
            raise ValueError("on() needs at least one event name, e.g. on('deal.won') or on('*')")
        for name in names:
            self._check_name(name)

        def register(func: AnyHandler) -> AnyHandler:
            self.add(func, *names, newest_only=newest_only)
            return func

        return register

    def add(
        self,
        func: Callable[..., Any],
        *names: str,
        name: str | None = None,
        newest_only: bool = False,
    ) -> Handler:
        """Register ``func`` for ``names`` without a decorator; returns its `Handler`."""
        handler = Handler.wrap(func, name, newest_only=newest_only)
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
        return self._collect((event_type, f"{family}.*", "*"))

    def handlers(self) -> list[Handler]:
        """Every registered handler (included routers' too), each once, in registration
        order."""
        return self._collect(None)

    def has_handlers(self) -> bool:
        """Whether some handler would run for at least one known event type.

        >>> router = Router()
        >>> router.has_handlers()
        False
        >>> _ = router.add(print, "deal.*")
        >>> router.has_handlers()
        True
        """
        return any(self.handlers_for(event_type) for event_type in EVENT_TYPES)

    def clear(self) -> None:
        """Forget every handler and included router (useful between tests)."""
        self._handlers.clear()
        self._included.clear()

    def _collect(self, keys: tuple[str, ...] | None) -> list[Handler]:
        """The handlers under ``keys`` (all of them for None), each once, in order."""
        found: dict[str, Handler] = {}
        for router in self._walk():
            for key in router._handlers if keys is None else keys:
                for handler in router._handlers.get(key, ()):
                    found.setdefault(handler.name, handler)
        return sorted(found.values(), key=lambda handler: handler.order)

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
"""The router behind the module-level `on`."""


# <generated:function>
# fmt: off
@overload
def on(
    name: ContactName, /, *names: ContactName, newest_only: bool = ...
) -> Callable[[ContactHandler], ContactHandler]: ...
@overload
def on(
    name: CampaignName, /, *names: CampaignName, newest_only: bool = ...
) -> Callable[[CampaignHandler], CampaignHandler]: ...
@overload
def on(
    name: EmailName, /, *names: EmailName, newest_only: bool = ...
) -> Callable[[EmailHandler], EmailHandler]: ...
@overload
def on(
    name: DealName, /, *names: DealName, newest_only: bool = ...
) -> Callable[[DealHandler], DealHandler]: ...
@overload
def on(
    name: ClientName, /, *names: ClientName, newest_only: bool = ...
) -> Callable[[ClientHandler], ClientHandler]: ...
@overload
def on(
    *names: str, newest_only: bool = ...
) -> Callable[[AnyHandler], AnyHandler]: ...
# fmt: on
# </generated:function>
def on(*names: str, newest_only: bool = False) -> Callable[[AnyHandler], AnyHandler]:
    """Register a handler on the default router: ``@on("deal.won")``."""
    return default_router.on(*names, newest_only=newest_only)
