"""``DjangoStore``: the core :class:`~iverton_webhooks.Store` over the ``WebhookEvent`` model.

Same semantics as ``inbox/sqlite.py``: the unique ``event_id`` makes ``record`` an atomic
insert-if-absent across processes and hosts; every transition after ``claim`` is a
conditional UPDATE on the lease token, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F, QuerySet
from django.utils import timezone as dj_timezone

from ...inbox.base import Claim, HandlerOutcome, Status, StoredEvent, to_datetime
from .models import CLAIMABLE, FINISHED, WebhookEvent


def _to_db(epoch: float) -> datetime:
    """An epoch as the DateTimeField expects it under the project's USE_TZ."""
    value = datetime.fromtimestamp(epoch, timezone.utc)
    return value if settings.USE_TZ else dj_timezone.make_naive(value)


def _from_db(value: datetime) -> datetime:
    aware = value if dj_timezone.is_aware(value) else dj_timezone.make_aware(value)
    return aware.astimezone(timezone.utc)


def recycle_connections() -> None:
    """``close_old_connections()``, minus connections inside an atomic block (an inline
    runner processes in the caller's thread, whose transaction is not ours to end)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _resource_id(body: bytes) -> str:
    # Only for searching in the admin: the receiver has already validated the envelope.
    try:
        data = json.loads(body).get("data")
        return str(data.get("id", ""))[:255] if isinstance(data, dict) else ""
    except (ValueError, AttributeError):
        return ""


def _stored(row: WebhookEvent) -> StoredEvent:
    outcomes: dict[str, Any] = row.outcomes or {}
    return StoredEvent(
        id=row.event_id,
        type=row.type,
        created_at=_from_db(row.created_at),
        received_at=_from_db(row.received_at),
        body=bytes(row.body),
        status=Status(row.status),
        attempts=row.attempts,
        deliveries=row.deliveries,
        next_attempt_at=to_datetime(row.next_attempt_at),
        lease_until=to_datetime(row.lease_until),
        processed_at=None if row.processed_at is None else _from_db(row.processed_at),
        last_error=row.last_error,
        outcomes={name: HandlerOutcome.from_json(value) for name, value in outcomes.items()},
    )


class DjangoStore:
    """Events in the ``WebhookEvent`` table of database ``using`` (default ``"default"``)."""

    blocking = True

    def __init__(self, using: str = "default", *, clock: Callable[[], float] = time.time):
        self.using = using
        self.clock = clock

    def __repr__(self) -> str:
        return f"<DjangoStore using={self.using!r}>"

    def _rows(self) -> QuerySet[WebhookEvent]:
        rows: QuerySet[WebhookEvent] = WebhookEvent.objects.using(self.using)
        return rows

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        now = self.clock()
        row = WebhookEvent(
            event_id=event_id,
            type=event_type,
            resource_id=_resource_id(body),
            created_at=_to_db(created_at.timestamp()),
            received_at=_to_db(now),
            body=bytes(body),
            due_at=now,
        )
        try:
            # Its own transaction (a savepoint inside a caller's): the insert is committed
            # when this returns, and a duplicate key leaves the connection usable.
            with transaction.atomic(using=self.using):
                row.save(using=self.using, force_insert=True)
            return True
        except IntegrityError:
            self._rows().filter(event_id=event_id).update(deliveries=F("deliveries") + 1)
            return False

    def claim(self, event_id: str, lease_seconds: float) -> Claim | None:
        now = self.clock()
        token = uuid.uuid4().hex
        with transaction.atomic(using=self.using):
            taken = (
                self._rows()
                .filter(event_id=event_id, status__in=CLAIMABLE, due_at__lte=now)
                .update(
                    status=Status.PROCESSING.value,
                    attempts=F("attempts") + 1,
                    lease_token=token,
                    lease_until=now + lease_seconds,
                    due_at=now + lease_seconds,
                )
            )
            if not taken:
                return None
            row = self._rows().get(event_id=event_id)
        return Claim(event=_stored(row), token=token)

    def _update_claimed(
        self, claim: Claim, outcomes: Mapping[str, HandlerOutcome], **fields: object
    ) -> bool:
        # Read, merge, write back, each guarded by the lease token. No transaction is
        # needed: while the lease holds, its holder is the only writer of the row (and a
        # read-then-write transaction would fail at once on a busy SQLite database).
        rows = self._rows().filter(event_id=claim.event.id, lease_token=claim.token)
        current = rows.values_list("outcomes", flat=True).first()
        if current is None:
            return False
        merged = {**current, **{name: o.to_json() for name, o in outcomes.items()}}
        return bool(rows.update(outcomes=merged, **fields) == 1)

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._update_claimed(claim, outcomes)

    def complete(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._update_claimed(
            claim,
            outcomes,
            status=Status.DONE.value,
            processed_at=_to_db(self.clock()),
            last_error=None,
            due_at=None,
            next_attempt_at=None,
            lease_until=None,
            lease_token=None,
        )

    def fail(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        error: str,
        retry_at: float | None,
    ) -> bool:
        status = Status.DEAD if retry_at is None else Status.FAILED
        return self._update_claimed(
            claim,
            outcomes,
            status=status.value,
            last_error=error,
            due_at=retry_at,
            next_attempt_at=retry_at,
            lease_until=None,
            lease_token=None,
        )

    def due(self, limit: int = 100) -> list[str]:
        # Called by pollers that live for the whole process, outside any request: give
        # back a stale or broken connection each time, as Django does after a request.
        recycle_connections()
        try:
            ids = (
                self._rows()
                .filter(status__in=CLAIMABLE, due_at__lte=self.clock())
                .order_by("due_at")
                .values_list("event_id", flat=True)[:limit]
            )
            return list(ids)
        finally:
            recycle_connections()

    def get(self, event_id: str) -> StoredEvent | None:
        row = self._rows().filter(event_id=event_id).first()
        return None if row is None else _stored(row)

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        rows = self._rows().order_by("-id")
        if status is not None:
            rows = rows.filter(status=Status(status).value)
        if event_type is not None:
            rows = rows.filter(type=event_type)
        return [_stored(row) for row in rows[:limit]]

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        reset: dict[str, Any] = {"outcomes": {}} if rerun_all else {}
        replayed = (
            self._rows()
            .filter(event_id=event_id, status__in=(*FINISHED, Status.FAILED.value))
            .update(
                status=Status.PENDING.value,
                attempts=0,
                due_at=self.clock(),
                next_attempt_at=None,
                **reset,
            )
        )
        return bool(replayed == 1)

    def resolve(self, event_id: str) -> bool:
        resolved = (
            self._rows()
            .filter(event_id=event_id, status__in=(Status.FAILED.value, Status.DEAD.value))
            .update(status=Status.DONE.value, processed_at=_to_db(self.clock()), due_at=None)
        )
        return bool(resolved == 1)

    def prune(self, received_before: float) -> int:
        old = self._rows().filter(status__in=FINISHED, received_at__lt=_to_db(received_before))
        return int(old.delete()[0])

    def count(self) -> int:
        return self._rows().count()

    def close(self) -> None:
        """Connections belong to Django: nothing to close here."""
