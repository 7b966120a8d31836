"""``flask iverton stats`` thresholds: the same flags, messages and exit codes as
``iverton-webhooks stats`` (issue 14, item 3)."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask

from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import Status, Verdict
from iverton_webhooks.samples import sample_body
from tests.flask.flask_helpers import receiver_of

MakeApp = Callable[..., Flask]


def invoke(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["iverton", "stats", *args])
    return result.exit_code, result.output


def test_stats_thresholds_and_exit_codes(make_app: MakeApp) -> None:
    app = make_app()
    receiver = receiver_of(app)
    store = receiver.store
    for event_id in ("evt_fd1", "evt_fd2"):
        body = sample_body("deal.won", id=event_id)
        store.record(
            event_id, "deal.won", parse_envelope(body).created_at, body, endpoint=receiver.endpoint
        )
        claim = store.claim(event_id, 60, endpoint=receiver.endpoint)
        assert claim is not None
        store.finish(claim, {}, Verdict(Status.DEAD, "boom"))

    code, output = invoke(app)
    assert code == 0
    assert output.splitlines()[-1].split() == ["oldest-due", "-"]
    assert invoke(app, "--max-dead", "2") == (0, output + "healthy\n")
    code, output = invoke(app, "--max-dead", "0", "--max-quarantined", "0")
    assert code == 1
    assert output.splitlines()[-1] == "Error: unhealthy: 2 dead (max 0)"
    code, output = invoke(app, "--json", "--max-dead", "1")
    assert code == 1
    assert json.loads(output.splitlines()[0])["problems"] == ["2 dead (max 1)"]
    code, output = invoke(app, "--max-due-age", "-5")
    assert code == 2
    assert output.splitlines()[-1] == "Error: --max-due-age must not be negative, not -5"
