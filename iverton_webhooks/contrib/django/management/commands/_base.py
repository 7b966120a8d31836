"""What the commands share: the settings' receiver for one endpoint, a refusal when the
inbox table is missing, and the translation of an operation's outcome into Django's
``CommandError`` with the same exit code as ``iverton-webhooks`` and ``flask iverton``."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from iverton_webhooks import _operations as ops
from iverton_webhooks._errors import WebhookError
from iverton_webhooks._operations import OperationError, printable
from iverton_webhooks._processor import Processor
from iverton_webhooks.contrib.django.endpoint import build_receiver
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import MIGRATE_HINT
from iverton_webhooks.inbox.base import DEFAULT_ENDPOINT

NO_HANDLERS_HINT = (
    "connect a receiver to a webhook signal, or register handlers with @on(...) in an "
    "app's iverton_handlers.py (or name a router in IVERTON_WEBHOOKS['ROUTER'])"
)

Operation = Callable[[Processor, ops.Echo], int]


def add_endpoint_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help=f"the endpoint whose events to work on (default: {DEFAULT_ENDPOINT!r})",
    )


def run_operation(command: BaseCommand, endpoint: str, operation: Operation) -> None:
    """Run ``operation`` on the settings' processor for ``endpoint``; a non-zero outcome
    becomes a ``CommandError`` carrying the operation's exit code."""
    try:
        receiver = build_receiver(runner="inline", endpoint=endpoint)
    except WebhookError as exc:
        raise CommandError(printable(exc), returncode=ops.USAGE) from None
    try:
        _require_table(receiver.processor)
        code = operation(receiver.processor, command.stdout.write)
    except OperationError as exc:
        raise CommandError(str(exc), returncode=exc.code) from None
    except WebhookError as exc:
        raise CommandError(printable(exc), returncode=ops.USAGE) from None
    finally:
        receiver.close()
    if code:  # pragma: no cover - operations raise for every non-zero outcome
        raise CommandError(f"exit {code}", returncode=code)


def _require_table(processor: Processor) -> None:
    """Refuse, rather than fail on every query, when ``migrate`` has not been run."""
    using = str(getattr(processor.store, "using", "default"))
    table = WebhookEvent._meta.db_table
    try:
        with connections[using].cursor() as cursor:
            names = connections[using].introspection.table_names(cursor)
    except DatabaseError as exc:
        raise OperationError(f"cannot reach database {using!r}: {exc}") from None
    if table not in names:
        raise OperationError(f"no table {table} in database {using!r}: {MIGRATE_HINT}")
