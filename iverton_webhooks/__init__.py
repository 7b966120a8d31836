"""Receive Iverton AI webhooks correctly: verify, record durably, acknowledge, dispatch.

>>> from iverton_webhooks import Event, Router, Receiver, sign
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

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from .hooks import Hook, Hooks, Notice
    from .inbox import (
        MemoryStore,
        PostgresStore,
        RedisStore,
        SQLiteStore,
        Status,
        Store,
        StoredEvent,
        open_store,
    )
    from .processor import Processor
    from .receiver import SENDER_RETRY_SPAN, Receiver, Reply
    from .router import Handler, Router, default_router, on
    from .runners import AsyncioRunner, BaseRunner, InlineRunner, Runner, ThreadRunner
    from .signature import SIGNATURE_HEADER, Verifier, sign, verify
    from .worker import Result, RetryPolicy

__version__ = "0.2.0.dev0"

# Every public name, and the submodule that defines it. The names are imported on first
# use (PEP 562), so ``import iverton_webhooks.testing`` (the pytest plugin, loaded in every
# pytest session of every user) or ``import iverton_webhooks.signature`` does not pay for
# pydantic, the event models, the stores and the runners.
_WHERE = {
    **dict.fromkeys(
        ("ConfigurationError", "InvalidPayload", "InvalidSignature", "StoreUnavailable"),
        "errors",
    ),
    "WebhookError": "errors",
    **dict.fromkeys(
        ("EVENT_TYPES", "FAMILIES", "Campaign", "Client", "Contact", "Deal", "Email"),
        "events",
    ),
    **dict.fromkeys(("Event", "Resource", "parse_event"), "events"),
    # PostgresStore and RedisStore need their extras: importing them stays on demand.
    **dict.fromkeys(
        ("MemoryStore", "PostgresStore", "RedisStore", "SQLiteStore", "Status", "Store"),
        "inbox",
    ),
    **dict.fromkeys(("StoredEvent", "open_store"), "inbox"),
    **dict.fromkeys(("Hook", "Hooks", "Notice"), "hooks"),
    "Processor": "processor",
    **dict.fromkeys(("SENDER_RETRY_SPAN", "Receiver", "Reply"), "receiver"),
    **dict.fromkeys(("Handler", "Router", "default_router", "on"), "router"),
    **dict.fromkeys(
        ("AsyncioRunner", "BaseRunner", "InlineRunner", "Runner", "ThreadRunner"), "runners"
    ),
    **dict.fromkeys(("SIGNATURE_HEADER", "Verifier", "sign", "verify"), "signature"),
    **dict.fromkeys(("Result", "RetryPolicy"), "worker"),
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'iverton_webhooks' has no attribute {name!r}")
    # Not cached in globals(): a test harness that drops modules from sys.modules
    # (pytester restores its snapshot) must not leave us holding stale classes.
    return getattr(import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


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
    "Hook",
    "Hooks",
    "InlineRunner",
    "InvalidPayload",
    "InvalidSignature",
    "MemoryStore",
    "Notice",
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
