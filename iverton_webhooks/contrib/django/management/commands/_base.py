"""What the commands share: the inbox commands of `iverton_webhooks._operations` on the
settings' receiver for one endpoint (or for an endpoint registered in its store), a
refusal when a table is missing, and an operation's refusal as Django's
``CommandError`` with the exit code of ``iverton-webhooks`` and ``flask iverton``."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections
from django.db.models import Model

from iverton_webhooks import _operations as ops
from iverton_webhooks._errors import WebhookError
from iverton_webhooks._operations import OperationError
from iverton_webhooks._receiver import Receiver
from iverton_webhooks._text import printable
from iverton_webhooks.contrib.django.endpoint import build_receiver
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import MIGRATE_HINT
from iverton_webhooks.inbox.base import DEFAULT_ENDPOINT

NO_HANDLERS_HINT = (
    "connect a receiver to a webhook signal, or register handlers with @on(...) in an "
    "app's iverton_handlers.py (or name a router in IVERTON_WEBHOOKS['ROUTER'])"
)


@contextmanager
def command_errors() -> Iterator[None]:
    """A `WebhookError` as Django's ``CommandError``, with the exit code the other
    command lines give it."""
    try:
        yield
    except WebhookError as exc:
        raise CommandError(printable(exc), returncode=ops.exit_code(exc)) from None


class OperationCommand(BaseCommand):
    """``manage.py iverton_webhooks_<operation>``: the inbox command ``operation`` of
    `ops.COMMANDS` on the settings' receiver for ``--endpoint``."""

    operation: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.help = ops.COMMANDS[cls.operation].sentence

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--endpoint",
            default=DEFAULT_ENDPOINT,
            help=f"the endpoint whose events to work on (default: {DEFAULT_ENDPOINT!r}; or "
            "an endpoint registered in the store)",
        )
        ops.COMMANDS[self.operation].add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        receiver: Receiver | None = None
        try:
            with command_errors():
                receiver = build_receiver(runner="inline")
                require_table(str(getattr(receiver.store, "using", "default")), WebhookEvent)
                processor, endpoint = receiver.processor, options["endpoint"]
                if endpoint != processor.endpoint:
                    # An endpoint registered in the settings' store, else the settings'
                    # receiver built for that endpoint.
                    found = ops.registered_processor([processor], endpoint)
                    if found is None:
                        receiver.close()
                        receiver = build_receiver(runner="inline", endpoint=endpoint)
                        found = receiver.processor
                    processor = found
                ops.run(
                    self.operation,
                    processor,
                    self.stdout.write,
                    options,
                    no_handlers_hint=NO_HANDLERS_HINT,
                )
        finally:
            if receiver is not None:
                receiver.close()


def require_table(using: str, model: type[Model]) -> None:
    """Refuse, rather than fail on every query, when ``migrate`` has not been run."""
    table = model._meta.db_table
    try:
        with connections[using].cursor() as cursor:
            names = connections[using].introspection.table_names(cursor)
    except DatabaseError as exc:
        raise OperationError(f"cannot reach database {using!r}: {exc}") from None
    if table not in names:
        raise OperationError(f"no table {table} in database {using!r}: {MIGRATE_HINT}")
