"""The store protocol: how a received event is recorded, claimed, finished and kept.

Lifecycle of one event::

    record ──> pending ──claim──> processing ──> done
                  ^                  │  │
                  │   retry later    │  └──> dead (attempts used up)   ──replay──> pending
                  └──── failed <─────┘
    processing whose lease expired (its worker died) is claimable again.

Every transition after ``claim`` names the claim's token, so a worker that lost its
lease (it was too slow and another worker took over) cannot overwrite the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol, runtime_checkable


class Status(str, Enum):
    """Where an event stands in its lifecycle."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class HandlerOutcome:
    """The result of the latest run of one handler on one event."""

    ok: bool
    error: str | None = None
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        # No nulls: stores merge these with JSON merge-patch, where null means "delete".
        return {"ok": self.ok, "error": self.error or "", "at": self.at}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> HandlerOutcome:
        return cls(
            ok=bool(value["ok"]), error=value.get("error") or None, at=float(value.get("at", 0.0))
        )


def dump_outcomes(outcomes: Mapping[str, HandlerOutcome]) -> str:
    return json.dumps({name: o.to_json() for name, o in outcomes.items()}, separators=(",", ":"))


def load_outcomes(text: str | None) -> dict[str, HandlerOutcome]:
    if not text:
        return {}
    return {name: HandlerOutcome.from_json(v) for name, v in json.loads(text).items()}


def to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


@dataclass(frozen=True)
class StoredEvent:
    """One row of the inbox. Times are UTC datetimes; ``body`` is the raw signed bytes."""

    id: str
    type: str
    created_at: datetime
    received_at: datetime
    body: bytes
    status: Status
    attempts: int = 0
    deliveries: int = 1
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    processed_at: datetime | None = None
    last_error: str | None = None
    outcomes: Mapping[str, HandlerOutcome] = field(default_factory=dict)

    @property
    def succeeded_handlers(self) -> frozenset[str]:
        return frozenset(name for name, outcome in self.outcomes.items() if outcome.ok)

    def summary(self) -> str:
        """One line for a terminal: id, type, status, attempts, deliveries, last error."""
        error = f"  {self.last_error}" if self.last_error else ""
        return (
            f"{self.id:32} {self.type:22} {self.status.value:10} "
            f"attempts={self.attempts} deliveries={self.deliveries}{error}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO-8601, the body as text) for CLIs and logs."""

        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id,
            "type": self.type,
            "status": self.status.value,
            "created_at": when(self.created_at),
            "received_at": when(self.received_at),
            "attempts": self.attempts,
            "deliveries": self.deliveries,
            "next_attempt_at": when(self.next_attempt_at),
            "lease_until": when(self.lease_until),
            "processed_at": when(self.processed_at),
            "last_error": self.last_error,
            "outcomes": {name: o.to_json() for name, o in self.outcomes.items()},
            "body": self.body.decode("utf-8", "replace"),
        }


@dataclass(frozen=True)
class Claim:
    """Proof that one worker holds the lease on one event."""

    event: StoredEvent
    token: str


@runtime_checkable
class Store(Protocol):
    """What the receiver and the worker need from a durable inbox.

    Implementations must make :meth:`record` and :meth:`claim` atomic across every
    process and host that shares the store: that is what makes dedupe and
    "one worker at a time" hold.
    """

    #: True when calls do I/O that may block (async adapters then call it in a thread).
    blocking: bool
    clock: Callable[[], float]

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        """Store the event if its id is new (True) or count one more delivery (False)."""
        ...

    def claim(self, event_id: str, lease_seconds: float) -> Claim | None:
        """Take the lease on a claimable event (pending, due, or lease expired), or None."""
        ...

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        """Merge handler outcomes while still processing; False if the lease was lost."""
        ...

    def complete(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        """Merge outcomes and mark done; False if the lease was lost."""
        ...

    def fail(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        error: str,
        retry_at: float | None,
    ) -> bool:
        """Merge outcomes and mark failed (retry at ``retry_at``) or dead (``None``)."""
        ...

    def due(self, limit: int = 100) -> list[str]:
        """Ids that a worker may claim now, oldest first."""
        ...

    def get(self, event_id: str) -> StoredEvent | None: ...

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> Sequence[StoredEvent]:
        """Newest first, filtered by status and type."""
        ...

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        """Queue the event again (not while it is leased). Handlers that already
        succeeded are kept unless ``rerun_all``."""
        ...

    def resolve(self, event_id: str) -> bool:
        """Mark a failed or dead event done by hand, without running handlers."""
        ...

    def prune(self, received_before: float) -> int:
        """Delete done and dead events received before the given epoch; return how many."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...
