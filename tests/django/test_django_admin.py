"""The admin on the stock site: list, filters (endpoint too), search, read-only detail,
the new statuses, actions, and foreign text shown with its control characters escaped."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from iverton_webhooks import RetryPolicy, Status
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.inbox.base import Verdict
from iverton_webhooks.samples import sample_body
from tests.django.dj_helpers import post
from tests.django.testapp import webhooks as handlers

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "/admin/iverton_webhooks/webhookevent/"


@pytest.fixture
def events(client: Client, settings: object) -> None:
    """One done event, one dead one (its handler broke), one done contact event."""
    settings.IVERTON_WEBHOOKS = {  # type: ignore[attr-defined]
        **settings.IVERTON_WEBHOOKS,  # type: ignore[attr-defined]
        "RETRY": RetryPolicy(max_attempts=1),
    }
    post(client, sample_body("deal.won", id="evt_done"))
    handlers.broken.add("celebrate")
    post(client, sample_body("deal.won", id="evt_dead", data={"id": "deal_dead"}))
    handlers.broken.clear()
    post(client, sample_body("contact.created", id="evt_contact"))
    assert WebhookEvent.objects.get(event_id="evt_dead").status == "dead"


@pytest.fixture
def staff(admin_client: Client) -> Client:
    return admin_client


def select(client: Client, action: str, *event_ids: str) -> str:
    pks = WebhookEvent.objects.filter(event_id__in=event_ids).values_list("pk", flat=True)
    response = client.post(
        CHANGELIST, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.usefixtures("events")
def test_list_filters_and_search(staff: Client) -> None:
    page = staff.get(CHANGELIST).content.decode()
    for text in ("evt_done", "evt_dead", "evt_contact", "deal.won", "Deliveries", "Attempts"):
        assert text in page
    dead = staff.get(CHANGELIST, {"status__exact": "dead"}).content.decode()
    assert "evt_dead" in dead
    assert "evt_done" not in dead
    by_type = staff.get(CHANGELIST, {"type__exact": "contact.created"}).content.decode()
    assert "evt_contact" in by_type
    assert "evt_done" not in by_type
    by_resource = staff.get(CHANGELIST, {"q": "deal_dead"}).content.decode()
    assert "evt_dead" in by_resource
    assert "evt_done" not in by_resource
    assert "evt_contact" in staff.get(CHANGELIST, {"q": "evt_contact"}).content.decode()


@pytest.mark.usefixtures("events")
def test_detail_is_read_only_with_pretty_body_and_outcomes(staff: Client) -> None:
    row = WebhookEvent.objects.get(event_id="evt_dead")
    page = staff.get(f"{CHANGELIST}{row.pk}/change/").content.decode()
    # Indented JSON (HTML-escaped), not the raw compact body.
    assert "&quot;id&quot;: &quot;deal_dead&quot;" in page
    assert "tests.django.testapp.webhooks.celebrate" in page
    assert "RuntimeError: celebrate is broken" in page
    assert 'name="_save"' not in page
    assert staff.get(f"{CHANGELIST}add/").status_code == 403


@pytest.mark.usefixtures("events")
def test_replay_action_runs_the_dead_event_again(staff: Client) -> None:
    page = select(staff, "replay", "evt_dead", "evt_done")
    assert "Replayed 2 of 2 events." in page
    row = WebhookEvent.objects.get(event_id="evt_dead")
    assert (row.status, row.attempts) == ("done", 1)
    assert handlers.calls[-1] == ("celebrate", "evt_dead")


@pytest.mark.usefixtures("events")
def test_mark_resolved_only_touches_resolvable_events(staff: Client) -> None:
    page = select(staff, "mark_resolved", "evt_dead", "evt_done")
    assert "Resolved 1 of 2 events." in page
    assert "Only dead, failed, quarantined and unhandled events can be resolved." in page
    assert WebhookEvent.objects.get(event_id="evt_dead").status == "done"
    assert handlers.calls.count(("celebrate", "evt_dead")) == 1  # resolved, not re-run


@pytest.mark.usefixtures("events")
def test_view_only_staff_see_events_but_cannot_replay(client: Client) -> None:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_webhookevent"))
    client.force_login(user)
    page = client.get(CHANGELIST).content.decode()
    assert "evt_dead" in page
    assert "Replay selected events" not in page


CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
NASTY_ID = "evt_\x1b[2J\r\nFORGED\x07"
NASTY_TYPE = "deal.\x1b]52;c;eA==\x07won"


def unhandled(store: DjangoStore, event_id: str, endpoint: str = "default") -> None:
    store.record(
        event_id, "widget.made", CREATED, sample_body("deal.won", id=event_id), endpoint=endpoint
    )
    claim = store.claim(event_id, 30, endpoint=endpoint)
    assert claim is not None
    store.finish(claim, {}, Verdict(Status.UNHANDLED))


@pytest.fixture
def v2_events() -> DjangoStore:
    """A quarantined event (its body readable now, as after an upgrade), an unhandled
    one, one on another endpoint, and one whose id, type and error hold control
    characters."""
    store = DjangoStore()
    store.record(
        "evt_quarantined",
        "deal.won",
        CREATED,
        sample_body("deal.won", id="evt_quarantined"),
        status=Status.QUARANTINED,
        error="created_at: year 0 is out of range",
    )
    unhandled(store, "evt_unhandled")
    unhandled(store, "evt_billing", endpoint="billing")
    store.record(
        NASTY_ID,
        NASTY_TYPE,
        CREATED,
        b"\x1b[2J not json",
        status=Status.QUARANTINED,
        error="bad\r\nERROR forged line\x1b[31m",
    )
    return store


@pytest.mark.usefixtures("v2_events")
def test_endpoint_column_and_filter(staff: Client) -> None:
    page = staff.get(CHANGELIST).content.decode()
    assert "column-endpoint" in page
    assert "billing" in page
    billing = staff.get(CHANGELIST, {"endpoint__exact": "billing"}).content.decode()
    assert "evt_billing" in billing
    assert "evt_unhandled" not in billing


@pytest.mark.usefixtures("v2_events")
def test_quarantined_shows_its_reason_and_unhandled_is_visible(staff: Client) -> None:
    page = staff.get(CHANGELIST).content.decode()
    assert "quarantined: created_at: year 0 is out of range" in page
    assert "unhandled: no handler for this type" in page
    only = staff.get(CHANGELIST, {"status__exact": "quarantined"}).content.decode()
    assert "evt_quarantined" in only
    assert "evt_unhandled" not in only
    assert "evt_unhandled" in staff.get(CHANGELIST, {"status__exact": "unhandled"}).content.decode()


def test_replay_runs_quarantined_and_unhandled_events_again(
    staff: Client, v2_events: DjangoStore
) -> None:
    page = select(staff, "replay", "evt_quarantined", "evt_unhandled", "evt_billing")
    assert "Replayed 3 of 3 events." in page
    assert v2_events.get("evt_quarantined").status is Status.DONE  # type: ignore[union-attr]
    assert v2_events.get("evt_unhandled").status is Status.DONE  # type: ignore[union-attr]
    assert ("audit", "evt_quarantined") in handlers.calls
    # Another endpoint's event is requeued for that endpoint, not run by this receiver.
    billing = v2_events.get("evt_billing", endpoint="billing")
    assert billing is not None
    assert billing.status is Status.PENDING
    assert ("audit", "evt_billing") not in handlers.calls


def test_resolve_quarantined_and_unhandled(staff: Client, v2_events: DjangoStore) -> None:
    page = select(staff, "mark_resolved", "evt_quarantined", "evt_unhandled")
    assert "Resolved 2 of 2 events." in page
    assert v2_events.stats() == {Status.DONE: 2, Status.QUARANTINED: 1}


@pytest.mark.usefixtures("v2_events")
def test_control_characters_are_shown_escaped(staff: Client) -> None:
    pages = [staff.get(CHANGELIST).content.decode()]
    row = WebhookEvent.objects.get(event_id=NASTY_ID)
    pages.append(staff.get(f"{CHANGELIST}{row.pk}/change/").content.decode())
    for page in pages:
        assert "\x1b" not in page
        assert "\x07" not in page
        assert "evt_\\x1b[2J\\r\\nFORGED\\x07" in page
        assert "deal.\\x1b]52;c;eA==\\x07won" in page
    detail = pages[1]
    assert "bad\\r\\nERROR forged line\\x1b[31m" in detail
    assert "\\x1b[2J not json" in detail  # the quarantined body, as text
