"""Surviving ``fork()``: what a forked child must rebuild before it uses an object.

A lock copied by ``fork()`` while another thread of the parent held it stays held in
the child for ever (gunicorn ``--preload``, Celery prefork), and threads do not survive
the fork at all. Objects that own locks register a reset here, objects that own threads
a restart; in the child, right after the fork, every reset runs first, then every
restart. Threads started any earlier could take a lock that a later reset then
replaces under them (os.register_at_fork runs hooks in the order they were registered,
and a lock file is made at a store's first write, after the runner that uses it).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("iverton_webhooks")

#: (owner held weakly, or None for a module-level hook; what to call), in order.
_Hooks = list[tuple[Callable[[], Any] | None, Callable[..., None]]]
_resets: _Hooks = []
_restarts: _Hooks = []
_registering = threading.Lock()


def reset_after_fork(owner: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(owner)`` in every child forked from now on, for as long as ``owner``
    lives (it is held weakly), before any thread is restarted there."""
    _register(_resets, weakref.ref(owner), reset)


def restart_after_fork(owner: T, restart: Callable[[T], None]) -> None:
    """Call ``restart(owner)`` in every child forked from now on, for as long as
    ``owner`` lives, once every reset of that child has run: for starting threads."""
    _register(_restarts, weakref.ref(owner), restart)


def in_child_after_fork(func: Callable[[], None], *, restart: bool = False) -> None:
    """Call ``func()`` in every child forked from now on: with the resets, or with the
    restarts when ``restart`` is true."""
    _register(_restarts if restart else _resets, None, func)


def _register(hooks: _Hooks, owner: Callable[[], Any] | None, func: Callable[..., None]) -> None:
    with _registering:
        if len(hooks) >= 64 and len(hooks) & (len(hooks) - 1) == 0:
            # At each power of two: owners gone (a test suite makes thousands) are dropped.
            hooks[:] = [(ref, f) for ref, f in hooks if ref is None or ref() is not None]
        hooks.append((owner, func))


def _run(hooks: _Hooks) -> None:
    for owner_ref, func in list(hooks):
        try:
            if owner_ref is None:
                func()
            else:
                owner = owner_ref()
                if owner is not None:
                    func(owner)
        except Exception:
            # One broken hook must not leave every object after it un-reset.
            log.exception("after fork: %r failed", func)


def _in_child() -> None:
    global _registering
    _registering = threading.Lock()  # it may have been copied held
    _run(_resets)
    _run(_restarts)


os.register_at_fork(after_in_child=_in_child)


class ForkGate:
    """Keeps background work out of the way of a ``fork()`` in this process.

    A fork copies the state of every thread at that instant: a child that inherits a
    SQLite write lock (or any driver state) from a parent thread caught mid-transaction
    may never write again. This is what happens under gunicorn ``--preload``: the master
    loads the app, starts processing, then forks its workers. Work passes through the
    gate; when the process forks, the gate closes, waits up to ``grace`` seconds for the
    work inside to leave, lets the fork happen, and opens again (in the child, with
    nothing inside: threads do not survive a fork).

    >>> gate = ForkGate()
    >>> with gate.passage():
    ...     pass
    """

    def __init__(self, grace: float = 2.0) -> None:
        self.grace = grace
        self._open_in_child()
        ref = weakref.ref(self)

        def call(method: Callable[[ForkGate], None]) -> Callable[[], None]:
            def hook() -> None:
                gate = ref()
                if gate is not None:
                    method(gate)

            return hook

        os.register_at_fork(before=call(ForkGate._close), after_in_parent=call(ForkGate._open))
        reset_after_fork(self, ForkGate._open_in_child)

    @contextmanager
    def passage(self) -> Iterator[Passage]:
        """Hold the gate open for the work inside this block (it waits while a fork is
        under way). Work that can no longer harm a fork (a thread given up on while it
        hangs in a handler) may ``leave()`` early, so forks stop waiting for it."""
        with self._changed:
            while self._closed:
                self._changed.wait()
            self._inside += 1
        passage = Passage(self)
        try:
            yield passage
        finally:
            passage.leave()

    def _leave(self) -> None:
        with self._changed:
            self._inside -= 1
            self._changed.notify_all()

    def _close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.wait_for(lambda: self._inside == 0, timeout=self.grace)

    def _open(self) -> None:
        with self._changed:
            self._closed = False
            self._changed.notify_all()

    def _open_in_child(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._inside = 0
        self._closed = False


class Passage:
    """One piece of work inside a :class:`ForkGate`."""

    def __init__(self, gate: ForkGate) -> None:
        self._gate: ForkGate | None = gate

    def leave(self) -> None:
        """Leave the gate (once; later calls do nothing)."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._leave()
