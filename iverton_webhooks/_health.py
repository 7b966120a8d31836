"""Health of one endpoint's inbox: counts by status, how long the oldest due event has
waited, and thresholds a cron job or a probe can check (``stats --max-dead 0``).

>>> from iverton_webhooks.inbox.base import Status
>>> health = Health("default", {Status.DONE: 5, Status.DEAD: 2}, oldest_due_age=None)
>>> health.dead, health.total
(2, 7)
>>> Thresholds(max_dead=0).problems(health)
['2 dead (max 0)']
>>> Thresholds(max_dead=2).problems(health)
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .inbox.base import DEFAULT_ENDPOINT, Status, Store

__all__ = ["Health", "Thresholds", "Warns", "oldest_due_age", "store_warnings"]


@dataclass(frozen=True)
class Health:
    """One endpoint's inbox at one moment.

    ``counts``: events by status (statuses with none may be left out).
    ``oldest_due_age``: seconds the event that has waited longest for a worker has
    been due (pending, a retry whose time came, or a crashed worker's lease that ran
    out); None when nothing is due.
    ``warnings``: what the store says it cannot keep (see `store_warnings`), e.g.
    a Redis server without persistence: about the setup, so not for `Thresholds`.
    """

    endpoint: str
    counts: Mapping[Status, int] = field(default_factory=dict)
    oldest_due_age: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def every_status(self) -> dict[Status, int]:
        """Counts for every status, zeros included, in lifecycle order."""
        return {status: self.counts.get(status, 0) for status in Status}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def dead(self) -> int:
        return self.counts.get(Status.DEAD, 0)

    @property
    def quarantined(self) -> int:
        return self.counts.get(Status.QUARANTINED, 0)

    @property
    def unhandled(self) -> int:
        return self.counts.get(Status.UNHANDLED, 0)

    def to_json(self) -> dict[str, Any]:
        """Counts, the oldest due age, and ``warnings`` when there are any."""
        found: dict[str, Any] = {
            "endpoint": self.endpoint,
            **{status.value: n for status, n in self.every_status.items()},
            "oldest_due_age": None
            if self.oldest_due_age is None
            else round(self.oldest_due_age, 3),
        }
        if self.warnings:
            found["warnings"] = list(self.warnings)
        return found


@dataclass(frozen=True)
class Thresholds:
    """Limits past which an endpoint is unhealthy; None means no limit."""

    max_dead: int | None = None
    max_quarantined: int | None = None
    max_unhandled: int | None = None
    max_due_age: float | None = None

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value < 0:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must not be negative, not {value:g}")

    @property
    def any(self) -> bool:
        return any(value is not None for value in vars(self).values())

    def problems(self, health: Health) -> list[str]:
        """One phrase per limit exceeded, e.g. ``"3 dead (max 0)"``; empty when healthy."""
        found = []
        for count, limit, what in (
            (health.dead, self.max_dead, "dead"),
            (health.quarantined, self.max_quarantined, "quarantined"),
            (health.unhandled, self.max_unhandled, "unhandled"),
        ):
            if limit is not None and count > limit:
                found.append(f"{count} {what} (max {limit})")
        age = health.oldest_due_age
        if self.max_due_age is not None and age is not None and age > self.max_due_age:
            found.append(
                f"oldest due event waiting {age:.0f} s (max {self.max_due_age:g} s): "
                "is a worker running?"
            )
        return found


@runtime_checkable
class Warns(Protocol):
    """A store that can say what it cannot keep (an optional part of a store)."""

    def warnings(self) -> list[str]:
        """Sentences a person can act on; empty when there is nothing to say."""
        ...


def store_warnings(store: Store) -> tuple[str, ...]:
    """What ``store`` says it cannot keep; nothing for a store that says nothing."""
    return tuple(store.warnings()) if isinstance(store, Warns) else ()


def oldest_due_age(store: Store, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
    """Seconds the event of ``endpoint`` that is due soonest has been waiting, or None."""
    since = store.oldest_due(endpoint=endpoint)
    return None if since is None else max(0.0, store.clock() - since)
