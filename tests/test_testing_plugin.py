from __future__ import annotations

from iverton_webhooks import Event, Receiver, Router, Status
from iverton_webhooks.testing import deliver, signed_delivery


def test_fixtures_give_an_inline_receiver_over_a_fresh_router(
    iverton_receiver: Receiver, iverton_router: Router, iverton_secret: str
) -> None:
    seen: list[str] = []

    @iverton_router.on("contact.created")
    def handler(event: Event) -> None:
        seen.append(event.id)

    delivery = signed_delivery("contact.created", iverton_secret, id="evt_plugin")
    reply = iverton_receiver.receive("POST", delivery.body, delivery.headers)
    assert reply.status == 200
    assert seen == ["evt_plugin"]
    assert iverton_receiver.store.get("evt_plugin").status is Status.DONE  # type: ignore[union-attr]


def test_a_delivery_signed_with_another_secret_is_refused(iverton_receiver: Receiver) -> None:
    delivery = signed_delivery("deal.won", "whsec_someone_else")
    assert iverton_receiver.receive("POST", delivery.body, delivery.headers).status == 401
    # Signed but not an event: kept aside (quarantined), never refused.
    reply = iverton_receiver.receive("POST", b"{}", deliver(b"{}").headers)
    assert (reply.status, reply.body) == (200, b'{"status":"quarantined"}')
