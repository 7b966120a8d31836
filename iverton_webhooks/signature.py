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
from collections.abc import Sequence

from .errors import InvalidSignature

SIGNATURE_HEADER = "X-Iverton-Signature"
PREFIX = "sha256="
_HEADER_LENGTH = len(PREFIX) + 64


def sign(body: bytes, secret: str) -> str:
    """Return the ``X-Iverton-Signature`` header value for ``body`` under ``secret``."""
    return PREFIX + hmac.digest(secret.encode(), body, "sha256").hex()


class Verifier:
    """Checks signatures against a fixed list of secrets.

    Keeps the secrets pre-encoded so the per-request cost is the HMAC itself.
    ``repr()`` never shows a secret.
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: str | Sequence[str]) -> None:
        if isinstance(secrets, str):
            secrets = [secrets]
        self._keys = tuple(s.encode() for s in secrets if isinstance(s, str) and s)
        if not self._keys:
            raise ValueError("at least one non-empty webhook secret is required")

    def __repr__(self) -> str:
        return f"<Verifier with {len(self._keys)} secret(s)>"

    @property
    def count(self) -> int:
        return len(self._keys)

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
        keys = self._keys
        if len(keys) == 1:
            if hmac.compare_digest(PREFIX + hmac.digest(keys[0], body, "sha256").hex(), signature):
                return 0
            raise InvalidSignature()
        matched = -1
        # Every key is tried even after a match, so timing does not reveal which
        # position in the rotation list a forged digest came close to.
        for index, key in enumerate(keys):
            expected = PREFIX + hmac.digest(key, body, "sha256").hex()
            if hmac.compare_digest(expected, signature) and matched < 0:
                matched = index
        if matched < 0:
            raise InvalidSignature()
        return matched


def verify(body: bytes, signature: str | None, secrets: str | Sequence[str]) -> int:
    """Return the index of the secret in ``secrets`` that signed ``body``.

    Raises :class:`InvalidSignature` for every kind of failure, whatever the input.
    """
    try:
        verifier = _verifier_for(secrets if isinstance(secrets, str) else tuple(secrets))
    except (ValueError, TypeError, AttributeError, UnicodeError):
        raise InvalidSignature() from None
    return verifier.verify(body, signature)


@functools.lru_cache(maxsize=16)
def _verifier_for(secrets: str | tuple[str, ...]) -> Verifier:
    # Encoding the secrets costs about an eighth of a verification: do it once per list.
    return Verifier(secrets)
