"""The admin on the stock site: list, filters, search, read-only detail, actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from iverton_webhooks import RetryPolicy
from iverton_webhooks.contrib.django.models import WebhookEvent
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
def test_mark_resolved_only_touches_failed_and_dead_events(staff: Client) -> None:
    page = select(staff, "mark_resolved", "evt_dead", "evt_done")
    assert "Resolved 1 of 2 events." in page
    assert "Only failed and dead events can be resolved." in page
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
