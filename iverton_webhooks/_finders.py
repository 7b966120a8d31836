"""Finding the receivers of an app: what ``iverton-webhooks ... --app MODULE[:NAME]`` runs.

The core knows `Receiver` and `Processor`; each adapter registers a finder
for its own objects when it is imported (a Flask app, a Starlette app, a Django
project...), so this module imports no web framework. A finder takes any object and
returns the receivers and processors it holds, or ``None`` when the object is not one
of its kind; every finder that knows an object adds what it finds.

>>> from iverton_webhooks import Receiver
>>> receiver = Receiver(secret="whsec_doc_0123456789", store="memory://", runner="inline")
>>> processors_of(receiver) == [receiver.processor]
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType

from ._processor import Processor
from ._receiver import Receiver

__all__ = ["LOOKED_FOR", "Finder", "processors_of", "register_finder"]

Finder = Callable[[object], Iterable[Receiver | Processor] | None]

_finders: list[Finder] = []
#: What the core and the adapters' finders recognise, for the message when none finds
#: anything (every adapter's, whether or not the app imported it).
LOOKED_FOR = (
    "a Receiver or a Processor",
    "a Flask app with IvertonWebhooks or webhooks_blueprint (or its create_app() factory)",
    "a Starlette or FastAPI app with IvertonWebhookMiddleware, webhook_route or IvertonWebhook",
    "a Django settings module (INSTALLED_APPS with 'iverton_webhooks.contrib.django') or "
    "the project's WSGI/ASGI application",
)


def register_finder(finder: Finder) -> None:
    """Add ``finder`` (once); an adapter calls it when it is imported."""
    if finder not in _finders:
        _finders.append(finder)


def processors_of(target: object) -> list[Processor]:
    """The processors of every receiver ``target`` holds: a receiver, a processor, an
    object an adapter's finder recognises, or a module holding any of these (its own
    attributes first; a module-level finder, such as an app factory's, only if none)."""
    found: dict[int, Processor] = {}
    for item in receivers_of(target):
        processor = item.processor if isinstance(item, Receiver) else item
        found.setdefault(id(processor), processor)
    return list(found.values())


def receivers_of(target: object) -> list[Receiver | Processor]:
    """The receivers (or bare processors) ``target`` holds, found as `processors_of`
    finds them, in the order found (the same one may come more than once)."""
    if isinstance(target, (Receiver, Processor)):
        return [target]
    if isinstance(target, ModuleType):
        inside = [
            item
            for value in vars(target).values()
            if not isinstance(value, ModuleType)
            for item in receivers_of(value)
        ]
        if inside:
            return inside
        if hasattr(target, "INSTALLED_APPS"):
            # A Django settings module imports no Django, so nothing has registered the
            # finder that knows it: its adapter does when imported.
            importlib.import_module("iverton_webhooks.contrib.django.project")
    # Every finder that knows the object adds what it finds (a FastAPI app is a
    # Starlette app too: the middleware and the dependency are found by different ones).
    found: list[Receiver | Processor] = []
    for finder in list(_finders):
        held = finder(target)
        if held is not None:
            found.extend(item for value in held for item in receivers_of(value))
    return found
