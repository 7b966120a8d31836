"""Group commit for stores whose database takes one writer at a time (SQLite).

Concurrent inserts of one process share one transaction. If no insert is under way, a
thread commits its row at once. Otherwise it queues the row and waits; when the insert
under way ends, the oldest waiter leads: it takes the whole queue (its own row and any
that arrived meanwhile), inserts them in one transaction and only after its COMMIT has
returned wakes each waiting thread with its row's result. So ``insert_row`` never
returns before the COMMIT that contains its row: every 2xx is still a committed insert.
A failed group is retried row by row, so one bad row fails no other.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Waiter(Generic[T]):
    """One row waiting for the group commit that includes it."""

    __slots__ = ("done", "error", "inserted", "lead", "row")

    def __init__(self, row: T) -> None:
        self.row = row
        self.done: threading.Event | None = None
        self.lead = False
        self.inserted: bool | None = None
        self.error: BaseException | None = None

    def wake(self) -> None:
        if self.done is not None:
            self.done.set()

    def result(self, interrupted: type[Exception] = RuntimeError) -> bool:
        if self.error is not None:
            raise self.error
        if self.inserted is None:  # the leading thread was interrupted before its insert
            raise interrupted("the group commit holding this insert was interrupted")
        return self.inserted


class GroupCommit(Generic[T]):
    """The queue and the lead of group commit; a store provides the two writes.

    ``_insert_one(row)`` commits one row on its own (True if inserted, False for a
    duplicate); ``_insert_together(rows)`` inserts them all in one transaction and
    returns each one's result, or raises (nothing of the group committed).
    ``_group_error`` is what a waiter raises when its leader was interrupted.
    Call :meth:`_fresh_group` at construction and again in a forked child.
    """

    _group_error: type[Exception] = RuntimeError

    def _insert_one(self, row: T) -> bool:
        raise NotImplementedError

    def _insert_together(self, rows: list[T]) -> list[bool]:
        raise NotImplementedError

    def _fresh_group(self) -> None:
        # Also in a forked child: a lock may have been copied while a parent thread held it.
        self._queue_lock = threading.Lock()
        self._queue: list[Waiter[T]] = []
        self._leading = False

    def _insert_grouped(self, row: T) -> bool:
        with self._queue_lock:
            alone = not self._leading
            if alone:
                self._leading = True
            else:
                waiter = Waiter(row)
                done = waiter.done = threading.Event()
                self._queue.append(waiter)
        if alone:
            # Nobody is inserting: commit this row at once, then hand the lead to
            # whoever queued meanwhile.
            try:
                return self._insert_one(row)
            finally:
                self._pass_lead()
        done.wait()
        if waiter.lead:
            self._lead_group()
        return waiter.result(self._group_error)

    def _lead_group(self) -> None:
        with self._queue_lock:
            group, self._queue = self._queue, []
        try:
            self._insert_group(group)
        finally:
            self._pass_lead()
            for waiter in group:
                waiter.wake()

    def _pass_lead(self) -> None:
        with self._queue_lock:
            if self._queue:
                # The oldest waiter leads the next group, its own row included.
                self._queue[0].lead = True
                self._queue[0].wake()
            else:
                self._leading = False

    def _settle(self, waiter: Waiter[T]) -> None:
        try:
            waiter.inserted = self._insert_one(waiter.row)
        except Exception as exc:
            waiter.error = exc

    def _insert_group(self, group: list[Waiter[T]]) -> None:
        if len(group) == 1:
            self._settle(group[0])
            return
        try:
            inserted = self._insert_together([w.row for w in group])
        except Exception:
            # One at a time, so one row's failure cannot fail the others.
            for waiter in group:
                self._settle(waiter)
            return
        for waiter, new in zip(group, inserted, strict=True):
            waiter.inserted = new
