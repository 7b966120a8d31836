"""FastAPI: a dependency giving your own path operation a verified, recorded, deduplicated
event, and an ``APIRouter`` factory.

Your own path operation::

    webhook = IvertonWebhook(receiver)
    router = APIRouter(route_class=WebhookRoute)  # refusals answered byte for byte

    @router.post("/webhooks/iverton", **webhook.route_options(include_in_schema=True))
    async def iverton(delivery: Annotated[Delivery, Depends(webhook)]) -> Response:
        if delivery.is_new:
            audit.info("event %s arrived", delivery.event_id)
        return delivery.response()

    app = FastAPI(lifespan=receiver_lifespan(receiver))
    app.include_router(router)

Or all of it at once: ``app.include_router(webhook_router(receiver))``.

With the receiver's endpoint registry on, a path parameter ``endpoint`` names the
registered endpoint a request is for (``"/webhooks/iverton/{endpoint}"``).

The path operation runs only for a recorded event and decides what the 2xx says; a refusal
(401, 405, 413, 503) raises `WebhookRefused` instead. Declare no body parameter: the
signature is over the raw bytes, which the dependency reads itself.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from .._errors import InvalidPayload
from .._finders import register_finder
from .._receiver import ANSWER_OF, Receiver, Reply
from .._signature import SIGNATURE_HEADER
from ..adapter import named_endpoint, normalise_path
from ..events import Event, parse_event
from .starlette import DEFAULT_PATH, WebhookEndpoint, reply_response

__all__ = [
    "Delivery",
    "IvertonWebhook",
    "WebhookRefused",
    "WebhookRoute",
    "answer_refused",
    "webhook_router",
]


class WebhookRefused(HTTPException):
    """The core refused the request (401, 405, 413, 503): ``reply`` is its answer."""

    def __init__(self, reply: Reply) -> None:
        try:
            detail: Any = json.loads(reply.body)
        except ValueError:
            detail = reply.body.decode("utf-8", "replace")
        headers = {k: v for k, v in reply.headers if k.lower() != "content-type"}
        super().__init__(reply.status, detail=detail, headers=headers or None)
        self.reply = reply


async def answer_refused(request: Request, exc: Exception) -> Response:
    """Exception handler: ``app.add_exception_handler(WebhookRefused, answer_refused)``
    answers a refusal with the core's exact reply on every route."""
    assert isinstance(exc, WebhookRefused)
    return reply_response(exc.reply)


class WebhookRoute(APIRoute):
    """``APIRouter(route_class=WebhookRoute)``: its routes answer `WebhookRefused`
    with the core's exact reply (status, body and headers), with no app-wide handler.

    A route of this class that depends on `IvertonWebhook` answers as the
    middleware does: its path with or without a trailing ``/`` (no 307 to the other
    form: the sender does not follow redirects), and every method, the wrong ones with
    the core's 405 (not FastAPI's). It owns its path, as the middleware does.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.answers_webhooks = bool(_webhooks_of(self.dependant))

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if not self.answers_webhooks or scope["type"] != "http" or match is Match.FULL:
            return match, child
        if match is Match.NONE:
            path: str = scope["path"]
            other = path[:-1] if path.endswith("/") and path != "/" else path + "/"
            match, child = super().matches({**scope, "path": other})
        # A method the route does not list still reaches the dependency, for the 405.
        return (Match.FULL if match is Match.PARTIAL else match), child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.answers_webhooks:
            await self.app(scope, receive, send)  # every method: the core answers
        else:
            await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except WebhookRefused as refused:
                return reply_response(refused.reply)

        return answer


@dataclass(frozen=True)
class Delivery:
    """What the dependency hands your path operation: one accepted delivery.

    ``answer``: ``"accepted"`` (new, recorded, handed off), ``"duplicate"`` (recorded
    before: not processed again), ``"quarantined"`` (signed but unreadable: recorded
    aside, not processed) or ``"expired"`` (older than ``max_age``: not recorded).
    ``event`` is the typed event (None when quarantined). ``reply`` is the core's 2xx.
    """

    answer: str
    event: Event[Any] | None
    reply: Reply
    body: bytes

    @property
    def is_new(self) -> bool:
        """Recorded by this request (the first delivery of this event)."""
        return self.answer == "accepted"

    @property
    def duplicate(self) -> bool:
        return self.answer == "duplicate"

    @property
    def quarantined(self) -> bool:
        return self.answer == "quarantined"

    @property
    def event_id(self) -> str | None:
        return None if self.event is None else self.event.id

    def response(self) -> Response:
        """The core's reply, as the middleware would have answered."""
        return reply_response(self.reply)


#: The envelope the sender posts, for the OpenAPI request body.
_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "created_at", "data"],
    "properties": {
        "id": {"type": "string", "description": "The event id (the deduplication key)."},
        "type": {"type": "string", "examples": ["deal.won"]},
        "created_at": {"type": "string", "format": "date-time"},
        "data": {"type": "object", "description": "The resource, typed by the event family."},
    },
}


