"""Surviving ``fork()``: what a forked child must rebuild before it uses an object.

A lock copied by ``fork()`` while another thread of the parent held it stays held in
the child for ever (gunicorn ``--preload``, Celery prefork), and threads do not survive
the fork at all. Objects that own locks or threads register a reset here; it runs in
the child right after the fork, before anything else can touch them.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def reset_after_fork(owner: T, reset: Callable[[T], None]) -> None:
    """Call ``reset(owner)`` in every child forked from now on, for as long as ``owner``
    lives (it is held weakly: an at-fork hook can never be removed)."""
    ref = weakref.ref(owner)

    def in_child() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=in_child)
