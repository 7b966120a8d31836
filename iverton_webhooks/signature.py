"""HMAC-SHA256 signatures of raw request bodies, with several secrets for rotation.

>>> header = sign(b"Hello, World!", "It's a Secret to Everybody")
>>> header
'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17'
>>> verify(b"Hello, World!", header, ["whsec_new", "It's a Secret to Everybody"])
1
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Sequence
from typing import Protocol

from .errors import ConfigurationError, InvalidSignature

SIGNATURE_HEADER = "X-Iverton-Signature"
PREFIX = "sha256="
_HEADER_LENGTH = len(PREFIX) + 64


def sign(body: bytes, secret: str) -> str:
    """Return the ``X-Iverton-Signature`` header value for ``body`` under ``secret``."""
    return PREFIX + hmac.digest(secret.encode(), body, "sha256").hex()


# Values copied from docs or templates instead of the dashboard: each would make every
# request fail with 401, which the sender counts towards disabling the endpoint.
_PLACEHOLDER = re.compile(
    r"""
    whsec_[x.]*                 # the README's whsec_..., the sender docs' whsec_xxxxxxxxxxxxx
    | changeme | change[-_]me | secret
    | your[-_].*                # your_secret_here, your-secret, your_webhook_secret...
    | <.*>                      # <secret>, <your signing secret>
    | \$\{?[A-Za-z_][A-Za-z0-9_]*\}?  # an environment variable that was never expanded
    """,
    re.IGNORECASE | re.VERBOSE,
)
_LIST_FORM = 'secrets=["whsec_..."] (or secret="whsec_..." for a single one)'


def validate_secrets(secrets: object) -> list[str]:
    """Return ``secrets`` as a list, or raise :class:`ConfigurationError` saying what to fix.

    Takes a list (or tuple) of the endpoint's signing secrets, newest first while rotating.
    Refuses a bare string (iterating it would make one secret per character), an empty
    list, non-string items, blank secrets, secrets with surrounding whitespace and obvious
    placeholders. Messages name the secret by position, never by value.

    >>> validate_secrets(["whsec_9f8a7b6c5d4e"])
    ['whsec_9f8a7b6c5d4e']
    >>> try:
    ...     validate_secrets("whsec_9f8a7b6c5d4e")
    ... except ConfigurationError as error:
    ...     print(str(error)[:77])
    secrets must be a list of strings, not one string: pass secrets=["whsec_..."]
    """
    if isinstance(secrets, (str, bytes, bytearray)):
        kind = "string" if isinstance(secrets, str) else "bytes value"
        raise ConfigurationError(
            f"secrets must be a list of strings, not one {kind}: pass {_LIST_FORM}"
        )
    if not isinstance(secrets, (list, tuple)):
        raise ConfigurationError(
            f"secrets must be a list of strings, not {type(secrets).__name__}: pass {_LIST_FORM}"
        )
    if not secrets:
        raise ConfigurationError(
            "no webhook secret configured: pass the endpoint's signing secret from the "
            f"Iverton dashboard, {_LIST_FORM}"
        )
    for index, secret in enumerate(secrets):
        problem = _secret_problem(secret)
        if problem:
            raise ConfigurationError(f"webhook secret #{index} {problem}")
    return list(secrets)


def _secret_problem(secret: object) -> str | None:
    if not isinstance(secret, str):
        return (
            f"is a {type(secret).__name__}, not a str: pass the secret as text, "
            "exactly as the Iverton dashboard shows it"
        )
    if not secret.strip():
        return "is blank: copy the endpoint's signing secret from the Iverton dashboard"
    if secret != secret.strip():
        return (
            "has leading or trailing whitespace (a newline from a file or an environment "
            "variable?): strip it, the sender signs with the exact secret"
        )
    if _PLACEHOLDER.fullmatch(secret):
        return (
            "looks like a placeholder, not a real signing secret: copy the endpoint's "
            "secret (whsec_ and random characters) from the Iverton dashboard"
        )
    return None


class _Mac(Protocol):
    def copy(self) -> _Mac: ...

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _keyed(key: bytes) -> _Mac:
    """An HMAC-SHA256 keyed with ``key``, to be copied for each message: OpenSSL's own
    object where there is one (its copy, update and hexdigest are single C calls, where
    the :mod:`hmac` module wraps each in Python), else the :mod:`hmac` module's."""
    try:
        from _hashlib import hmac_new

        return hmac_new(key, digestmod="sha256")
    except (ImportError, ValueError):  # no OpenSSL, or one without SHA-256 (FIPS builds)
        return hmac.new(key, digestmod="sha256")


class Verifier:
    """Checks signatures against a fixed list of secrets.

    Keeps each secret's HMAC keyed once, so a request pays for hashing its body and
    nothing else. ``repr()`` never shows a secret.
    """

    __slots__ = ("_macs",)

    def __init__(self, secrets: Sequence[str]) -> None:
        """Raise :class:`ConfigurationError` for anything :func:`validate_secrets` refuses."""
        # Copying a keyed HMAC skips hashing the padded key again, which is about a
        # fifth of the cost of verifying a typical body.
        self._macs = tuple(_keyed(secret.encode()) for secret in validate_secrets(secrets))

    def __repr__(self) -> str:
        return f"<Verifier with {len(self._macs)} secret(s)>"

    def verify(self, body: bytes, signature: object) -> int:
        """Return the index of the secret that signed ``body``; raise :class:`InvalidSignature`."""
        # The header is compared as text with the expected header, which skips decoding
        # it; compare_digest needs ASCII, and the length check keeps padded, truncated
        # or prefixed variants out before any HMAC is computed.
        if (
            not isinstance(signature, str)
            or len(signature) != _HEADER_LENGTH
            or not signature.isascii()
            or not isinstance(body, (bytes, bytearray, memoryview))
        ):
            raise InvalidSignature()
        macs = self._macs
        if len(macs) == 1:
            mac = macs[0].copy()
            mac.update(body)
            if hmac.compare_digest(PREFIX + mac.hexdigest(), signature):
                return 0
            raise InvalidSignature()
        matched = -1
        # Every key is tried even after a match, so timing does not reveal which
        # position in the rotation list a forged digest came close to.
        for index, keyed in enumerate(macs):
            mac = keyed.copy()
            mac.update(body)
            if hmac.compare_digest(PREFIX + mac.hexdigest(), signature) and matched < 0:
                matched = index
        if matched < 0:
            raise InvalidSignature()
        return matched


def verify(body: bytes, signature: str | None, secrets: str | Sequence[str]) -> int:
    """Return the index of the secret in ``secrets`` that signed ``body``.

    Raises :class:`InvalidSignature` for every kind of failure, whatever the input.
    """
    try:
        # A str here is one secret (this low-level call has always taken one).
        verifier = _verifier_for((secrets,) if isinstance(secrets, str) else tuple(secrets))
    except (ValueError, TypeError, AttributeError, UnicodeError):
        raise InvalidSignature() from None
    return verifier.verify(body, signature)


@functools.lru_cache(maxsize=16)
def _verifier_for(secrets: tuple[str, ...]) -> Verifier:
    # Encoding the secrets costs about an eighth of a verification: do it once per list.
    return Verifier(secrets)
