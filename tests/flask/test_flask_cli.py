"""The ``flask iverton`` commands, through Flask's CLI runner (and one real HTTP server)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from iverton_webhooks import Event, Router, Status
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET
from tests.flask.flask_helpers import Seen, receiver_of

MakeApp = Callable[..., Flask]


def seed(app: Flask, *ids: str, name: str | None = None) -> None:
    """Record events without processing them, as if the app died after the ack."""
    store = receiver_of(app, name).store
    for event_id in ids:
        body = sample_body("deal.won", id=event_id)
        envelope = parse_envelope(body)
        store.record(envelope.id, envelope.type, envelope.created_at, body)


def invoke(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["iverton", *args])
    return result.exit_code, result.output


def test_group_is_registered_with_every_command(make_app: MakeApp) -> None:
    code, output = invoke(make_app(), "--help")
    assert code == 0
    for command in ("events", "replay", "worker", "prune", "send-test"):
        assert command in output


def test_events_lists_text_and_json_with_filters(make_app: MakeApp) -> None:
    app = make_app()
    seed(app, "evt_l1", "evt_l2")
    code, output = invoke(app, "events")
    assert code == 0
    lines = output.splitlines()
    assert [line.split()[0] for line in lines] == ["evt_l2", "evt_l1"]
    assert "pending" in lines[0]
    assert "deliveries=1" in lines[0]
    code, output = invoke(app, "events", "--json", "--limit", "1")
    assert code == 0
    (only,) = [json.loads(line) for line in output.splitlines()]
    assert (only["id"], only["status"], only["type"]) == ("evt_l2", "pending", "deal.won")
    assert json.loads(only["body"])["id"] == "evt_l2"
    assert invoke(app, "events", "--status", "done")[1] == ""
    assert invoke(app, "events", "--type", "contact.created")[1] == ""
    assert invoke(app, "events", "--status", "bogus")[0] == 2


def test_worker_once_processes_due_events_inside_an_app_context(
    make_app: MakeApp, seen: Seen
) -> None:
    app = make_app("cliapp", runner="thread")
    seed(app, "evt_w1", "evt_w2")
    code, output = invoke(app, "worker", "--once")
    assert code == 0, output
    assert "done=2" in output
    assert sorted(seen.runs) == [("evt_w1", "cliapp"), ("evt_w2", "cliapp")]
    assert {e.status for e in receiver_of(app).store.list()} == {Status.DONE}
    assert invoke(app, "worker", "--once") == (0, "")  # nothing left to do


def test_replay_ids_dead_and_all_handlers(make_app: MakeApp, seen: Seen) -> None:
    app = make_app()
    seed(app, "evt_r1", "evt_r2")
    assert invoke(app, "worker", "--once")[0] == 0
    code, output = invoke(app, "replay", "evt_r1", "--all-handlers")
    assert (code, output.strip()) == (
        0,
        "replayed 1 of 1 event(s); the worker will process them",
    )
    assert receiver_of(app).store.get("evt_r1").status is Status.PENDING  # type: ignore[union-attr]
    invoke(app, "worker", "--once")
    assert sorted(seen.ids) == ["evt_r1", "evt_r1", "evt_r2"]
    code, output = invoke(app, "replay", "evt_r2", "evt_missing")
    assert code == 1
    assert "replayed 1 of 2" in output
    code, output = invoke(app, "replay")
    assert code == 2
    assert "name event ids or pass --dead" in output


def test_replay_dead_requeues_every_dead_event(tmp_path: Path, make_app: MakeApp) -> None:
    from iverton_webhooks import RetryPolicy

    router = Router()
    calls: list[str] = []

    @router.on("deal.won")
    def flaky(event: Event) -> None:
        calls.append(event.id)
        if len(calls) <= 2:
            raise RuntimeError("down")

    app = make_app(router=router, retry=RetryPolicy(max_attempts=1))
    seed(app, "evt_d1", "evt_d2")
    invoke(app, "worker", "--once")
    assert {e.status for e in receiver_of(app).store.list()} == {Status.DEAD}
    code, output = invoke(app, "replay", "--dead")
    assert code == 0
    assert "replayed 2 of 2" in output
    assert "done=2" in invoke(app, "worker", "--once")[1]


def test_prune_keeps_recent_events_and_refuses_a_short_retention(make_app: MakeApp) -> None:
    app = make_app()
    seed(app, "evt_p1")
    invoke(app, "worker", "--once")
    assert invoke(app, "prune") == (0, "deleted 0 event(s)\n")
    code, output = invoke(app, "prune", "--older-than-hours", "1")
    assert code == 1
    assert "retention" in output
    assert receiver_of(app).store.count() == 1


@pytest.fixture
def served(make_app: MakeApp) -> Iterator[tuple[Flask, str]]:
    """The app behind a real HTTP server on 127.0.0.1 (a free port), in a thread."""
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def test_send_test_posts_a_signed_sample_with_the_endpoints_secret(
    served: tuple[Flask, str], seen: Seen
) -> None:
    app, base = served
    code, output = invoke(app, "send-test", "deal.won", "--url", base + "/webhooks/iverton")
    assert code == 0, output
    assert output.startswith('200 {"status":"accepted"}')
    (event,) = receiver_of(app).store.list()
    assert event.type == "deal.won"
    assert seen.ids == [event.id]
    code, output = invoke(
        app, "send-test", "deal.won", "--url", base + "/webhooks/iverton", "--secret", "whsec_x"
    )
    assert code == 1
    assert output.startswith("401")


def test_send_test_default_url_is_the_endpoints_path_on_the_dev_server(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str, str]] = []

    def fake_send(url: str, event_type: str, secret: str) -> tuple[int, bytes]:
        sent.append((url, event_type, secret))
        return 200, b"{}"

    monkeypatch.setattr("iverton_webhooks.samples.send_sample", fake_send)
    app = make_app()
    assert invoke(app, "send-test", "contact.created")[0] == 0
    assert sent == [("http://127.0.0.1:5000/webhooks/iverton", "contact.created", SECRET)]


def test_endpoint_option_picks_one_of_several(tmp_path: Path, router: Router) -> None:
    from iverton_webhooks.contrib.flask import webhooks_blueprint

    app = Flask("two", instance_path=str(tmp_path / "instance"))
    for name in ("eu", "us"):
        app.register_blueprint(
            webhooks_blueprint(secret=SECRET, name=name, router=router, runner="inline"),
            url_prefix=f"/hooks/{name}",
        )
    seed(app, "evt_eu", name="eu")
    code, output = invoke(app, "events")
    assert code == 1
    assert "2 webhook endpoints" in output
    assert "eu, us" in output
    assert invoke(app, "events", "--endpoint", "eu")[1].startswith("evt_eu")
    assert invoke(app, "events", "--endpoint", "us") == (0, "")
    code, output = invoke(app, "events", "--endpoint", "asia")
    assert code == 1
    assert "no webhook endpoint 'asia'" in output


def test_send_test_explains_a_bad_type_or_an_unreachable_url(make_app: MakeApp) -> None:
    app = make_app()
    code, output = invoke(app, "send-test", "deal.wonn", "--url", "http://127.0.0.1:9/x")
    assert code == 2
    assert "no sample for 'deal.wonn'" in output
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, output = invoke(app, "send-test", "deal.won", "--url", f"http://127.0.0.1:{port}/")
    assert code == 1
    assert f"could not reach http://127.0.0.1:{port}/" in output
