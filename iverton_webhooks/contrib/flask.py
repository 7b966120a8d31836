"""Flask: a blueprint factory, an extension configured from ``app.config``, ``flask iverton``.

Blueprint (each app it is registered on gets its own `Receiver`)::

    app.register_blueprint(webhooks_blueprint(secret="whsec_..."), url_prefix="/webhooks/iverton")

Extension, application-factory style (config is read at ``init_app``)::

    webhooks = IvertonWebhooks()            # IVERTON_WEBHOOK_SECRET(S), IVERTON_WEBHOOK_STORE, ...
    webhooks.init_app(app)

Handlers registered with ``@on(...)`` run after the reply, on the receiver's thread pool,
inside an app context. Several endpoints with different secrets are several blueprints
with different ``name=``, or, with ``endpoint_registry=True``
(``IVERTON_WEBHOOK_ENDPOINT_REGISTRY``), endpoints registered in the store, each at
``<prefix>/<name>``. With Flask-WTF's ``CSRFProtect``, exempt the blueprint.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Sequence
from types import ModuleType
from typing import Any, cast

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import RequestEntityTooLarge

from .._body import BodyTooLarge
from .._finders import register_finder
from .._placement import start_if_serving
from .._receiver import HeadersLike, Receiver, Reply
from .._settings import options_from, refuse_asyncio_runner
from ..adapter import check_secrets, handle, make_receiver, named_endpoint, serves_registry
from ..inbox.base import DEFAULT_ENDPOINT
from .flask_cli import iverton_cli
from .flask_state import EXTENSION_KEY, VIEW, Endpoint, WebhooksState, state_of

__all__ = [
    "EXTENSION_KEY",
    "Endpoint",
    "IvertonWebhooks",
    "WebhooksState",
    "receive",
    "state_of",
    "webhooks_blueprint",
]

DEFAULT_NAME = "iverton_webhooks"
DEFAULT_URL_PREFIX = "/webhooks/iverton"
# Every common method reaches the view, so a GET gets the core's JSON 405 (with
# ``Allow: POST``) rather than Flask's HTML one. HEAD is added by Flask with GET.
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


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

    Pass ``secret=`` (or ``secrets=[new, old]``) and any `Receiver` option
    (``store=``, ``router=``, ``runner=``, ``max_body_bytes=``, ...); the receiver is built
    when the blueprint is registered, once per app, with the store defaulting to
    ``<instance folder>/<name>.sqlite3``, its events kept under the endpoint ``name``
    (`endpoint_name`) and handlers run inside that app's context. Or pass a ready
    ``receiver=`` (shared by every app the blueprint is registered on). Either way its
    processing starts at registration in a process that serves (``flask run``, gunicorn
    workers, ...), never in other commands, shells or test sessions.

    With ``endpoint_registry=True`` (or a ready receiver that has it on) the blueprint
    also answers ``<url_prefix>/<name>`` for the endpoint ``name`` registered in the
    store, and the secret is optional (without one ``url_prefix`` itself answers 404).
    """
    # Mistakes fail here, where the blueprint is made, not at registration.
    if receiver is not None:
        # A ready receiver with options is refused.
        make_receiver(receiver, secret, secrets, missing_secret=_MISSING, **receiver_options)
    else:
        required = not serves_registry(receiver_options)
        check_secrets(secret, secrets, missing_secret=_MISSING, required=required)

    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    def setup(state: BlueprintSetupState) -> None:
        app = cast(Flask, state.app)  # typed as Flask's sans-I/O base class since 3.0
        full_name = f"{state.name_prefix}.{state.name}".lstrip(".")
        endpoints = state_of(app).endpoints  # Flask refuses a name registered twice
        if receiver is not None:
            endpoints[full_name] = Endpoint(receiver)
        else:
            defaults = {
                "store": f"sqlite:///{app.instance_path}/{full_name}.sqlite3",
                "process_context": app.app_context,
                "endpoint": endpoint_name(full_name),
            }
            # An option passed as None keeps the default, as it does for a Receiver.
            given = {
                k: v for k, v in receiver_options.items() if v is not None or k not in defaults
            }
            built = Receiver(secret, secrets=secrets, **{**defaults, **given})
            endpoints[full_name] = Endpoint(built, secret or next(iter(secrets or ()), None))
        served = endpoints[full_name].receiver
        if served.directory is not None:
            # Everything below the prefix reaches the core, so any name nobody registered
            # (slashes and all) gets its one 404 body. Without the registry nothing
            # below the prefix is routed: the app's own routes may live there.
            state.add_url_rule(
                "/<path:name>",
                f"{VIEW}_named",
                _webhook_view,
                methods=_METHODS,
                provide_automatic_options=False,
            )
        # In a serving process recovery starts now, with no request (in each forked
        # worker under gunicorn --preload); never in other commands or test sessions.
        start_if_serving(served)
        if "iverton" not in app.cli.commands:
            app.cli.add_command(iverton_cli)

    blueprint.record(setup)
    # "/prefix" and "/prefix/" are one endpoint: a redirect would fail the delivery.
    for rule, endpoint in (("", VIEW), ("/", f"{VIEW}_slash")):
        blueprint.add_url_rule(
            rule, endpoint, _webhook_view, methods=_METHODS, provide_automatic_options=False
        )
    return blueprint


