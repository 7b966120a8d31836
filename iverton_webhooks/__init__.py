"""Receive Iverton AI webhooks correctly: verify, record durably, acknowledge, dispatch.

>>> from iverton_webhooks import Router, Receiver, sign
>>> from iverton_webhooks.samples import sample_body
>>> router = Router()
>>> won = []
>>> @router.on("deal.won")
... def celebrate(event: Event) -> None:
...     won.append(event.data.id)
>>> receiver = Receiver(secret="whsec_example", router=router, store="memory://", runner="inline")
>>> body = sample_body("deal.won")
>>> receiver.receive("POST", body, {"X-Iverton-Signature": sign(body, "whsec_example")}).status
200
>>> won
['deal_654mno']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    ConfigurationError,
    InvalidPayload,
    InvalidSignature,
    StoreUnavailable,
    WebhookError,
)
from .events import (
    EVENT_TYPES,
    FAMILIES,
    Campaign,
    Client,
    Contact,
    Deal,
    Email,
    Event,
    Resource,
    parse_event,
)
from .inbox import MemoryStore, SQLiteStore, Status, Store, StoredEvent, open_store
from .processor import Processor
from .receiver import SENDER_RETRY_SPAN, Receiver, Reply
from .router import Handler, Router, default_router, on
from .runners import AsyncioRunner, BaseRunner, InlineRunner, Runner, ThreadRunner
from .signature import SIGNATURE_HEADER, Verifier, sign, verify
from .worker import Result, RetryPolicy

if TYPE_CHECKING:
    from .inbox import PostgresStore as PostgresStore
    from .inbox import RedisStore as RedisStore

__version__ = "0.2.0.dev0"


def __getattr__(name: str) -> object:
    # PostgresStore and RedisStore need their extras; import them only when asked for.
    if name in ("PostgresStore", "RedisStore"):
        from . import inbox

        return getattr(inbox, name)
    raise AttributeError(f"module 'iverton_webhooks' has no attribute {name!r}")


__all__ = [
    "EVENT_TYPES",
    "FAMILIES",
    "SENDER_RETRY_SPAN",
    "SIGNATURE_HEADER",
    "AsyncioRunner",
    "BaseRunner",
    "Campaign",
    "Client",
    "ConfigurationError",
    "Contact",
    "Deal",
    "Email",
    "Event",
    "Handler",
    "InlineRunner",
    "InvalidPayload",
    "InvalidSignature",
    "MemoryStore",
    "PostgresStore",
    "Processor",
    "Receiver",
    "RedisStore",
    "Reply",
    "Resource",
    "Result",
    "RetryPolicy",
    "Router",
    "Runner",
    "SQLiteStore",
    "Status",
    "Store",
    "StoreUnavailable",
    "StoredEvent",
    "ThreadRunner",
    "Verifier",
    "WebhookError",
    "default_router",
    "on",
    "open_store",
    "parse_event",
    "sign",
    "verify",
]
