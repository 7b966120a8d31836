"""The disablement warning (docs/monitoring.md): consecutive non-2xx answers per endpoint.

The count has to be shared by every process serving the endpoint (the sender's
deliveries land on any of them): `StoreAnswerLog`, the receiver's default, keeps
it in the store. `LocalAnswerLog` counts within one process.

>>> answers = LocalAnswerLog()
>>> [answers.note("default", False, SIGNATURE) for _ in range(3)]
[1, 2, 3]
>>> answers.note("default", True, OK)
0
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .inbox.base import AnswerCounter

if TYPE_CHECKING:
    from .inbox.base import Store

__all__ = [
    "AT_RISK_AFTER",
    "AnswerLog",
    "LocalAnswerLog",
    "StoreAnswerLog",
    "likely_cause",
]

#: Failed answers in a row that raise the warning (the sender disables at five).
AT_RISK_AFTER = 3

# Kinds of answer.
OK = "ok"
SIGNATURE = "signature"  # 401, the header well-formed: signed with a key we lack
NO_SIGNATURE = "no_signature"  # 401, the header missing or malformed
STORE_DOWN = "store_down"  # 503
TOO_LARGE = "too_large"  # 413


@runtime_checkable
class AnswerLog(Protocol):
    """Where consecutive failed answers are counted, per endpoint.

    ``quiet`` lets the receiver skip the call for most 2xx answers: per endpoint, a
    `time.monotonic` reading before which noting a 2xx would change nothing (no
    failure is counted since the last one noted). The log keeps it in place: it sets an
    endpoint's entry when a 2xx leaves nothing to clear, and drops it as it counts a
    failure. An empty dict is always correct: every answer is then noted.
    """

    quiet: dict[str, float]

    def note(self, endpoint: str, ok: bool, kind: str) -> int:
        """Count one answer; returns the endpoint's failures in a row including this
        one (0 after a 2xx). Must be atomic across the processes that share it."""
        ...


class LocalAnswerLog:
    """Counts in this process only."""

    def __init__(self) -> None:
        self.quiet: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def note(self, endpoint: str, ok: bool, kind: str) -> int:
        if ok and endpoint in self.quiet:
            return 0  # the common case, without the lock: nothing to clear
        with self._lock:
            if ok:
                self._failures.pop(endpoint, None)
                self.quiet[endpoint] = math.inf
                return 0
            self.quiet.pop(endpoint, None)
            count = self._failures.get(endpoint, 0) + 1
            self._failures[endpoint] = count
            return count


class StoreAnswerLog:
    """Counts in the store, so every process serving an endpoint adds to one count.

    A failure is one atomic increment in the store. A success clears the count at most
    once every ``clear_every`` seconds per process, so 2xx answers add next to nothing to
    the request path; the price is that failures in other processes within that time
    may be counted as one streak with older ones. Once a process has seen the warning's
    count, it stops writing until the next success, so a flood of forged requests costs
    a few writes, not one each. When the store itself fails, this process counts alone.
    """

    def __init__(self, store: Store, *, clear_every: float = 1.0) -> None:
        self.store = store
        # A store without the AnswerCounter part: each process counts alone.
        self.counter = store if isinstance(store, AnswerCounter) else None
        self.clear_every = clear_every
        self.quiet: dict[str, float] = {}  # see AnswerLog
        self._local = LocalAnswerLog()
        self._seen: dict[str, int] = {}  # the shared count as this process last saw it

    def note(self, endpoint: str, ok: bool, kind: str) -> int:
        if ok:
            now = time.monotonic()
            if now < self.quiet.get(endpoint, 0.0):
                return 0
            self.quiet[endpoint] = now + self.clear_every
            self._local.note(endpoint, True, kind)
            self._seen.pop(endpoint, None)
            if self.counter is not None:
                self.counter.clear_failures(endpoint)
            return 0
        # A failure must be cleared by the next success, however soon it comes.
        self.quiet.pop(endpoint, None)
        seen = self._seen.get(endpoint, 0)
        if seen >= AT_RISK_AFTER:
            # The warning has fired for this streak: a flood of forged requests must not
            # become a flood of store writes competing with the real acks.
            self._seen[endpoint] = seen + 1
            return seen + 1
        if kind == STORE_DOWN or self.counter is None:
            # The store just failed: asking it again would only hold the reply longer.
            return self._local.note(endpoint, False, kind)
        try:
            count = self.counter.note_failure(endpoint, kind)
        except Exception:
            return self._local.note(endpoint, False, kind)
        self._seen[endpoint] = count
        return count


def likely_cause(kind: str) -> str:
    """What the last failed answer suggests, for the log line and the hook's detail."""
    if kind == SIGNATURE:
        return (
            "requests carry well-formed signatures that match no configured secret: "
            "did the secret rotate? configure secrets=[new, old] (Django: "
            'IVERTON_WEBHOOKS["SECRETS"] = [new, old]; Flask: '
            "app.config['IVERTON_WEBHOOK_SECRETS'] = [new, old])"
        )
    if kind == STORE_DOWN:
        return "the store is down: events cannot be recorded and are answered 503"
    if kind == TOO_LARGE:
        return "bodies are larger than max_body_bytes: raise it"
    return "requests arrive without a valid signature header: check what posts to this URL"
