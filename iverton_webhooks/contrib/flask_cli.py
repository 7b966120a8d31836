"""``flask iverton``: the inbox operations of `iverton_webhooks._operations` for the
app's own receivers, with the same flags (click options made from its argument table),
messages and exit codes as ``iverton-webhooks``.

Registered on an app by `iverton_webhooks.contrib.flask.webhooks_blueprint` (and so
by the extension). ``--endpoint`` names a blueprint, or an endpoint registered in the
store of the blueprint that serves the registry; without it, the app's only one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import current_app
from flask.cli import AppGroup

from .. import _operations as ops
from .._errors import WebhookError
from .._operations import OperationError
from .._processor import Processor
from .._text import printable
from .flask_state import VIEW, state_of

__all__ = ["iverton_cli"]

NO_HANDLERS_HINT = "register them with @on(...) (or pass router=) where the app is created"

iverton_cli = AppGroup(
    "iverton",
    help=f"Iverton webhooks: {', '.join(ops.COMMANDS)}, send-test, endpoints.",
)


class Refused(click.ClickException):
    """A usage or configuration error, shown as click shows errors: exit 2."""

    exit_code = ops.USAGE


class Failed(click.ClickException):
    """Some of the work could not be done (or stats past a threshold): exit 1."""

    exit_code = ops.FAILED


@contextmanager
def _click_errors() -> Iterator[None]:
    """A `WebhookError` shown as click shows errors, with the exit code the other
    command lines give it."""
    try:
        yield
    except WebhookError as error:
        kind = Failed if ops.exit_code(error) == ops.FAILED else Refused
        raise kind(printable(error)) from None


def _param(argument: ops.Argument) -> click.Parameter:
    """click's form of a shared argument (argparse's is `ops.Argument.add_to`)."""
    if argument.positional:
        if argument.many:
            return click.Argument([argument.key], nargs=-1)
        return click.Argument([argument.key], metavar=argument.metavar)
    if argument.flag:
        return click.Option([argument.name, argument.key], is_flag=True, help=argument.help)
    kind = click.Choice(argument.choices) if argument.choices else argument.kind
    return click.Option(
        [argument.name, argument.key], type=kind, default=argument.default, help=argument.help
    )


def _endpoint_option() -> click.Option:
    return click.Option(
        ["--endpoint"],
        help="blueprint name, or a registered endpoint (default: the app's only endpoint)",
    )


def _processors() -> list[Processor]:
    return [endpoint.receiver.processor for endpoint in state_of(current_app).endpoints.values()]


def _processor(name: str | None) -> Processor:
    """The processor of blueprint ``name``, else of the registered endpoint ``name``."""
    try:
        return state_of(current_app).endpoint(name).receiver.processor
    except WebhookError:
        registered = None if name is None else ops.registered_processor(_processors(), name)
        if registered is None:
            raise
        return registered


def _add_operation(name: str, command: ops.Command) -> None:
    def operate(endpoint: str | None, **options: object) -> None:
        with _click_errors():
            processor = _processor(endpoint)
            ops.run(name, processor, click.echo, options, no_handlers_hint=NO_HANDLERS_HINT)

    params = [_endpoint_option(), *map(_param, command.arguments)]
    iverton_cli.command(name, help=command.sentence, params=params)(operate)


for _name, _command in ops.COMMANDS.items():
    _add_operation(_name, _command)


@iverton_cli.command(
    "send-test",
    help=ops.SEND_TEST.sentence,
    params=[
        _endpoint_option(),
        *map(_param, ops.SEND_TEST.arguments),
        click.Option(["--url"], help="default: http://127.0.0.1:5000 + the endpoint's path"),
        click.Option(["--secret"], help="default: the endpoint's first secret"),
    ],
)
def send_test_command(
    endpoint: str | None, event_type: str, timeout: float, url: str | None, secret: str | None
) -> None:
    with _click_errors():
        found = state_of(current_app).endpoint(endpoint)
        secret = secret or found.signing_secret
        if not secret:
            raise OperationError("give --secret (this endpoint was set up with a ready receiver)")
        ops.send_test(
            click.echo, url or _default_url(endpoint), event_type, secret, timeout=timeout
        )


def _default_url(endpoint: str | None) -> str:
    # The endpoint was found: without a name, the app has exactly one.
    name = endpoint or next(iter(state_of(current_app).endpoints))
    for rule in current_app.url_map.iter_rules(f"{name}.{VIEW}"):
        return f"http://127.0.0.1:5000{rule.rule}"
    raise OperationError(f"no URL rule for endpoint {name!r}; give --url")


# The endpoint registry ----------------------------------------------------------------


@iverton_cli.group("endpoints", help=ops.ENDPOINTS.sentence)
def endpoints_group() -> None:
    pass


def _add_registry_command(action: str, command: ops.Command) -> None:
    def operate(**options: object) -> None:
        with _click_errors():
            store, serving = ops.registry_of(_processors())
            ops.endpoints(store, click.echo, action, options, serving=serving)

    params = [_param(argument) for argument in command.arguments]
    endpoints_group.command(action, help=command.sentence, params=params)(operate)


for _name, _command in ops.ENDPOINT_ACTIONS.items():
    _add_registry_command(_name, _command)
