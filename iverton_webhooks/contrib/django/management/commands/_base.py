"""What the commands share: a receiver that processes in the command's own thread."""

from __future__ import annotations

from django.core.management.base import CommandError

from iverton_webhooks.contrib.django.endpoint import build_receiver
from iverton_webhooks.errors import ConfigurationError
from iverton_webhooks.receiver import Receiver


def command_receiver() -> Receiver:
    """The settings' receiver with an inline runner: replayed events run right here."""
    try:
        return build_receiver(runner="inline")
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