_MISSING = "pass secret='whsec_...' (or secrets=[new, old] while rotating)"
_MISSING_CONFIG = (
    "set IVERTON_WEBHOOK_SECRET in app.config (or the environment variable "
    "FLASK_IVERTON_WEBHOOK_SECRET, read by app.config.from_prefixed_env()) to the endpoint's "
    "signing secret from the Iverton dashboard; while rotating, IVERTON_WEBHOOK_SECRETS = "
    "[new, old]"
)


def endpoint_name(blueprint_name: str) -> str:
    """The endpoint a blueprint's events are kept under: its name, except that the
    default blueprint keeps the core's ``"default"`` (so ``iverton-webhooks`` commands and
    inboxes from before endpoints existed need no ``--endpoint``)."""
    return DEFAULT_ENDPOINT if blueprint_name == DEFAULT_NAME else blueprint_name


def _webhook_view(name: str | None = None) -> Response:
    blueprint = request.blueprint
    assert blueprint is not None  # only ever routed through a blueprint
    receiver = state_of(current_app).receiver(blueprint)
    reply = receive(receiver, named_endpoint(receiver, name))
    return Response(reply.body, status=reply.status, headers=list(reply.headers))


def receive(receiver: Receiver, endpoint: str | None = None) -> Reply:
    """Run the current request through ``receiver``: the raw body whatever its content
    type, refused with 413 before reading when over the receiver's cap or Flask's
    ``MAX_CONTENT_LENGTH``; any other method than POST gets 405 with nothing read.
    ``endpoint``: the registered endpoint the URL names, if any (see `Receiver.receive`)."""

    def read(size: int) -> bytes:
        # Any other error (a client gone mid-body) is the kit's 400.
        try:
            return request.stream.read(size)
        except RequestEntityTooLarge:  # Werkzeug's own cap (MAX_CONTENT_LENGTH)
            raise BodyTooLarge from None

    # Werkzeug's Headers: a case-insensitive .get() that returns the first of repeated
    # headers, which is all the core uses.
    headers: HeadersLike = request.headers
    return handle(
        receiver, request.method, headers, read, limit=request.max_content_length, endpoint=endpoint
    )


class IvertonWebhooks:
    """The Flask extension: one webhook endpoint per app, configured from ``app.config``,
    mounted at ``/webhooks/iverton`` (``IVERTON_WEBHOOK_URL_PREFIX``).

    Read at `init_app`: every settings key after ``IVERTON_WEBHOOK_`` (see
    `Settings.from_mapping`; ``IVERTON_WEBHOOK_SECRET``, ``IVERTON_WEBHOOK_SECRETS``,
    ``IVERTON_WEBHOOK_STORE``, ...) and ``IVERTON_WEBHOOK_URL_PREFIX``. Keyword arguments
    (``router=``, ``retry=``, ``max_age=``, ...) are passed to every app's `Receiver`;
    config keys win over them. Processing starts at ``init_app`` in a process that serves
    (see `webhooks_blueprint`).
    """

    def __init__(
        self, app: Flask | None = None, *, name: str = DEFAULT_NAME, **receiver_options: Any
    ) -> None:
        self.name = name
        self.receiver_options = receiver_options
        self.apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config = app.config
        options = dict(self.receiver_options)
        options.update(options_from(config, where="app.config", prefix=CONFIG_PREFIX))
        refuse_asyncio_runner(options.get("runner"), "IVERTON_WEBHOOK_RUNNER")
        given = options.pop("secrets", None)
        secrets = list(given) if given else None
        # Checked first, so that a missing secret says which config key to set.
        required = not serves_registry(options)
        check_secrets(None, secrets, missing_secret=_MISSING_CONFIG, required=required)
        blueprint = webhooks_blueprint(
            None,
            secrets=secrets,
            name=self.name,
            url_prefix=DEFAULT_URL_PREFIX,
            receiver=None,
            **options,
        )
        app.register_blueprint(
            blueprint, url_prefix=config.get("IVERTON_WEBHOOK_URL_PREFIX", DEFAULT_URL_PREFIX)
        )
        self.apps.add(app)

    def receiver(self, app: Flask | None = None) -> Receiver:
        """This extension's receiver for ``app`` (default: the current app)."""
        return state_of(app or current_app).receiver(self.name)


#: ``app.config`` keys are the settings' keys after this prefix (IVERTON_WEBHOOK_LEASE).
CONFIG_PREFIX = "IVERTON_WEBHOOK_"


#: Flask's own names for an application factory (``flask --app`` calls them too).
_FACTORIES = ("create_app", "make_app")


def _find(target: object) -> list[Receiver] | None:
    """The receivers of a Flask app, of this extension's apps, or of the app a module's
    factory builds (``iverton-webhooks ... --app MODULE``); ``None`` for other objects."""
    if isinstance(target, Flask):
        state = target.extensions.get(EXTENSION_KEY)
        if not isinstance(state, WebhooksState):
            return None
        return [endpoint.receiver for endpoint in state.endpoints.values()]
    if isinstance(target, IvertonWebhooks):
        return [receiver for app in list(target.apps) for receiver in _find(app) or ()]
    if isinstance(target, ModuleType):
        values = vars(target).values()
        if not any(value is Flask or isinstance(value, IvertonWebhooks) for value in values):
            return None  # not a Flask module: its factory is none of our business
        for name in _FACTORIES:
            factory = getattr(target, name, None)
            if callable(factory) and _takes_no_arguments(factory):
                app = factory()
                if isinstance(app, Flask):
                    return _find(app)
    return None


def _takes_no_arguments(func: Any) -> bool:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )


register_finder(_find)
