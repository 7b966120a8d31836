"""Helpers for testing your own webhook handlers, and a pytest plugin.

>>> from iverton_webhooks import Receiver, Router
>>> router = Router()
>>> won = []
>>> _ = router.on("deal.won")(lambda event: won.append(event.data.id))
>>> receiver = inline_receiver(router)
>>> delivery = signed_delivery("deal.won", data={"id": "deal_1"})
>>> receiver.receive("POST", delivery.body, delivery.headers).status, won
(200, ['deal_1'])

With pytest, the plugin (loaded automatically once the package is installed) gives the
``iverton_*`` fixtures: see docs/testing.md, or ``pytest --fixtures``.

Loading the plugin is cheap: this module imports only the standard library and the
signature code; the receiver, the event models (pydantic) and any framework are imported
when a fixture or helper first needs them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ._signature import SIGNATURE_HEADER, Verifier, sign

if TYPE_CHECKING:
    from ._receiver import Receiver
    from ._router import Router
    from .events import Event
    from .inbox.base import EndpointRegistry, Status, Store

__all__ = [
    "TEST_SECRET",
    "AppWebhooks",
    "Captured",
    "Delivery",
    "SignedPost",
    "default_secret",
    "deliver",
    "inline_receiver",
    "isolate",
    "post_delivery",
    "signed_delivery",
]

TEST_SECRET = "whsec_test_only_not_a_real_secret"


@dataclass(frozen=True)
class Delivery:
    """A request body and the headers the sender would send with it."""

    body: bytes
    headers: dict[str, str]


#: Inside a test: how to get the ``iverton_secret`` fixture's value (set per test by the
#: plugin), so the helpers sign with the secret the test's fixtures verify with.
_fixture_secret: Callable[[], str] | None = None


def default_secret() -> str:
    """The secret the helpers sign with when given none: the ``iverton_secret`` fixture's
    value inside a pytest test, else `TEST_SECRET`."""
    return TEST_SECRET if _fixture_secret is None else _fixture_secret()


def signed_delivery(event_type: str, secret: str | None = None, **overrides: Any) -> Delivery:
    """A correctly signed sample event (see `iverton_webhooks.samples.sample_event`),
    signed with ``secret`` or, by default, `default_secret()`.

    ``overrides`` replace fields of the sample: ``id="evt_1"``, ``data={"id": "deal_1"}``.
    """
    from .samples import sample_body

    return deliver(sample_body(event_type, **overrides), secret)


def deliver(body: bytes, secret: str | None = None) -> Delivery:
    """Sign any body as the sender would (with `default_secret()` unless given one)."""
    key = default_secret() if secret is None else secret
    return Delivery(
        body=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, key)},
    )


def inline_receiver(router: Router | None = None, secret: str | None = None) -> Receiver:
    """A receiver that processes inline in memory: handlers have run when ``receive`` returns.
    It verifies with ``secret`` or, by default, `default_secret()`."""
    from ._receiver import Receiver
    from ._router import Router

    key = default_secret() if secret is None else secret
    return Receiver(key, router=router or Router(), store="memory://", runner="inline")


def post_delivery(client: Any, path: str, delivery: Delivery) -> Any:
    """POST ``delivery`` with a framework's test client; returns the client's response.

    Works with Django's ``django.test.Client``, Flask's ``app.test_client()`` and
    Starlette's or FastAPI's ``TestClient`` (told apart by their module, so no framework
    is imported here). The body is sent byte for byte: a test client that re-encoded it
    would break the signature.
    """
    kind = type(client).__module__.partition(".")[0]
    if kind == "django":
        # Django's test client takes extra headers as WSGI environ keys.
        extra = {
            "HTTP_" + name.upper().replace("-", "_"): value
            for name, value in delivery.headers.items()
            if name.lower() != "content-type"
        }
        content_type = delivery.headers.get("Content-Type", "application/json")
        return client.post(path, data=delivery.body, content_type=content_type, **extra)
    if kind in ("flask", "werkzeug"):
        return client.post(path, data=delivery.body, headers=delivery.headers)
    if kind in ("starlette", "fastapi", "httpx"):
        return client.post(path, content=delivery.body, headers=delivery.headers)
    raise TypeError(
        f"post_delivery: unsupported test client {type(client).__qualname__} from "
        f"{type(client).__module__}; use a Django, Flask or Starlette/FastAPI test client"
    )


class SignedPost:
    """``iverton_signed_post(client, path, "deal.won", id="evt_1")``: sign a sample event
    (or ``body=`` bytes of your own) with the fixture's secret and POST it with ``client``.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(
        self,
        client: Any,
        path: str,
        event_type: str = "deal.won",
        *,
        body: bytes | None = None,
        **overrides: Any,
    ) -> Any:
        if body is not None:
            delivery = deliver(body, self.secret)
        else:
            delivery = signed_delivery(event_type, self.secret, **overrides)
        return post_delivery(client, path, delivery)


