"""One lazily built `Receiver` per endpoint, from the settings."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from django.db import transaction

from ..._errors import ConfigurationError
from ..._processor import Processor
from ..._receiver import Receiver
from ...adapter import check_secrets, serves_registry
from ...runners import BaseRunner, make_runner
from . import conf
from .router import SignalRouter
from .signals import signal_hooks
from .store import DjangoStore, recycle_connections

log = logging.getLogger("iverton_webhooks")

_endpoints: weakref.WeakSet[Endpoint] = weakref.WeakSet()
#: Set by ``start_endpoints()`` in a serving process: receivers start as they are built.
_serving = threading.Event()

MISSING_SECRET = (
    f"set {conf.SETTING} = {{'SECRET': 'whsec_...'}} in your settings (the endpoint's signing "
    "secret from the Iverton dashboard; 'SECRETS': [new, old] while rotating), or pass "
    "webhook_view(secret=...); or, to serve only the endpoints kept in the database, "
    "'ENDPOINT_REGISTRY': True"
)


class OnCommitRunner(BaseRunner):
    """Hands an event to ``inner`` once the transaction that recorded it has committed
    (at once in autocommit mode), so no worker can look for a row not yet visible."""

    def __init__(self, inner: BaseRunner, using: str) -> None:
        self.inner = inner
        self.using = using

    def bind(self, processor: Processor) -> None:
        super().bind(processor)
        self.inner.bind(processor)

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        transaction.on_commit(partial(self.inner.submit, event_id, endpoint), using=self.using)

    def start(self) -> None:
        self.inner.start()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.inner.attach(loop)

    async def startup(self) -> None:
        await self.inner.startup()

    async def drain(self, timeout: float = 10.0) -> int:
        return await self.inner.drain(timeout)

    def close(self, timeout: float | None = None) -> None:
        self.inner.close(timeout)


@contextmanager
def fresh_connections() -> Iterator[None]:
    """Around each event in a worker thread: no stale or broken connection is reused
    (as Django does around each request)."""
    recycle_connections()
    try:
        yield
    finally:
        recycle_connections()


def build_receiver(**overrides: Any) -> Receiver:
    """A Receiver over the ``WebhookEvent`` table, dispatching to the router and to the
    signals, handing work off after commit. ``overrides`` (the lower-case names
    ``Receiver`` takes) beat the ``IVERTON_WEBHOOKS`` setting."""
    opts = conf.options()
    settings = conf.read(opts)
    kwargs: dict[str, Any] = {
        "settings": settings,
        "secrets": list(settings.secrets) or None,
        "router": conf.router(opts.get("ROUTER")),
        "database": conf.database(opts),
        "hooks": signal_hooks,  # each lifecycle hook sends its Django signal
    }
    if "secret" in overrides or "secrets" in overrides:
        kwargs["secrets"] = None
    kwargs.update(overrides)
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    using = str(kwargs.pop("database", "default"))
    base = kwargs.pop("router")
    runner = kwargs.pop("runner", kwargs["settings"].runner)
    secret, secrets = kwargs.pop("secret", None), kwargs.pop("secrets", None)
    # Said here, with where the secret goes in a Django project.
    check_secrets(
        secret, secrets, missing_secret=MISSING_SECRET, required=not serves_registry(kwargs)
    )
    return Receiver(
        secret,
        secrets=secrets,
        router=base if isinstance(base, SignalRouter) else SignalRouter(base),
        store=DjangoStore(using),
        runner=OnCommitRunner(make_runner(runner), using),
        process_context=fresh_connections,
        **kwargs,
    )


class Endpoint:
    """The receiver behind one view, built on first use and rebuilt after the setting
    changes (``override_settings`` in tests)."""

    def __init__(self, **overrides: Any) -> None:
        self.overrides = overrides
        self._receiver: Receiver | None = None
        self._lock = threading.Lock()
        _endpoints.add(self)
        if _serving.is_set():
            # Made after start-up (the URLconf's webhook_view(...)): start it now too.
            try:
                self.receiver.start()
            except ConfigurationError:
                log.exception("webhook endpoint %r could not start", overrides.get("endpoint"))

    @property
    def receiver(self) -> Receiver:
        receiver = self._receiver
        if receiver is None:
            with self._lock:
                if self._receiver is None:
                    self._receiver = build_receiver(**self.overrides)
                    if _serving.is_set():
                        self._receiver.start()
                receiver = self._receiver
        return receiver

    def reset(self, timeout: float | None = 5.0) -> None:
        """Stop the current receiver's runner; the next request builds a new one."""
        with self._lock:
            receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.close(timeout)


#: The endpoint configured by ``IVERTON_WEBHOOKS`` alone, served by ``urls.py``.
default_endpoint = Endpoint()


def get_receiver() -> Receiver:
    """The default endpoint's receiver (replay, prune and inspect from your own code)."""
    return default_endpoint.receiver


def start_endpoints() -> None:
    """In a serving process: start processing (recovery first) for every endpoint built
    so far and every one built from now on, with no request needed. Called by
    ``AppConfig.ready()`` through the core's policy (in each forked worker under a
    pre-fork master)."""
    _serving.set()
    default_endpoint.receiver.start()
    for endpoint in list(_endpoints):
        endpoint.receiver.start()
    # Endpoints made by webhook_view(...) in the URLconf exist once it is imported, which
    # Django does at the first request: import it now (the app registry is ready), so
    # they too recover with no request.
    threading.Thread(target=_load_urlconf, name="iverton-urlconf", daemon=True).start()


def _load_urlconf() -> None:
    from django.apps import apps
    from django.urls import get_resolver

    if not apps.ready:
        return  # it would raise AppRegistryNotReady: the first request imports it
    try:
        get_resolver().url_patterns  # noqa: B018 - imports the URLconf (cached by Django)
    except Exception:  # the first request will raise it where Django reports it
        log.warning("could not import the URLconf early to start webhook endpoints", exc_info=True)


def project_receivers() -> list[Receiver]:
    """The receiver of every endpoint this project declares, one per endpoint name: the
    settings' default one (when it has a secret or the registry) and those of
    ``webhook_view(...)`` in the URLconf (imported here). None of them is started: a
    worker command processes their events in the foreground."""
    _load_urlconf()
    found: dict[str, Receiver] = {}
    error: ConfigurationError | None = None
    for endpoint in [default_endpoint, *_endpoints]:
        try:
            receiver = endpoint.receiver
        except ConfigurationError as exc:  # e.g. no SECRET, while URLconf views pass one
            error = error or exc
            continue
        found.setdefault(receiver.processor.endpoint, receiver)
    if not found and error is not None:
        raise error
    return list(found.values())


def reset_endpoints(**kwargs: Any) -> None:
    """``setting_changed`` receiver: forget receivers built from old settings."""
    if kwargs.get("setting") in (None, conf.SETTING, "DATABASES"):
        for endpoint in list(_endpoints):
            endpoint.reset()
