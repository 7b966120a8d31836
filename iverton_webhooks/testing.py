"""Helpers for testing your own webhook handlers, and a pytest plugin.

>>> from iverton_webhooks import Receiver, Router
>>> router = Router()
>>> won = []
>>> _ = router.on("deal.won")(lambda event: won.append(event.data.id))
>>> receiver = inline_receiver(router)
>>> delivery = signed_delivery("deal.won", data={"id": "deal_1"})
>>> receiver.receive("POST", delivery.body, delivery.headers).status, won
(200, ['deal_1'])

With pytest, the plugin (loaded automatically once the package is installed) gives these
fixtures (``pytest --fixtures`` describes each):

- ``iverton_secret``: the signing secret the other fixtures use;
- ``iverton_router``: a fresh strict :class:`~iverton_webhooks.Router`;
- ``iverton_receiver``: an inline, in-memory receiver over that router;
- ``iverton_captured``: every event dispatched through ``iverton_router``;
- ``iverton_signed_post``: posts a signed delivery with a Django, Flask or
  Starlette/FastAPI test client.

Loading the plugin is cheap: this module imports only the standard library and the
signature code; the receiver, the event models (pydantic) and any framework are imported
when a fixture or helper first needs them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .signature import SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from .events import Event
    from .receiver import Receiver
    from .router import Router

TEST_SECRET = "whsec_test_only_not_a_real_secret"


@dataclass(frozen=True)
class Delivery:
    """A request body and the headers the sender would send with it."""

    body: bytes
    headers: dict[str, str]


def signed_delivery(event_type: str, secret: str = TEST_SECRET, **overrides: Any) -> Delivery:
    """A correctly signed sample event (see :func:`iverton_webhooks.samples.sample_event`).

    ``overrides`` replace fields of the sample: ``id="evt_1"``, ``data={"id": "deal_1"}``.
    """
    from .samples import sample_body

    return deliver(sample_body(event_type, **overrides), secret)


def deliver(body: bytes, secret: str = TEST_SECRET) -> Delivery:
    """Sign any body as the sender would."""
    return Delivery(
        body=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
    )


def inline_receiver(router: Router | None = None, secret: str = TEST_SECRET) -> Receiver:
    """A receiver that processes inline in memory: handlers have run when ``receive`` returns."""
    from .receiver import Receiver
    from .router import Router

    return Receiver(secret, router=router or Router(), store="memory://", runner="inline")


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
    """The events a router dispatched, in order: a list of :class:`~iverton_webhooks.Event`.

    ``captured.attach(router)`` listens on ``router`` (``"*"``, so every event type);
    ``captured.types`` and ``captured.ids`` are shortcuts; ``captured.of("deal.won")``
    keeps one type.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    def attach(self, router: Router) -> None:
        """Record every event ``router`` dispatches from now on."""
        router.add(self._record, "*", name=f"{__name__}.Captured#{id(self)}")

    def _record(self, event: Event) -> None:
        self.events.append(event)

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


# The fixtures exist only inside a pytest session (which is when pytest loads this plugin):
# importing pytest costs more than half a second, which a script using signed_delivery()
# should not pay.
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
        from .router import Router

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
