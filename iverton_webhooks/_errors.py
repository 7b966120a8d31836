"""The library's exceptions: one small hierarchy under `WebhookError`."""

from __future__ import annotations


class WebhookError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidSignature(WebhookError):
    """The request is not signed by any configured secret.

    The message never says *why* (missing header, bad format, wrong digest):
    telling a forger which part failed only helps the forger.
    """

    def __init__(self) -> None:
        super().__init__("invalid signature")


class InvalidPayload(WebhookError):
    """The body is signed but is not a well-formed Iverton event."""


class StoreUnavailable(WebhookError):
    """The inbox store could not do what was asked: its server is down or too slow, its
    file locked, read-only or missing. Every store raises this, never its driver's own
    exception, which is kept as ``__cause__``. The receiver answers 503 (the sender
    retries) and the processor retries its write."""


class ConfigurationError(WebhookError, ValueError):
    """The library was configured in a way that would break one of its promises."""
