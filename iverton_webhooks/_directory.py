"""Registered endpoints as the request path sees them: the secrets a request to a named
endpoint is checked against, read from the store's registry at most once every few
seconds per name, so a request costs no store read and a rotation, a disablement or a
new endpoint still reaches every process within seconds, without a restart.

>>> from iverton_webhooks import MemoryStore, sign
>>> store = MemoryStore()
>>> store.add_endpoint("acme", "whsec_acme_0123456789")
True
>>> directory = EndpointDirectory(store)
>>> directory.checker("acme").verify(b"{}", sign(b"{}", "whsec_acme_0123456789"))
0
>>> directory.checker("globex") is None
True
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from ._errors import ConfigurationError, InvalidSignature, StoreUnavailable
from ._signature import Verifier
from ._text import printable
from .inbox.base import EndpointRecord, EndpointRegistry

__all__ = ["CACHE_SECONDS", "EndpointDirectory", "SignatureCheck", "check_endpoint_name"]

log = logging.getLogger("iverton_webhooks")

#: How long a registry answer is reused, and so how soon every process sees a change.
CACHE_SECONDS = 5.0
#: How old an answer may be and still refuse a request: a request it would refuse reads
#: the registry again, so an endpoint just added or a secret just rotated in is
#: accepted at once, while a flood of refused requests reads it once a second per name.
RECHECK_SECONDS = 1.0
#: How many names' answers are kept (unknown names included) before the oldest go.
CACHE_SIZE = 10_000

#: What a registered endpoint may be called: it is one segment of a URL path, so only
#: characters a URL carries as they are.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,99}")


def check_endpoint_name(name: object) -> str:
    """``name`` if a registered endpoint may have it, else `ConfigurationError`.

    >>> check_endpoint_name("acme-eu")
    'acme-eu'
    """
    if isinstance(name, str) and _NAME.fullmatch(name):
        return name
    raise ConfigurationError(
        f"endpoint name {printable(repr(name))} cannot be used: it is part of the URL "
        "(/webhooks/iverton/<name>), so use 1 to 100 letters, digits, '.', '_', '~' or "
        "'-', starting with a letter or digit"
    )


class SignatureCheck(Protocol):
    """What checks a request's signature: a `Verifier`, or a refusal."""

    def verify(self, body: bytes, signature: object) -> int: ...


class _RefuseAll:
    """The check of an endpoint with no usable secret: every signature fails."""

    def verify(self, body: bytes, signature: object) -> int:
        raise InvalidSignature()


class EndpointDirectory:
    """Answers "which secrets does endpoint ``name`` accept now?" for the request path.

    ``checker(name)`` is a `SignatureCheck`, or None when no enabled endpoint has that
    name (unknown, disabled, or a name no endpoint may have). Each name's answer is
    reused for ``ttl`` seconds, and never past the moment a previous secret's grace
    ends; an answer that refuses (no such endpoint, or ``recheck=True`` after a failed
    signature) is reused for ``RECHECK_SECONDS`` only. A registry that cannot be read
    raises `StoreUnavailable`.
    """

    def __init__(
        self,
        registry: EndpointRegistry,
        *,
        ttl: float = CACHE_SECONDS,
        size: int = CACHE_SIZE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.registry = registry
        self.ttl = ttl
        self.size = size
        # valid_until is on the store's clock; the cache's own expiry on a monotonic one.
        self.clock: Callable[[], float] = clock or getattr(registry, "clock", None) or time.time
        # name -> (when read, reuse until, the answer)
        self._answers: OrderedDict[str, tuple[float, float, SignatureCheck | None]] = OrderedDict()
        self._lock = threading.Lock()

    def checker(self, name: str, *, recheck: bool = False) -> SignatureCheck | None:
        now = time.monotonic()
        cached = self._answers.get(name)
        if cached is not None:
            read_at, until, check = cached
            if now < until and (
                (check is not None and not recheck) or now - read_at < RECHECK_SECONDS
            ):
                return check
        if not _NAME.fullmatch(name):
            return None  # no endpoint can have it: no store read
        try:
            record = self.registry.get_endpoint(name)
        except Exception as exc:
            raise StoreUnavailable(f"could not read endpoint {name!r}: {exc}") from exc
        expires, check = now + self.ttl, None
        if record is not None and record.enabled:
            check, secret_ends_in = self._check_of(record)
            expires = min(expires, now + secret_ends_in)
        with self._lock:
            self._answers[name] = (now, expires, check)
            self._answers.move_to_end(name)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return check

    def forget(self) -> None:
        """Drop every cached answer (tests; a process that changed the registry itself)."""
        with self._lock:
            self._answers.clear()

    def _check_of(self, record: EndpointRecord) -> tuple[SignatureCheck, float]:
        """The endpoint's check now, and in how many seconds a secret it accepts ends."""
        now = self.clock()
        ends = [s.valid_until - now for s in record.secrets if s.valid_until is not None]
        secret_ends_in = min((end for end in ends if end > 0), default=self.ttl)
        try:
            return Verifier(list(record.valid_secrets(now))), secret_ends_in
        except (ConfigurationError, UnicodeError) as exc:
            log.error(
                "endpoint %s has no usable secret (%s): every request to it is refused "
                "until it is rotated to a secret from the Iverton dashboard",
                printable(record.name),
                printable(str(exc)),
            )
            return _RefuseAll(), secret_ends_in
