"""HMAC-SHA256 signatures of raw request bodies, with several secrets for rotation.

>>> header = sign(b"Hello, World!", "It's a Secret to Everybody")
>>> header
'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17'
>>> verify(b"Hello, World!", header, ["whsec_new", "It's a Secret to Everybody"])
1
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence

from ._errors import ConfigurationError, InvalidSignature

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
    """Return ``secrets`` as a list, or raise `ConfigurationError` saying what to fix.

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


class Verifier:
    """Checks signatures against a fixed list of secrets. ``repr()`` never shows a secret."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        """Raise `ConfigurationError` for anything `validate_secrets` refuses."""
        self._keys = tuple(secret.encode() for secret in validate_secrets(secrets))

    def __repr__(self) -> str:
        return f"<Verifier with {len(self._keys)} secret(s)>"

    def sign(self, body: bytes) -> str:
        """The ``X-Iverton-Signature`` header the sender would put on ``body``, with the
        newest secret (the first: rotation lists new before old). For tests.

        >>> verifier = Verifier(["whsec_doc_new_0123456789", "whsec_doc_old_0123456789"])
        >>> verifier.verify(b"{}", verifier.sign(b"{}"))
        0
        """
        return PREFIX + hmac.digest(self._keys[0], body, "sha256").hex()

    def verify(self, body: bytes, signature: object) -> int:
        """Return the index of the secret that signed ``body``; raise `InvalidSignature`."""
        # compare_digest needs ASCII text, and the length check keeps padded, truncated
        # or prefixed variants out before any HMAC is computed.
        if (
            not isinstance(signature, str)
            or len(signature) != _HEADER_LENGTH
            or not signature.isascii()
            or not isinstance(body, (bytes, bytearray, memoryview))
        ):
            raise InvalidSignature()
        matched = -1
        # Every key is tried even after a match, so timing does not reveal which
        # position in the rotation list a forged digest came close to.
        for index, key in enumerate(self._keys):
            expected = PREFIX + hmac.digest(key, body, "sha256").hex()
            if hmac.compare_digest(expected, signature) and matched < 0:
                matched = index
        if matched < 0:
            raise InvalidSignature()
        return matched


def verify(body: bytes, signature: str | None, secrets: str | Sequence[str]) -> int:
    """Return the index of the secret in ``secrets`` that signed ``body``.

    A single secret may be passed as a string. Raises `InvalidSignature` for
    every kind of failure, whatever the input.
    """
    try:
        verifier = Verifier([secrets] if isinstance(secrets, str) else list(secrets))
    except (ValueError, TypeError, AttributeError, UnicodeError):
        raise InvalidSignature() from None
    return verifier.verify(body, signature)
