"""What the commands share: the settings' receiver for one endpoint (or for an endpoint
registered in its store), a refusal when a table is missing, and the translation of an
operation's outcome into Django's ``CommandError`` with the same exit code as
``iverton-webhooks`` and ``flask iverton``."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections
from django.db.models import Model

from iverton_webhooks import _operations as ops
from iverton_webhooks._errors import WebhookError
from iverton_webhooks._operations import OperationError, printable
from iverton_webhooks._processor import Processor
from iverton_webhooks._receiver import Receiver
from iverton_webhooks.contrib.django import conf
from iverton_webhooks.contrib.django.endpoint import build_receiver
from iverton_webhooks.contrib.django.models import WebhookEndpoint, WebhookEvent
from iverton_webhooks.contrib.django.store import MIGRATE_HINT, DjangoStore
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
        help=f"the endpoint whose events to work on (default: {DEFAULT_ENDPOINT!r}; or an "
        "endpoint registered in the store)",
    )


def run_operation(command: BaseCommand, endpoint: str, operation: Operation) -> None:
    """Run ``operation`` on the settings' processor for ``endpoint``; a non-zero outcome
    becomes a ``CommandError`` carrying the operation's exit code."""
    receiver: Receiver | None = None
    try:
        receiver = build_receiver(runner="inline")
        _require_table(str(getattr(receiver.store, "using", "default")), WebhookEvent)
        receiver, processor = _processor_for(receiver, endpoint)
        code = operation(processor, command.stdout.write)
    except OperationError as exc:
        raise CommandError(str(exc), returncode=exc.code) from None
    except WebhookError as exc:
        raise CommandError(printable(exc), returncode=ops.USAGE) from None
    finally:
        if receiver is not None:
            receiver.close()
    if code:  # pragma: no cover - operations raise for every non-zero outcome
        raise CommandError(f"exit {code}", returncode=code)


def _processor_for(settings_receiver: Receiver, endpoint: str) -> tuple[Receiver, Processor]:
    """The receiver to close afterwards, and the processor for ``endpoint``: the
    settings' own, or its processor for an endpoint registered in its store, or one
    built from the settings for that endpoint."""
    own = settings_receiver.processor
    if endpoint == own.endpoint:
        return settings_receiver, own
    registered = ops.registered_processor([own], endpoint)
    if registered is not None:
        return settings_receiver, registered
    settings_receiver.close()
    receiver = build_receiver(runner="inline", endpoint=endpoint)
    return receiver, receiver.processor


def run_registry_operation(command: BaseCommand, operation: Callable[..., int]) -> None:
    """Run an ``endpoints`` operation on the registry of the settings' database:
    ``operation(store, out, serving=...)``, its outcome translated as `run_operation`
    does. No secret is needed in the settings: endpoints may carry them all."""
    try:
        opts = conf.options()
        serving = conf.read(opts).endpoint_registry
        using = conf.database(opts)
        _require_table(using, WebhookEndpoint)
        code = operation(DjangoStore(using), command.stdout.write, serving=serving)
    except OperationError as exc:
        raise CommandError(str(exc), returncode=exc.code) from None
    except WebhookError as exc:
        raise CommandError(printable(exc), returncode=ops.USAGE) from None
    if code:  # pragma: no cover - operations raise for every non-zero outcome
        raise CommandError(f"exit {code}", returncode=code)


def _require_table(using: str, model: type[Model]) -> None:
    """Refuse, rather than fail on every query, when ``migrate`` has not been run."""
    table = model._meta.db_table
    try:
        with connections[using].cursor() as cursor:
            names = connections[using].introspection.table_names(cursor)
    except DatabaseError as exc:
        raise OperationError(f"cannot reach database {using!r}: {exc}") from None
    if table not in names:
        raise OperationError(f"no table {table} in database {using!r}: {MIGRATE_HINT}")
