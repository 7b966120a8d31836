"""Flask: a blueprint factory, an extension configured from ``app.config``, ``flask iverton``.

Blueprint (each app it is registered on gets its own :class:`Receiver`)::

    app.register_blueprint(webhooks_blueprint(secret="whsec_..."), url_prefix="/webhooks/iverton")

Extension, application-factory style (config is read at ``init_app``)::

    webhooks = IvertonWebhooks()            # IVERTON_WEBHOOK_SECRET(S), IVERTON_WEBHOOK_STORE, ...
    webhooks.init_app(app)

Handlers registered with ``@on(...)`` run after the reply, on the receiver's thread pool,
inside an app context. Several endpoints with different secrets are several blueprints
with different ``name=``. With Flask-WTF's ``CSRFProtect``, exempt the blueprint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import click
from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from flask.cli import AppGroup
from werkzeug.exceptions import RequestEntityTooLarge

from ..body import read_capped
from ..errors import ConfigurationError, WebhookError
from ..inbox.base import Status
from ..receiver import TOO_LARGE, HeadersLike, Receiver, Reply

__all__ = [
    "EXTENSION_KEY",
    "Endpoint",
    "IvertonWebhooks",
    "WebhooksState",
    "receive",
    "state_of",
    "webhooks_blueprint",
]

EXTENSION_KEY = "iverton_webhooks"
DEFAULT_NAME = "iverton_webhooks"
DEFAULT_URL_PREFIX = "/webhooks/iverton"
VIEW = "webhook"
# Every common method reaches the view, so a GET gets the core's JSON 405 (with
# ``Allow: POST``) rather than Flask's HTML one. HEAD is added by Flask with GET.
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class Endpoint:
    """One webhook endpoint of one app: its receiver, and a secret for ``send-test``."""

    receiver: Receiver
    signing_secret: str | None = field(default=None, repr=False)


@dataclass
class WebhooksState:
    """``app.extensions["iverton_webhooks"]``: the app's endpoints by blueprint name."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def endpoint(self, name: str | None = None) -> Endpoint:
        """The endpoint called ``name``; without a name, the app's only one."""
        if name is None:
            if len(self.endpoints) == 1:
                return next(iter(self.endpoints.values()))
            raise ConfigurationError(
                f"this app has {len(self.endpoints)} webhook endpoints; "
                f"name one of: {', '.join(sorted(self.endpoints)) or '(none)'}"
            )
        try:
            return self.endpoints[name]
        except KeyError:
            raise ConfigurationError(
                f"no webhook endpoint {name!r}; this app has: "
                f"{', '.join(sorted(self.endpoints)) or '(none)'}"
            ) from None

    def receiver(self, name: str | None = None) -> Receiver:
        return self.endpoint(name).receiver


def state_of(app: Flask) -> WebhooksState:
    """The app's webhook state (created empty on first use)."""
    found = app.extensions.get(EXTENSION_KEY)
    if found is None:
        found = app.extensions[EXTENSION_KEY] = WebhooksState()
    if not isinstance(found, WebhooksState):
        raise ConfigurationError(f"app.extensions[{EXTENSION_KEY!r}] is taken by {found!r}")
    return found


def webhooks_blueprint(
    secret: str | None = None,
    *,
    secrets: Sequence[str] | None = None,
    name: str = DEFAULT_NAME,
    url_prefix: str = DEFAULT_URL_PREFIX,
    receiver: Receiver | None = None,
    **receiver_options: Any,
) -> Blueprint:
    """A blueprint answering Iverton webhooks at ``url_prefix``, with or without a trailing
    ``/`` (``register_blueprint(..., url_prefix=...)`` overrides it).

    Pass ``secret=`` (or ``secrets=[new, old]``) and any :class:`Receiver` option
    (``store=``, ``router=``, ``runner=``, ``max_body_bytes=``, ...); the receiver is built
    when the blueprint is registered, once per app, with the store defaulting to
    ``<instance folder>/<name>.sqlite3`` and handlers run inside that app's context.
    Or pass a ready ``receiver=`` (shared by every app the blueprint is registered on).
    """
    if receiver is not None and (secret or secrets or receiver_options):
        raise TypeError("pass either receiver= or secret=/secrets= and Receiver options")
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    def setup(state: BlueprintSetupState) -> None:
        app = cast(Flask, state.app)  # typed as Flask's sans-I/O base class since 3.0
        full_name = f"{state.name_prefix}.{state.name}".lstrip(".")
        endpoints = state_of(app).endpoints  # Flask refuses a name registered twice
        if receiver is not None:
            endpoints[full_name] = Endpoint(receiver)
        else:
            options = dict(receiver_options)
            if options.get("store") is None:
                options["store"] = f"sqlite:///{app.instance_path}/{full_name}.sqlite3"
            options.setdefault("process_context", app.app_context)
            built = Receiver(secret, secrets=secrets, **options)
            endpoints[full_name] = Endpoint(built, secret or next(iter(secrets or ()), None))
        if "iverton" not in app.cli.commands:
            app.cli.add_command(iverton_cli)

    blueprint.record(setup)
    # "/prefix" and "/prefix/" are one endpoint: a redirect would fail the delivery.
    for rule, endpoint in (("", VIEW), ("/", f"{VIEW}_slash")):
        blueprint.add_url_rule(
            rule, endpoint, _webhook_view, methods=_METHODS, provide_automatic_options=False
        )
    return blueprint