class Captured:
    """The events a router dispatched, in order: a list of `Event`.

    ``captured.attach(router)`` listens on ``router`` (``"*"``, so every event type);
    ``captured.types`` and ``captured.ids`` are shortcuts; ``captured.of("deal.won")``
    keeps one type.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    def attach(self, router: Router) -> None:
        """Record every event ``router`` dispatches from now on."""
        router.add(self.events.append, "*", name=f"{__name__}.Captured#{id(self)}")

    @property
    def types(self) -> list[str]:
        """The event types, in dispatch order."""
        return [event.type for event in self.events]

    @property
    def ids(self) -> list[str]:
        """The event ids, in dispatch order."""
        return [event.id for event in self.events]

    def of(self, event_type: str) -> list[Event]:
        """The events of one type."""
        return [event for event in self.events if event.type == event_type]

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __getitem__(self, index: int) -> Event:
        return self.events[index]


class AppWebhooks:
    """Your app's own webhook receivers, isolated for one test (see `isolate`).

    Each receiver keeps its secret, router, endpoint and settings, but records into
    `store` (a fresh inbox, in memory by default) and processes inline: when the test
    client returns, the handlers have run. Nothing reaches the app's real inbox, so a
    test passes the second time as it did the first. `signed_delivery`, `deliver` and
    `post` sign with the app's own secret, read from its receiver (never shown: the
    `repr` names the endpoints only).
    """

    def __init__(self, receivers: list[Receiver], store: Store) -> None:
        self.receivers = receivers
        self.store = store

    def __repr__(self) -> str:
        endpoints = ", ".join(repr(receiver.endpoint) for receiver in self.receivers)
        return f"<AppWebhooks endpoints={endpoints} store={self.store!r}>"

    def receiver(self, endpoint: str | None = None) -> Receiver:
        """The app's receiver for ``endpoint``; by default its only one (or ``"default"``).
        A name registered in the store: the receiver that serves the registry."""
        if endpoint is None and len(self.receivers) == 1:
            return self.receivers[0]
        from .inbox.base import DEFAULT_ENDPOINT

        wanted = endpoint or DEFAULT_ENDPOINT
        for receiver in self.receivers:
            if receiver.endpoint == wanted:
                return receiver
        for receiver in self.receivers:
            if receiver.directory is not None:
                return receiver
        names = ", ".join(repr(receiver.endpoint) for receiver in self.receivers)
        raise LookupError(f"the app has receivers for endpoints {names}: pass endpoint=NAME")

    def deliver(self, body: bytes, *, endpoint: str | None = None) -> Delivery:
        """Sign ``body`` with the app's (newest) secret for ``endpoint``: a receiver's
        own, or that of an endpoint registered in the store."""
        receiver = self.receiver(endpoint)
        signer = receiver.verifier
        if endpoint is not None and endpoint != receiver.endpoint:
            record = cast("EndpointRegistry", receiver.store).get_endpoint(endpoint)
            if record is None or not record.secrets:
                raise LookupError(f"no endpoint named {endpoint!r} is registered in the store")
            signer = Verifier([record.secrets[0].secret])
        if signer is None:
            raise LookupError(
                f"endpoint {receiver.endpoint!r} has no secret of its own: pass the "
                "endpoint=NAME of a registered endpoint"
            )
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signer.sign(body)}
        return Delivery(body=body, headers=headers)

    def signed_delivery(
        self, event_type: str = "deal.won", *, endpoint: str | None = None, **overrides: Any
    ) -> Delivery:
        """A sample event (``overrides`` replace its fields), signed with the app's secret."""
        from .samples import sample_body

        return self.deliver(sample_body(event_type, **overrides), endpoint=endpoint)

    def post(
        self,
        client: Any,
        path: str,
        event_type: str = "deal.won",
        *,
        body: bytes | None = None,
        endpoint: str | None = None,
        **overrides: Any,
    ) -> Any:
        """POST a signed sample event (or ``body=`` bytes) with a framework's test client."""
        if body is not None:
            delivery = self.deliver(body, endpoint=endpoint)
        else:
            delivery = self.signed_delivery(event_type, endpoint=endpoint, **overrides)
        return post_delivery(client, path, delivery)

    def status(self, event_id: str, *, endpoint: str | None = None) -> Status | None:
        """The recorded event's status in the test's inbox, or None if it was not recorded."""
        stored = self.receiver(endpoint).processor.get(event_id)
        return None if stored is None else stored.status


def _receivers_of(target: object) -> list[Receiver]:
    from ._finders import LOOKED_FOR, receivers_of
    from ._receiver import Receiver

    if isinstance(target, str):
        target = importlib.import_module(target)
    # The same receiver may be found more than once: each is kept once, in order.
    found = list(dict.fromkeys(r for r in receivers_of(target) if isinstance(r, Receiver)))
    if not found:
        raise LookupError(
            f"found no webhook receiver in {target!r}; looked for {'; '.join(LOOKED_FOR)}"
        )
    return found


