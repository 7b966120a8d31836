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

# The public API, in one table: each name, the section of the API reference that
# documents it, and the module that defines it. ``__all__``, the lazy loader below and
# the generated part of docs/reference.md (``python -m tools.gen_reference``)
# follow from it. Names are imported on first use (PEP 562), so ``import
# iverton_webhooks.testing`` (the pytest plugin, loaded in every pytest session of every
# user) does not pay for pydantic, the event models, the stores and the runners.
PUBLIC: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Receiving", "iverton_webhooks._receiver", ("Receiver", "Reply")),
    (
        "Receiving",
        "iverton_webhooks._signature",
        ("sign", "verify", "Verifier", "SIGNATURE_HEADER"),
    ),
    ("Receiving", "iverton_webhooks._settings", ("Settings", "SENDER_RETRY_SPAN")),
    ("Routing", "iverton_webhooks._router", ("on", "Router", "Handler", "default_router")),
    (
        "Events",
        "iverton_webhooks.events",
        ("Event", "parse_event", "EVENT_TYPES", "FAMILIES", "Resource"),
    ),
    ("Events", "iverton_webhooks.events", ("Contact", "Campaign", "Email", "Deal", "Client")),
    ("Processing", "iverton_webhooks._processor", ("Processor",)),
    ("Processing", "iverton_webhooks._worker", ("Result", "RetryPolicy")),
    (
        "Runners",
        "iverton_webhooks.runners",
        ("Runner", "BaseRunner", "InlineRunner", "ThreadRunner", "AsyncioRunner"),
    ),
    ("Stores", "iverton_webhooks.inbox", ("open_store", "Store", "Status", "StoredEvent")),
    # PostgresStore and RedisStore need their extras: importing them stays on demand.
    (
        "Stores",
        "iverton_webhooks.inbox",
        ("MemoryStore", "SQLiteStore", "PostgresStore", "RedisStore"),
    ),
    ("Monitoring", "iverton_webhooks.hooks", ("Hooks", "Hook", "Notice")),
    ("Monitoring", "iverton_webhooks._health", ("Health", "Thresholds")),
    (
        "Monitoring",
        "iverton_webhooks._answers",
        ("AnswerLog", "StoreAnswerLog", "LocalAnswerLog"),
    ),
    (
        "Errors",
        "iverton_webhooks._errors",
        (
            "WebhookError",
            "ConfigurationError",
            "InvalidSignature",
            "InvalidPayload",
            "StoreUnavailable",
        ),
    ),
)

_MODULE_OF = {name: module for _, module, names in PUBLIC for name in names}

__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:
    # The same names for type checkers and editors (the redundant alias marks a
    # re-export); tests/test_public_api.py fails when this and PUBLIC disagree.
    from ._answers import AnswerLog as AnswerLog
    from ._answers import LocalAnswerLog as LocalAnswerLog
    from ._answers import StoreAnswerLog as StoreAnswerLog
    from ._errors import ConfigurationError as ConfigurationError
    from ._errors import InvalidPayload as InvalidPayload
    from ._errors import InvalidSignature as InvalidSignature
    from ._errors import StoreUnavailable as StoreUnavailable
    from ._errors import WebhookError as WebhookError
    from ._health import Health as Health
    from ._health import Thresholds as Thresholds
    from ._processor import Processor as Processor
    from ._receiver import Receiver as Receiver
    from ._receiver import Reply as Reply
    from ._router import Handler as Handler
    from ._router import Router as Router
    from ._router import default_router as default_router
    from ._router import on as on
    from ._settings import SENDER_RETRY_SPAN as SENDER_RETRY_SPAN
    from ._settings import Settings as Settings
    from ._signature import SIGNATURE_HEADER as SIGNATURE_HEADER
    from ._signature import Verifier as Verifier
    from ._signature import sign as sign
    from ._signature import verify as verify
    from ._worker import Result as Result
    from ._worker import RetryPolicy as RetryPolicy
    from .events import EVENT_TYPES as EVENT_TYPES
    from .events import FAMILIES as FAMILIES
    from .events import Campaign as Campaign
    from .events import Client as Client
    from .events import Contact as Contact
    from .events import Deal as Deal
    from .events import Email as Email
    from .events import Event as Event
    from .events import Resource as Resource
    from .events import parse_event as parse_event
    from .hooks import Hook as Hook
    from .hooks import Hooks as Hooks
    from .hooks import Notice as Notice
    from .inbox import MemoryStore as MemoryStore
    from .inbox import PostgresStore as PostgresStore
    from .inbox import RedisStore as RedisStore
    from .inbox import SQLiteStore as SQLiteStore
    from .inbox import Status as Status
    from .inbox import Store as Store
    from .inbox import StoredEvent as StoredEvent
    from .inbox import open_store as open_store
    from .runners import AsyncioRunner as AsyncioRunner
    from .runners import BaseRunner as BaseRunner
    from .runners import InlineRunner as InlineRunner
    from .runners import Runner as Runner
    from .runners import ThreadRunner as ThreadRunner

__version__ = "0.2.0.dev0"


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'iverton_webhooks' has no attribute {name!r}")
    # Not cached in globals(): a test harness that drops modules from sys.modules
    # (pytester restores its snapshot) must not leave us holding stale classes.
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