def _webhook_view() -> Response:
    assert request.blueprint is not None  # only ever routed through a blueprint
    reply = receive(state_of(current_app).receiver(request.blueprint))
    return Response(reply.body, status=reply.status, headers=list(reply.headers))


def receive(receiver: Receiver) -> Reply:
    """Run the current request through ``receiver``: the raw body whatever its content
    type, refused with 413 before reading when over the receiver's cap or Flask's
    ``MAX_CONTENT_LENGTH``."""
    if request.method != "POST":
        return receiver.receive(request.method, b"", _headers())  # 405, no body read
    limit = receiver.max_body_bytes
    if request.max_content_length is not None:
        limit = min(limit, request.max_content_length)
    try:
        body = read_capped(request.stream.read, limit, request.content_length)
    except RequestEntityTooLarge:
        return TOO_LARGE
    if body is None:
        return TOO_LARGE
    return receiver.receive("POST", body, _headers())


def _headers() -> HeadersLike:
    # Werkzeug's Headers: a case-insensitive .get() that returns the first of repeated
    # headers, which is all the core uses.
    return request.headers


class IvertonWebhooks:
    """The Flask extension: one webhook endpoint per app, configured from ``app.config``.

    Read at :meth:`init_app`: ``IVERTON_WEBHOOK_SECRET`` or ``IVERTON_WEBHOOK_SECRETS``
    (a list, or a comma-separated string), ``IVERTON_WEBHOOK_STORE`` (URL; default a SQLite
    file in the instance folder), ``IVERTON_WEBHOOK_RUNNER`` (``"thread"`` or ``"inline"``),
    ``IVERTON_WEBHOOK_MAX_BODY_BYTES``, ``IVERTON_WEBHOOK_URL_PREFIX`` (default
    ``/webhooks/iverton``). Keyword arguments (``router=``, ``retry=``, ``max_age=``, ...)
    are passed to every app's :class:`Receiver`; config keys win over them.
    """

    def __init__(
        self, app: Flask | None = None, *, name: str = DEFAULT_NAME, **receiver_options: Any
    ) -> None:
        self.name = name
        self.receiver_options = receiver_options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config = app.config
        options = dict(self.receiver_options)
        options.update(
            {key: config[setting] for setting, key in _CONFIG_OPTIONS if setting in config}
        )
        if options.get("runner") == "asyncio":
            raise ConfigurationError(
                "IVERTON_WEBHOOK_RUNNER must be 'thread' or 'inline' under Flask (WSGI has no "
                "event loop for the asyncio runner)"
            )
        blueprint = webhooks_blueprint(
            config.get("IVERTON_WEBHOOK_SECRET"),
            secrets=_secrets_setting(config.get("IVERTON_WEBHOOK_SECRETS")),
            name=self.name,
            **options,
        )
        app.register_blueprint(
            blueprint, url_prefix=config.get("IVERTON_WEBHOOK_URL_PREFIX", DEFAULT_URL_PREFIX)
        )

    def receiver(self, app: Flask | None = None) -> Receiver:
        """This extension's receiver for ``app`` (default: the current app)."""
        return state_of(app or current_app).receiver(self.name)


_CONFIG_OPTIONS = (
    ("IVERTON_WEBHOOK_STORE", "store"),
    ("IVERTON_WEBHOOK_RUNNER", "runner"),
    ("IVERTON_WEBHOOK_MAX_BODY_BYTES", "max_body_bytes"),
)


def _secrets_setting(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # from an environment variable: "new,old"
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, Sequence):
        return [str(part) for part in value]
    raise ConfigurationError("IVERTON_WEBHOOK_SECRETS must be a list of secrets")


# The ``flask iverton`` commands: the same as ``iverton-webhooks``, for the app's receiver.