@contextmanager
def isolate(target: object, store: Store | str = "memory://") -> Iterator[AppWebhooks]:
    """Isolate an app's receivers for the ``with`` block: a Flask app, a Starlette or
    FastAPI app, a Django project (its settings module, or that module's name, e.g.
    ``"mysite.settings"``), any module holding receivers, or a `Receiver`.

    Every receiver the app holds (as ``iverton-webhooks --app`` finds them) records into
    one fresh ``store`` (a URL or a store; separate endpoints stay separate in it) and
    processes inline; its own store and runner are put back, untouched, at the end.
    """
    from ._answers import StoreAnswerLog
    from ._directory import EndpointDirectory
    from .inbox import open_store
    from .runners import InlineRunner

    receivers = _receivers_of(target)
    inbox = open_store(store)
    saved = [(r, r.store, r.answer_log, r.runner, r.directory) for r in receivers]
    try:
        for receiver in receivers:
            runner = InlineRunner()
            runner.bind(receiver.processor)
            receiver.store = receiver.processor.store = inbox
            if receiver.directory is not None:
                receiver.directory = EndpointDirectory(cast("EndpointRegistry", inbox))
            receiver.answer_log = StoreAnswerLog(inbox)
            receiver.runner = runner
        yield AppWebhooks(receivers, inbox)
    finally:
        for receiver, old_store, old_log, old_runner, old_directory in saved:
            receiver.store = receiver.processor.store = old_store
            receiver.directory = old_directory
            receiver.answer_log = old_log
            receiver.runner = old_runner
        inbox.close()


# The fixtures exist only inside a pytest session (which is when pytest loads this plugin):
# a script using signed_delivery() should not pay for importing pytest.
if "pytest" in sys.modules:
    import pytest

    @pytest.fixture
    def iverton_secret() -> str:
        """The signing secret every iverton_* fixture signs and verifies with.

        Override it in your conftest.py to test with your own (realistic) secret.
        """
        return TEST_SECRET

    @pytest.fixture
    def iverton_router() -> Router:
        """A fresh, empty, strict Router for one test: register handlers on it with
        ``@iverton_router.on("deal.won")``. iverton_receiver dispatches to it.
        """
        from ._router import Router

        return Router()

    @pytest.fixture
    def iverton_receiver(iverton_router: Router, iverton_secret: str) -> Iterator[Receiver]:
        """An inline Receiver over iverton_router with an in-memory inbox, closed after the
        test: when ``receive("POST", body, headers)`` returns, the handlers have run and
        ``iverton_receiver.store`` holds the event's final status.
        """
        receiver = inline_receiver(iverton_router, iverton_secret)
        yield receiver
        receiver.close()

    @pytest.fixture
    def iverton_captured(iverton_router: Router) -> Captured:
        """Every event dispatched through iverton_router during the test, in order
        (a Captured: a list of Events with ``.types``, ``.ids`` and ``.of(type)``).
        To capture what another router dispatches, call ``iverton_captured.attach(router)``.
        """
        captured = Captured()
        captured.attach(iverton_router)
        return captured

    @pytest.fixture(autouse=True)
    def _iverton_helpers_sign_with_the_fixture(request: pytest.FixtureRequest) -> Iterator[None]:
        # signed_delivery() & co. sign with iverton_secret in a test, asked for only when
        # a helper signs without a secret (a test that signs nothing never builds it).
        global _fixture_secret
        before = _fixture_secret
        _fixture_secret = lambda: str(request.getfixturevalue("iverton_secret"))  # noqa: E731
        yield
        _fixture_secret = before

    @pytest.fixture
    def iverton_isolate() -> Iterator[Callable[..., AppWebhooks]]:
        """Test your real app without touching its inbox: ``webhooks = iverton_isolate(app)``
        (a Flask or Starlette/FastAPI app, or a Django project's settings module name such
        as ``"mysite.settings"``) gives each of the app's receivers a fresh in-memory inbox
        (or ``store=...``) and an inline runner until the test ends; ``webhooks.post(client,
        path, "deal.won", id="evt_1")`` signs with the app's own secret and posts.
        """
        with ExitStack() as stack:

            def isolate_app(target: object, store: Store | str = "memory://") -> AppWebhooks:
                return stack.enter_context(isolate(target, store))

            yield isolate_app

    @pytest.fixture
    def iverton_signed_post(iverton_secret: str) -> SignedPost:
        """Post a signed delivery with a framework test client and return its response:
        ``iverton_signed_post(client, "/webhooks/iverton", "deal.won", id="evt_1")``, or
        ``body=b"..."`` to sign bytes of your own. Works with Django's test Client, Flask's
        test_client() and Starlette/FastAPI's TestClient; signs with iverton_secret.
        """
        return SignedPost(iverton_secret)


def __getattr__(name: str) -> Any:
    # The store contract suite needs pytest; import it only when a store's tests ask.
    if name == "StoreContract":
        from .store_contract import StoreContract

        return StoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
