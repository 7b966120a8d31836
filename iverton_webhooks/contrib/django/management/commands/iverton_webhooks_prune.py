"""Delete done and dead events older than the retention."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from iverton_webhooks.errors import ConfigurationError

from ._base import command_receiver


class Command(BaseCommand):
    help = "Delete finished (done and dead) webhook events past the retention."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--older-than-hours", type=float, help="instead of the RETENTION setting"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["older_than_hours"]
        receiver = command_receiver()
        try:
            deleted = receiver.prune(None if hours is None else timedelta(hours=hours))
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None
        finally:
            receiver.close()
        self.stdout.write(f"deleted {deleted} events")
