"""``flask iverton``: the inbox operations of `iverton_webhooks._operations` for the
app's own receivers, with the same flags, messages and exit codes as ``iverton-webhooks``.

Registered on an app by `iverton_webhooks.contrib.flask.webhooks_blueprint` (and so
by the extension). ``--endpoint`` names a blueprint, or an endpoint registered in the
store of the blueprint that serves the registry; without it, the app's only one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click
from flask import current_app
from flask.cli import AppGroup

from .. import _operations as ops
from .._errors import WebhookError
from .._operations import OperationError, printable
from .._processor import Processor
from ..inbox.base import Status
from .flask_state import VIEW, Endpoint, state_of

__all__ = ["iverton_cli"]

F = TypeVar("F", bound=Callable[..., object])

NO_HANDLERS_HINT = "register them with @on(...) (or pass router=) where the app is created"

iverton_cli = AppGroup(
    "iverton",
    help="Iverton webhooks: events, stats, replay, worker, prune, send-test, endpoints.",
)


class Refused(click.ClickException):
    """A usage or configuration error, shown as click shows errors: exit 2."""

    exit_code = ops.USAGE


class Failed(click.ClickException):
    """Some of the work could not be done (or stats past a threshold): exit 1."""

    exit_code = ops.FAILED


def _refusal(error: OperationError) -> click.ClickException:
    kind = Failed if error.code == ops.FAILED else Refused
    return kind(str(error))


def _endpoint_option(func: F) -> F:
    return click.option(
        "--endpoint",
        default=None,
        help="blueprint name, or a registered endpoint (default: the app's only endpoint)",
    )(func)


def _endpoint(name: str | None) -> Endpoint:
    try:
        return state_of(current_app).endpoint(name)
    except WebhookError as error:
        raise Refused(printable(error)) from None


def _processor(name: str | None) -> Processor:
    """The processor of blueprint ``name``, else of the registered endpoint ``name``."""
    state = state_of(current_app)
    try:
        return state.endpoint(name).receiver.processor
    except WebhookError as error:
        refusal = Refused(printable(error))
    if name is not None:
        processors = [endpoint.receiver.processor for endpoint in state.endpoints.values()]
        try:
            registered = ops.registered_processor(processors, name)
        except WebhookError as error:
            raise Refused(printable(error)) from None
        if registered is not None:
            return registered
    raise refusal


def _run(endpoint: str | None, operation: Callable[[Processor], int]) -> None:
    processor = _processor(endpoint)
    try:
        code = operation(processor)
    except OperationError as error:
        raise _refusal(error) from None
    if code:
        raise click.exceptions.Exit(code)


@iverton_cli.command("events")
@_endpoint_option
@click.option(
    "--status", type=click.Choice([s.value for s in Status]), help="only events in this status"
)
@click.option("--type", "event_type", help="only events of this type")
@click.option(
    "--limit",
    type=int,
    default=ops.DEFAULT_LIMIT,
    show_default=True,
    help="at most this many, newest first",
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def events_command(
    endpoint: str | None, status: str | None, event_type: str | None, limit: int, as_json: bool
) -> None:
    """List stored events, newest first."""
    _run(
        endpoint,
        lambda p: ops.list_events(
            p, click.echo, status=status, event_type=event_type, limit=limit, as_json=as_json
        ),
    )


def _threshold_options(func: F) -> F:
    for flag, dest, kind, help_text in reversed(ops.THRESHOLD_FLAGS):
        func = click.option(flag, dest, type=kind, default=None, help=help_text)(func)
    return func


@iverton_cli.command("stats")
@_endpoint_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@_threshold_options
def stats_command(endpoint: str | None, as_json: bool, **limits: float | None) -> None:
    """Events in each status; exit 1 past a --max-* threshold."""
    try:
        chosen = ops.thresholds(**limits)
    except OperationError as error:
        raise _refusal(error) from None
    _run(endpoint, lambda p: ops.stats(p, click.echo, as_json=as_json, limits=chosen))


@iverton_cli.command("replay")
@_endpoint_option
@click.argument("ids", nargs=-1)
@click.option("--dead", is_flag=True, help="replay every dead event")
@click.option(
    "--unhandled", is_flag=True, help="replay every unhandled event (once a handler exists)"
)
@click.option("--rerun-all", is_flag=True, help="re-run handlers that succeeded")
def replay_command(
    endpoint: str | None, ids: tuple[str, ...], dead: bool, unhandled: bool, rerun_all: bool
) -> None:
    """Queue events again (IDS, --dead or --unhandled); the app's runner or `flask
    iverton worker` processes them."""
    _run(
        endpoint,
        lambda p: ops.replay(
            p, click.echo, ids, dead=dead, unhandled=unhandled, rerun_all=rerun_all
        ),
    )


@iverton_cli.command("worker")
@_endpoint_option
@click.option("--once", is_flag=True, help="until nothing is due, then exit")
@click.option(
    "--interval",
    type=float,
    default=ops.DEFAULT_INTERVAL,
    show_default=True,
    help="seconds between passes",
)
@click.option(
    "--batch", type=int, default=ops.DEFAULT_BATCH, show_default=True, help="events per pass"
)
def worker_command(endpoint: str | None, once: bool, interval: float, batch: int) -> None:
    """Process due events (pending, retries, crashed) with the app's handlers."""
    _run(
        endpoint,
        lambda p: ops.work(
            p,
            click.echo,
            once=once,
            interval=interval,
            batch=batch,
            no_handlers_hint=NO_HANDLERS_HINT,
        ),
    )


@iverton_cli.command("prune")
@_endpoint_option
@click.option(
    "--older-than-hours",
    type=float,
    default=None,
    help="delete finished events received longer ago than this (default: the retention)",
)
def prune_command(endpoint: str | None, older_than_hours: float | None) -> None:
    """Delete finished events past the retention."""
    _run(endpoint, lambda p: ops.prune(p, click.echo, older_than_hours=older_than_hours))


@iverton_cli.command("send-test")
@_endpoint_option
@click.argument("event_type", metavar="TYPE")
@click.option("--url", default=None, help="default: http://127.0.0.1:5000 + the endpoint's path")
@click.option("--secret", default=None, help="default: the endpoint's first secret")
@click.option(
    "--timeout", type=float, default=10.0, show_default=True, help="seconds to wait for the answer"
)
def send_test_command(
    endpoint: str | None, event_type: str, url: str | None, secret: str | None, timeout: float
) -> None:
    """POST a signed sample event, like the dashboard's "Send Test" button."""
    found = _endpoint(endpoint)
    secret = secret or found.signing_secret
    if not secret:
        raise Refused("give --secret (this endpoint was set up with a ready receiver)")
    target = url or _default_url(endpoint)
    try:
        ops.send_test(click.echo, target, event_type, secret, timeout=timeout)
    except OperationError as error:
        raise _refusal(error) from None


def _default_url(endpoint: str | None) -> str:
    # _endpoint() already checked that, without a name, the app has exactly one.
    name = endpoint or next(iter(state_of(current_app).endpoints))
    for rule in current_app.url_map.iter_rules(f"{name}.{VIEW}"):
        return f"http://127.0.0.1:5000{rule.rule}"
    raise Refused(f"no URL rule for endpoint {name!r}; give --url")


# The endpoint registry ----------------------------------------------------------------


@iverton_cli.group("endpoints")
def endpoints_group() -> None:
    """The endpoints registered in the store: add, list, rotate, disable, enable, remove.
    Secrets are read from standard input, never from an option."""


def _registry(
    action: str,
    name: str | None = None,
    *,
    grace: str | None = None,
    as_json: bool = False,
    force: bool = False,
) -> None:
    processors = [e.receiver.processor for e in state_of(current_app).endpoints.values()]
    try:
        store, serving = ops.registry_of(processors)
        ops.endpoints(
            store,
            click.echo,
            action,
            name,
            grace=grace,
            as_json=as_json,
            force=force,
            serving=serving,
        )
    except OperationError as error:
        raise _refusal(error) from None
    except WebhookError as error:
        raise Refused(printable(error)) from None


_NAME = click.argument("name", metavar="NAME")


def _about(action: str) -> str:
    """The shared help of an ``endpoints`` subcommand, written as click help reads."""
    about = ops.ENDPOINT_HELP[action]
    return f"{about[0].upper()}{about[1:]}."


@endpoints_group.command("add", help=_about("add"))
@_NAME
def endpoints_add(name: str) -> None:
    _registry("add", name)


@endpoints_group.command("list", help=_about("list"))
@click.option("--json", "as_json", is_flag=True, help=ops.JSON_HELP)
def endpoints_list(as_json: bool) -> None:
    _registry("list", as_json=as_json)


@endpoints_group.command("rotate", help=_about("rotate"))
@_NAME
@click.option("--grace", default=None, help=ops.GRACE_HELP)
def endpoints_rotate(name: str, grace: str | None) -> None:
    _registry("rotate", name, grace=grace)


@endpoints_group.command("disable", help=_about("disable"))
@_NAME
def endpoints_disable(name: str) -> None:
    _registry("disable", name)


@endpoints_group.command("enable", help=_about("enable"))
@_NAME
def endpoints_enable(name: str) -> None:
    _registry("enable", name)


@endpoints_group.command("remove", help=_about("remove"))
@_NAME
@click.option("--force", is_flag=True, help=ops.FORCE_HELP)
def endpoints_remove(name: str, force: bool) -> None:
    _registry("remove", name, force=force)
