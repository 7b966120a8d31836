"""The admin in a real browser (Debian's chromium, driven by Playwright): log in, open the
event list, filter dead events, replay one, see it done."""

from __future__ import annotations

import os
from typing import Any

import pytest

from iverton_webhooks import RetryPolicy
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.samples import sample_body
from tests.django.dj_helpers import post
from tests.django.testapp import webhooks as handlers

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"


def test_replay_a_dead_event_from_the_admin(
    live_server: Any, admin_user: Any, client: Any, settings: Any
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("IVERTON_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "RETRY": RetryPolicy(max_attempts=1)}
    handlers.broken.add("celebrate")
    post(client, sample_body("deal.won", id="evt_browser_dead"))
    post(client, sample_body("contact.created", id="evt_browser_ok"))
    handlers.broken.clear()
    assert WebhookEvent.objects.get(event_id="evt_browser_dead").status == "dead"

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{live_server.url}/admin/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "password")
            page.click("input[type=submit]")
            page.click("text=Webhook events")
            expect(page.locator("#result_list tbody tr")).to_have_count(2)

            page.click("#changelist-filter >> text=dead")
            page.wait_for_url("**status__exact=dead**")
            rows = page.locator("#result_list tbody tr")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("evt_browser_dead")

            rows.first.locator("input.action-select").check()
            page.select_option("select[name=action]", "replay")
            page.click("button[name=index]")
            expect(page.locator(".messagelist")).to_contain_text("Replayed 1 of 1 events.")

            page.click("#changelist-filter >> text=done")
            page.wait_for_url("**status__exact=done**")
            expect(page.locator("#result_list")).to_contain_text("evt_browser_dead")
        finally:
            browser.close()
    assert WebhookEvent.objects.get(event_id="evt_browser_dead").status == "done"
    assert handlers.calls[-1] == ("celebrate", "evt_browser_dead")