class IvertonWebhook:
    """A FastAPI dependency: ``Depends(IvertonWebhook(receiver))`` gives a `Delivery`.

    It reads the raw body under the receiver's cap, lets the receiver verify, record and
    hand off, and raises `WebhookRefused` for every non-2xx answer. The first request on
    a loop starts the receiver's runner there, unless `receiver_lifespan` already did.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._endpoint = WebhookEndpoint(receiver)

    async def __call__(self, request: Request) -> Delivery:
        chunks = request.stream().__aiter__()
        body = bytearray()

        async def next_chunk() -> tuple[bytes, bool]:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return b"", False
            body.extend(chunk)
            return chunk, True

        endpoint = named_endpoint(self.receiver, request.path_params.get("endpoint"))
        reply = await self._endpoint.reply(request.method, request.headers, next_chunk, endpoint)
        if not 200 <= reply.status < 300:
            raise WebhookRefused(reply)
        answer = ANSWER_OF.get(reply, "accepted")
        event: Event[Any] | None = None
        if answer != "quarantined":
            # The envelope passed the receiver; only this type's data model may refuse it
            # (the processor reports that), and then there is nothing typed to give.
            with suppress(InvalidPayload):
                event = parse_event(bytes(body), endpoint=endpoint or self.receiver.endpoint)
        return Delivery(answer, event, reply, bytes(body))

    def route_options(self, *, include_in_schema: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``@router.post(path, **options)``: whether the route is
        in the OpenAPI schema, and if so its documented body, header and answers."""
        if not include_in_schema:
            return {"include_in_schema": False}
        return {
            "include_in_schema": True,
            "summary": "Iverton webhook",
            "description": (
                "Receives a signed Iverton event. Answers 2xx once the event is recorded; "
                "processing happens after the reply."
            ),
            "response_class": Response,
            "openapi_extra": {
                "parameters": [
                    {
                        "name": SIGNATURE_HEADER,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
                        "description": "HMAC-SHA256 of the raw body with the endpoint's secret.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _BODY_SCHEMA}},
                },
                "responses": {
                    "200": {
                        "description": "accepted, duplicate, quarantined or expired",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "401": {"description": "invalid signature"},
                    "413": {"description": "body too large"},
                    "503": {"description": "could not record the event; retry later"},
                },
            },
        }


def webhook_router(
    receiver: Receiver,
    path: str = DEFAULT_PATH,
    *,
    include_in_schema: bool = False,
    on_delivery: Callable[[Delivery], Awaitable[None] | None] | None = None,
    **router_options: Any,
) -> APIRouter:
    """An ``APIRouter`` answering webhooks at ``path`` (with or without a trailing ``/``),
    and with the receiver's endpoint registry on, at ``path + "/<name>"``.

    ``include_in_schema``: show the POST in OpenAPI, with its body and header documented.
    ``on_delivery``: called (sync or async) with each `Delivery` before the 2xx.
    Other methods get the core's 405. Give the app ``lifespan=receiver_lifespan(receiver)``.
    """
    webhook = IvertonWebhook(receiver)
    # A WebhookRoute also answers its path's other form and every method (the core's 405).
    router = APIRouter(route_class=WebhookRoute, **router_options)
    bare = normalise_path(path)

    async def receive(delivery: Delivery = Depends(webhook)) -> Response:  # noqa: B008
        if on_delivery is not None:
            outcome = on_delivery(delivery)
            if isinstance(outcome, Awaitable):
                await outcome
        return delivery.response()

    router.add_api_route(
        bare,
        receive,
        methods=["POST"],
        name="iverton_webhooks",
        **webhook.route_options(include_in_schema=include_in_schema),
    )
    if receiver.directory is not None:
        # A path parameter, so everything below the path reaches the core.
        router.add_api_route(
            bare.rstrip("/") + "/{endpoint:path}",
            receive,
            methods=["POST"],
            name="iverton_webhooks_endpoint",
            include_in_schema=False,
        )
    return router


def _find(target: object) -> list[Receiver] | None:
    """The receivers of `IvertonWebhook` dependencies, alone or in a FastAPI
    app's routes, for ``iverton-webhooks ... --app``; ``None`` for other objects."""
    if isinstance(target, IvertonWebhook):
        return [target.receiver]
    if not isinstance(target, FastAPI):
        return None
    found: list[Receiver] = []
    for route in target.routes:
        if isinstance(route, APIRoute):
            found.extend(webhook.receiver for webhook in _webhooks_of(route.dependant))
    return found


def _webhooks_of(root: Dependant) -> list[IvertonWebhook]:
    """The `IvertonWebhook` dependencies in a route's dependency tree."""
    found: list[IvertonWebhook] = []
    waiting, seen = [root], 0
    while waiting and seen < 1000:
        dependant = waiting.pop()
        seen += 1
        if isinstance(dependant.call, IvertonWebhook):
            found.append(dependant.call)
        waiting.extend(dependant.dependencies)
    return found


register_finder(_find)
