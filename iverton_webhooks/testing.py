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
fixtures ``iverton_router`` (a fresh strict :class:`Router`), ``iverton_receiver`` (an
inline, in-memory receiver over that router) and ``iverton_secret``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .receiver import Receiver
from .router import Router
from .samples import sample_body
from .signature import SIGNATURE_HEADER, sign

TEST_SECRET = "whsec_test_only_not_a_real_secret"


@dataclass(frozen=True)
class Delivery:
    """A request body and the headers the sender would send with it."""

    body: bytes
    headers: dict[str, str]


def signed_delivery(event_type: str, secret: str = TEST_SECRET, **overrides: Any) -> Delivery:
    """A correctly signed sample event (see :func:`iverton_webhooks.samples.sample_event`)."""
    return deliver(sample_body(event_type, **overrides), secret)


def deliver(body: bytes, secret: str = TEST_SECRET) -> Delivery:
    """Sign any body as the sender would."""
    return Delivery(
        body=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
    )


def inline_receiver(router: Router | None = None, secret: str = TEST_SECRET) -> Receiver:
    """A receiver that processes inline in memory: handlers have run when ``receive`` returns."""
    return Receiver(secret, router=router or Router(), store="memory://", runner="inline")


try:
    import pytest
except ImportError:  # pragma: no cover - the plugin is only loaded by pytest
    pass
else:

    @pytest.fixture
    def iverton_secret() -> str:
        return TEST_SECRET

    @pytest.fixture
    def iverton_router() -> Router:
        return Router()

    @pytest.fixture
    def iverton_receiver(iverton_router: Router, iverton_secret: str) -> Iterator[Receiver]:
        receiver = inline_receiver(iverton_router, iverton_secret)
        yield receiver
        receiver.close()


def __getattr__(name: str) -> Any:
    # The store contract suite needs pytest; import it only when a store's tests ask.
    if name == "StoreContract":
        from .store_contract import StoreContract

        return StoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