iverton_cli = AppGroup(
    "iverton", help="Iverton webhooks: events, replay, worker, prune, send-test."
)
_endpoint_option = click.option(
    "--endpoint", default=None, help="blueprint name, when the app has several endpoints"
)


def _endpoint(name: str | None) -> Endpoint:
    try:
        return state_of(current_app).endpoint(name)
    except WebhookError as error:
        raise click.ClickException(str(error)) from None


@iverton_cli.command("events")
@_endpoint_option
@click.option("--status", type=click.Choice([s.value for s in Status]))
@click.option("--type", "event_type")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def events_command(
    endpoint: str | None, status: str | None, event_type: str | None, limit: int, as_json: bool
) -> None:
    """List stored events, newest first."""
    store = _endpoint(endpoint).receiver.store
    for event in store.list(status=status, event_type=event_type, limit=limit):
        if as_json:
            click.echo(json.dumps(event.to_json()))
        else:
            click.echo(event.summary())


@iverton_cli.command("replay")
@_endpoint_option
@click.argument("ids", nargs=-1)
@click.option("--dead", is_flag=True, help="replay every dead event")
@click.option("--all-handlers", is_flag=True, help="re-run handlers that succeeded")
def replay_command(
    endpoint: str | None, ids: tuple[str, ...], dead: bool, all_handlers: bool
) -> None:
    """Queue events again; the app's runner or `flask iverton worker` processes them."""
    store = _endpoint(endpoint).receiver.store
    wanted = list(ids)
    if dead:
        wanted += [event.id for event in store.list(status=Status.DEAD, limit=1_000_000)]
    if not wanted:
        raise click.UsageError("name event ids or pass --dead")
    replayed = [i for i in wanted if store.replay(i, rerun_all=all_handlers)]
    click.echo(f"replayed {len(replayed)} of {len(wanted)} event(s); the worker will process them")
    if len(replayed) != len(wanted):
        raise click.exceptions.Exit(1)


@iverton_cli.command("worker")
@_endpoint_option
@click.option("--once", is_flag=True, help="one pass, then exit")
@click.option("--interval", type=float, default=2.0, show_default=True)
def worker_command(endpoint: str | None, once: bool, interval: float) -> None:
    """Process due events (pending, retries, crashed) with the app's handlers."""
    receiver = _endpoint(endpoint).receiver
    while True:
        counts = receiver.recover(limit=500)
        if counts:
            click.echo(" ".join(f"{result.value}={n}" for result, n in counts.items()))
        if once:
            return
        if not counts:
            time.sleep(interval)


@iverton_cli.command("prune")
@_endpoint_option
@click.option("--older-than-hours", type=float, default=None, help="default: the retention")
def prune_command(endpoint: str | None, older_than_hours: float | None) -> None:
    """Delete done and dead events past the retention."""
    receiver = _endpoint(endpoint).receiver
    span = None if older_than_hours is None else timedelta(hours=older_than_hours)
    try:
        click.echo(f"deleted {receiver.prune(span)} event(s)")
    except WebhookError as error:
        raise click.ClickException(str(error)) from None


@iverton_cli.command("send-test")
@_endpoint_option
@click.argument("event_type", metavar="TYPE")
@click.option("--url", default=None, help="default: http://127.0.0.1:5000 + the endpoint's path")
@click.option("--secret", default=None, help="default: the endpoint's first secret")
def send_test_command(
    endpoint: str | None, event_type: str, url: str | None, secret: str | None
) -> None:
    """POST a signed sample event, like the dashboard's "Send Test" button."""
    from ..samples import send_sample

    found = _endpoint(endpoint)
    secret = secret or found.signing_secret
    if not secret:
        raise click.UsageError("give --secret (this endpoint was set up with a ready receiver)")
    target = url or _default_url(endpoint)
    try:
        status, body = send_sample(target, event_type, secret)
    except ValueError as error:  # not one of the 22 types
        raise click.BadParameter(str(error), param_hint="TYPE") from None
    except OSError as error:
        raise click.ClickException(f"could not reach {target}: {error}") from None
    click.echo(f"{status} {body.decode('utf-8', 'replace')}")
    if not 200 <= status < 300:
        raise click.exceptions.Exit(1)


def _default_url(endpoint: str | None) -> str:
    # _endpoint() already checked that, without a name, the app has exactly one.
    name = endpoint or next(iter(state_of(current_app).endpoints))
    for rule in current_app.url_map.iter_rules(f"{name}.{VIEW}"):
        return f"http://127.0.0.1:5000{rule.rule}"
    raise click.UsageError(f"no URL rule for endpoint {name!r}; give --url")
