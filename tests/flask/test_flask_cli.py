"""The ``flask iverton`` commands, through Flask's CLI runner (and one real HTTP server)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
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


def seed(
    app: Flask,
    *ids: str,
    name: str | None = None,
    status: Status = Status.PENDING,
    received_hours_ago: float = 0,
) -> None:
    """Record events without processing them, as if the app died after the ack."""
    receiver = receiver_of(app, name)
    store = receiver.store
    if received_hours_ago:
        store.clock = lambda: time.time() - received_hours_ago * 3600
    try:
        for event_id in ids:
            body = sample_body("deal.won", id=event_id)
            created_at = parse_envelope(sample_body("deal.won")).created_at
            store.record(
                event_id, "deal.won", created_at, body, endpoint=receiver.endpoint, status=status
            )
    finally:
        store.clock = time.time


def invoke(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["iverton", *args])
    return result.exit_code, result.output


def test_group_is_registered_with_every_command(make_app: MakeApp) -> None:
    code, output = invoke(make_app(), "--help")
    assert code == 0
    for command in ("events", "stats", "replay", "worker", "prune", "send-test"):
        assert command in output


def test_events_lists_text_and_json_with_filters(make_app: MakeApp) -> None:
    app = make_app()
    seed(app, "evt_l1", "evt_l2")
    code, output = invoke(app, "events")
    assert code == 0
    header, *lines = output.splitlines()
    assert "RECEIVED (UTC)" in header
    assert [line.split()[0] for line in lines] == ["evt_l2", "evt_l1"]
    assert "pending" in lines[0]
    assert lines[0].split()[-2:] == ["0", "1"]  # attempts, deliveries
    code, output = invoke(app, "events", "--json", "--limit", "1")
    assert code == 0
    (only,) = [json.loads(line) for line in output.splitlines()]
    assert (only["id"], only["status"], only["type"]) == ("evt_l2", "pending", "deal.won")
    assert json.loads(only["body"])["id"] == "evt_l2"
    assert invoke(app, "events", "--status", "done") == (0, "no events\n")
    assert invoke(app, "events", "--type", "contact.created") == (0, "no events\n")
    assert invoke(app, "events", "--status", "done", "--json") == (0, "")
    assert invoke(app, "events", "--status", "bogus")[0] == 2


def test_quarantined_events_are_listed_and_counted(make_app: MakeApp) -> None:
    app = make_app()
    seed(app, "evt_s1")
    seed(app, "sha256:bad", status=Status.QUARANTINED)
    code, output = invoke(app, "events", "--status", "quarantined")
    row = output.splitlines()[1]
    assert (code, row.split()[:3]) == (0, ["sha256:bad", "deal.won", "quarantined"])
    code, output = invoke(app, "stats")
    assert code == 0
    lines = output.splitlines()
    assert lines[0] == f"endpoint {receiver_of(app).endpoint}: 2 event(s)"
    assert dict(line.split() for line in lines[1:])["quarantined"] == "1"
    code, output = invoke(app, "stats", "--json")
    counts = json.loads(output)
    assert (counts["pending"], counts["quarantined"], counts["unhandled"]) == (1, 1, 0)


def test_hostile_ids_are_escaped_in_text_and_exact_in_json(make_app: MakeApp) -> None:
    app = make_app()
    hostile = [
        "evt_cls\x1b[2J",
        "evt_clip\x1b]52;c;cm0gLXJmIH4=\x07",
        "evt_link\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
        "evt_crlf\r\nFAKE line",
    ]
    seed(app, *hostile, status=Status.QUARANTINED)
    code, output = invoke(app, "events")
    assert code == 0
    for control in ("\x1b", "\x07", "\r"):
        assert control not in output
    assert len(output.splitlines()) == 1 + len(hostile)  # the header; no forged line
    assert "evt_cls\\x1b[2J" in output
    code, output = invoke(app, "events", "--json")
    assert sorted(json.loads(line)["id"] for line in output.splitlines()) == sorted(hostile)
    code, output = invoke(app, "replay", "evt_\x1b]52;c;eA==\x07")
    assert code == 1
    assert "\x1b" not in output
    assert "evt_\\x1b]52;c;eA==\\x07 (no such event)" in output


def test_worker_once_processes_due_events_inside_an_app_context(
    make_app: MakeApp, seen: Seen
) -> None:
    app = make_app("cliapp")
    seed(app, "evt_w1", "evt_w2")
    code, output = invoke(app, "worker", "--once")
    assert (code, output) == (0, "processed 2 event(s) (done=2)\n")
    assert sorted(seen.runs) == [("evt_w1", "cliapp"), ("evt_w2", "cliapp")]
    assert {e.status for e in receiver_of(app).processor.list()} == {Status.DONE}
    assert invoke(app, "worker", "--once") == (0, "processed 0 event(s)\n")


def test_worker_once_drains_more_than_one_batch(make_app: MakeApp, seen: Seen) -> None:
    app = make_app()
    seed(app, *(f"evt_b{n}" for n in range(25)))
    code, output = invoke(app, "worker", "--once", "--batch", "10")
    assert (code, output) == (0, "processed 25 event(s) (done=25)\n")


def test_worker_refuses_to_run_without_handlers(make_app: MakeApp) -> None:
    app = make_app(router=Router())
    seed(app, "evt_n1")
    code, output = invoke(app, "worker", "--once")
    assert code == 2
    assert "no handlers: register them with @on(...)" in output
    assert receiver_of(app).processor.get("evt_n1").status is Status.PENDING  # type: ignore[union-attr]


def test_replay_ids_dead_and_rerun_all(make_app: MakeApp, seen: Seen) -> None:
    app = make_app()
    seed(app, "evt_r1", "evt_r2")
    assert invoke(app, "worker", "--once")[0] == 0
    code, output = invoke(app, "replay", "evt_r1", "--rerun-all")
    assert (code, output) == (
        0,
        "evt_r1: replayed\nreplayed 1 of 1 event(s); the worker will process them\n",
    )
    # Only requeued: the app's runner or the worker processes it, not the command.
    assert receiver_of(app).processor.get("evt_r1").status is Status.PENDING  # type: ignore[union-attr]
    assert sorted(seen.ids) == ["evt_r1", "evt_r2"]
    invoke(app, "worker", "--once")
    assert sorted(seen.ids) == ["evt_r1", "evt_r1", "evt_r2"]
    code, output = invoke(app, "replay", "evt_r2", "evt_missing")
    assert code == 1
    assert "replayed 1 of 2 event(s); not replayed: evt_missing (no such event)" in output
    code, output = invoke(app, "replay")
    assert code == 2
    assert "name event ids, or pass --dead or --unhandled" in output
    code, output = invoke(app, "replay", "--dead")
    assert code == 0  # nothing to do is not a failure
    assert "no dead events: nothing to replay" in output


def test_replay_dead_requeues_every_dead_event(make_app: MakeApp) -> None:
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
    assert receiver_of(app).processor.stats() == {Status.DEAD: 2}
    code, output = invoke(app, "replay", "--dead")
    assert (code, output) == (0, "replayed 2 dead event(s); the worker will process them\n")
    assert receiver_of(app).processor.stats() == {Status.PENDING: 2}
    assert "done=2" in invoke(app, "worker", "--once")[1]


def test_prune_keeps_recent_events_and_enforces_retention_and_max_age(
    make_app: MakeApp,
) -> None:
    app = make_app(max_age=timedelta(days=3))
    seed(app, "evt_p1", received_hours_ago=50)
    invoke(app, "worker", "--once")
    assert invoke(app, "prune") == (0, "deleted 0 event(s)\n")
    code, output = invoke(app, "prune", "--older-than-hours", "1")
    assert code == 2
    assert "prune refused: retention 1:00:00 is shorter" in output
    # Past the sender's retry span, but inside max_age: a captured request could replay.
    code, output = invoke(app, "prune", "--older-than-hours", "49")
    assert code == 2
    assert "max_age" in output
    assert receiver_of(app).store.count() == 1
    assert invoke(app, "prune", "--older-than-hours", "96") == (0, "deleted 0 event(s)\n")


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
    (event,) = receiver_of(app).processor.list()
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

    def fake_send(
        out: Callable[[str], None], url: str, event_type: str, secret: str, timeout: float
    ) -> int:
        sent.append((url, event_type, secret))
        out("200 {}")
        return 0

    monkeypatch.setattr("iverton_webhooks._operations.send_test", fake_send)
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
    assert code == 2
    assert "2 webhook endpoints" in output
    assert "eu, us" in output
    assert invoke(app, "events", "--endpoint", "eu")[1].splitlines()[1].startswith("evt_eu")
    assert invoke(app, "events", "--endpoint", "us") == (0, "no events\n")
    code, output = invoke(app, "events", "--endpoint", "asia")
    assert code == 2
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
    assert code == 2
    assert len(output.splitlines()) == 1
    assert f"could not reach http://127.0.0.1:{port}/" in output
