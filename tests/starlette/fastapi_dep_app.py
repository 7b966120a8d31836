"""The app test_fastapi_dependency.py runs under a real uvicorn: a path operation of its
own that takes a verified, recorded ``Delivery``; events go to a SQLite inbox file."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response

from iverton_webhooks import Event, Receiver, Router
from iverton_webhooks.contrib.fastapi import Delivery, IvertonWebhook, WebhookRoute
from iverton_webhooks.contrib.starlette import receiver_lifespan

router = Router()
handled: list[str] = []


@router.on("*")
def remember(event: Event) -> None:
    handled.append(event.id)


# Defaults only so that the test session's doctest collection can import this module.
receiver = Receiver(
    os.environ.get("E2E_SECRET", "whsec_collected_not_served_0123"),
    store=os.environ.get("E2E_STORE", "memory://"),
    router=router,
    runner="asyncio",
)
webhook = IvertonWebhook(receiver)
api = APIRouter(route_class=WebhookRoute)


@api.post("/hooks", **webhook.route_options(include_in_schema=True))
async def hooks(delivery: Annotated[Delivery, Depends(webhook)]) -> Response:
    headers = {
        "X-Answer": delivery.answer,
        "X-Event-Type": delivery.event.type if delivery.event else "-",
    }
    response = delivery.response()
    response.headers.update(headers)
    return response


app = FastAPI(lifespan=receiver_lifespan(receiver))
app.include_router(api)
