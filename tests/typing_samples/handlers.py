"""Handlers that ``mypy --strict`` must accept or refuse: checked by tests/test_typing.py.

A line that ends with ``# expect: CODE`` must get exactly that mypy error; every other
line must get none. Never imported (tests/typing_samples/conftest.py).
"""

from __future__ import annotations

from typing import Any

from typing_extensions import reveal_type

from iverton_webhooks import Event, Router, on
from iverton_webhooks.events import Contact, Deal, Email, Resource

router = Router()
loose = Router(strict=False)


# Accepted: the name decides the event type, sync or async.
@router.on("deal.won")
def won(event: Event[Deal]) -> None: ...


reveal_type(won)


@on("deal.won")
def won_default(event: Event[Deal]) -> None: ...


@router.on("deal.*")
def deals(event: Event[Deal]) -> None: ...


@router.on("deal.won", "deal.lost", "deal.*")
async def closed(event: Event[Deal]) -> None: ...


reveal_type(closed)


@on("contact.created")
def created(event: Event[Contact]) -> None:
    print(event.data.email)


@router.on("*")
def everything(event: Event[Any]) -> None: ...


@router.on("email.bounced")
def plain(event: Event) -> None: ...


@router.on("email.*")
def base(event: Event[Resource]) -> None: ...


@router.on("deal.won", "contact.created")
def mixed(event: Event[Any]) -> None: ...


@loose.on("invoice.paid")
def future(event: Event[Any]) -> None: ...


# Refused.
@router.on("deal.won")  # expect: type-var
def wrong_model(event: Event[Contact]) -> None: ...


@on("deal.won")  # expect: type-var
def wrong_model_default(event: Event[Contact]) -> None: ...


@router.on("deal.*")  # expect: type-var
async def wrong_family(event: Event[Email]) -> None: ...


@router.on("deal.won")  # expect: type-var
def not_a_handler(a: int, b: str) -> int:
    return a


@on("*")  # expect: type-var
def two_args(a: int, b: str) -> int:
    return a


@router.on("deal.won")  # expect: type-var
def returns_a_value(event: Event[Deal]) -> int:
    return 1


@router.on("deal.won", "contact.created")  # expect: type-var
def mixed_as_deal(event: Event[Deal]) -> None: ...


@router.on("contact.created")
def data_is_typed(event: Event[Contact]) -> None:
    print(event.data.stage)  # expect: attr-defined


@router.on("*")  # expect: type-var
def everything_as_deal(event: Event[Deal]) -> None: ...


@router.on("*")
def everything_plain(event: Event) -> None: ...


@loose.on("invoice.paid")  # expect: type-var
def future_as_deal(event: Event[Deal]) -> None: ...


def registered_later(event: Event[Deal]) -> None: ...


router.on("deal.lost")(registered_later)
router.on("contact.deleted")(registered_later)  # expect: type-var
