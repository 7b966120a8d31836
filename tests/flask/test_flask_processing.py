"""Processing after the reply, app contexts, several endpoints and apps, the extension."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask, current_app

from iverton_webhooks import ConfigurationError, Event, Router, SQLiteStore, Status, ThreadRunner
from iverton_webhooks.contrib.flask import IvertonWebhooks, state_of, webhooks_blueprint
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed, signed_headers, wait_for
from tests.flask.flask_helpers import PREFIX, Seen, close_all, receiver_of

MakeApp = Callable[..., Flask]


def test_thread_runner_processes_after_the_reply_inside_an_app_context(
    tmp_path: Path, make_app: MakeApp
) -> None:
    release = threading.Event()
    started = threading.Event()
    contexts: list[tuple[str, object]] = []
    router = Router()

    @router.on("deal.won")
    def slow(event: Event) -> None:
        started.set()
        contexts.append((current_app.name, current_app.config.get("CRM_URL")))
        assert release.wait(10)

    app = make_app("crm", config={"CRM_URL": "https://crm.test"}, router=router, runner="thread")
    body, headers = signed("deal.won", id="evt_after")
    response = app.test_client().post(PREFIX, data=body, headers=headers)
    # The reply is here while the handler is still blocked: it ran after the ack.
    assert response.status_code == 200
    assert started.wait(5)
    stored = receiver_of(app).store.get("evt_after")
    assert stored is not None
    assert stored.status is Status.PROCESSING
    release.set()
    runner = receiver_of(app).runner
    assert isinstance(runner, ThreadRunner)
    assert runner.join(5)
    assert contexts == [("crm", "https://crm.test")]
    assert wait_for(lambda: receiver_of(app).store.get("evt_after").status is Status.DONE)  # type: ignore[union-attr]


def test_concurrent_duplicates_through_the_thread_runner_run_once(
    tmp_path: Path, make_app: MakeApp, seen: Seen
) -> None:
    app = make_app(store=f"sqlite:///{tmp_path}/inbox.db", runner="thread")
    bodies = [sample_body("contact.updated", id=f"evt_c{n:02d}") for n in range(20)]

    def post_all(offset: int) -> list[int]:
        client = app.test_client()
        order = bodies[offset:] + bodies[:offset]
        return [client.post(PREFIX, data=b, headers=signed_headers(b)).status_code for b in order]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [s for batch in pool.map(post_all, [0, 5, 10, 15]) for s in batch]
    assert statuses == [200] * 80
    runner = receiver_of(app).runner
    assert isinstance(runner, ThreadRunner)
    assert wait_for(lambda: len(seen.ids) >= 20 and runner.join(0.1))
    assert Counter(seen.ids) == {f"evt_c{n:02d}": 1 for n in range(20)}
    events = receiver_of(app).store.list(limit=100)
    assert {e.status for e in events} == {Status.DONE}
    assert sum(e.deliveries for e in events) == 80


def test_two_blueprints_with_different_secrets_are_two_endpoints(tmp_path: Path) -> None:
    seen: dict[str, list[str]] = {"eu": [], "us": []}
    app = Flask("multi", instance_path=str(tmp_path / "instance"))
    for region in ("eu", "us"):
        router = Router()
        router.add(lambda event, r=region: seen[r].append(event.id), "*", name=f"h_{region}")
        app.register_blueprint(
            webhooks_blueprint(
                secret=f"whsec_{region}", name=f"iverton_{region}", router=router, runner="inline"
            ),
            url_prefix=f"/webhooks/{region}",
        )
    client = app.test_client()
    body = sample_body("deal.won", id="evt_eu")
    eu_signed = {"X-Iverton-Signature": signed_headers(body, "whsec_eu")["X-Iverton-Signature"]}
    assert client.post("/webhooks/us", data=body, headers=eu_signed).status_code == 401
    assert client.post("/webhooks/eu", data=body, headers=eu_signed).status_code == 200
    assert seen == {"eu": ["evt_eu"], "us": []}
    endpoints = state_of(app).endpoints
    assert set(endpoints) == {"iverton_eu", "iverton_us"}
    assert endpoints["iverton_eu"].receiver.store is not endpoints["iverton_us"].receiver.store
    assert (tmp_path / "instance" / "iverton_eu.sqlite3").exists()
    with pytest.raises(ConfigurationError, match="2 webhook endpoints"):
        state_of(app).endpoint()
    close_all(app)


def test_two_apps_in_one_process_keep_separate_receivers(make_app: MakeApp, seen: Seen) -> None:
    first, second = make_app("first"), make_app("second")
    assert receiver_of(first) is not receiver_of(second)
    body, headers = signed("deal.won", id="evt_first")
    assert first.test_client().post(PREFIX, data=body, headers=headers).status_code == 200
    assert receiver_of(first).store.get("evt_first") is not None
    assert receiver_of(second).store.get("evt_first") is None
    # The same event is new to the second app: its own inbox, its own app context.
    assert second.test_client().post(PREFIX, data=body, headers=headers).status_code == 200
    assert seen.runs == [("evt_first", "first"), ("evt_first", "second")]


def test_one_blueprint_object_on_two_apps_gets_a_receiver_per_app(
    tmp_path: Path, router: Router, seen: Seen
) -> None:
    blueprint = webhooks_blueprint(secret=SECRET, router=router, runner="inline")
    apps = [Flask(name, instance_path=str(tmp_path / name)) for name in ("one", "two")]
    for app in apps:
        app.register_blueprint(blueprint)
    body, headers = signed("deal.won", id="evt_shared_bp")
    for app in apps:
        assert app.test_client().post(PREFIX, data=body, headers=headers).status_code == 200
    assert receiver_of(apps[0]) is not receiver_of(apps[1])
    assert seen.runs == [("evt_shared_bp", "one"), ("evt_shared_bp", "two")]
    assert (tmp_path / "one" / "iverton_webhooks.sqlite3").exists()
    for app in apps:
        close_all(app)


def test_registering_the_same_name_twice_on_one_app_is_refused(make_app: MakeApp) -> None:
    app = make_app()
    with pytest.raises(ValueError, match="already registered"):
        app.register_blueprint(webhooks_blueprint(secret=SECRET), name="iverton_webhooks")


def test_blueprint_needs_a_secret_and_rejects_mixed_arguments() -> None:
    app = Flask("nosecret")
    with pytest.raises(ConfigurationError, match="no webhook secret"):
        app.register_blueprint(webhooks_blueprint(store="memory://"))
    with pytest.raises(ConfigurationError, match="either receiver"):
        webhooks_blueprint(secret="s", receiver=object())  # type: ignore[arg-type]


# The extension -------------------------------------------------------------------


def make_ext_app(tmp_path: Path, *, name: str = "ext", **config: object) -> Flask:
    app = Flask(name, instance_path=str(tmp_path / f"instance-{name}"))
    app.config.update(TESTING=True, **config)
    return app


def test_extension_reads_config_at_init_app_and_defaults_to_the_instance_folder(
    tmp_path: Path, router: Router, seen: Seen
) -> None:
    webhooks = IvertonWebhooks(router=router)
    app = make_ext_app(tmp_path, IVERTON_WEBHOOK_SECRET=SECRET, IVERTON_WEBHOOK_RUNNER="inline")
    webhooks.init_app(app)
    app.config["IVERTON_WEBHOOK_SECRET"] = "changed later: not read"
    body, headers = signed("deal.won", id="evt_ext")
    assert app.test_client().post(PREFIX, data=body, headers=headers).status_code == 200
    assert seen.runs == [("evt_ext", "ext")]
    assert isinstance(app.extensions["iverton_webhooks"].receiver(), object)
    with app.app_context():
        receiver = webhooks.receiver()
    assert receiver is webhooks.receiver(app) is receiver_of(app)
    assert isinstance(receiver.store, SQLiteStore)
    assert Path(receiver.store.path) == tmp_path / "instance-ext" / "iverton_webhooks.sqlite3"
    close_all(app)


def test_extension_with_rotated_secrets_prefix_store_and_cap(
    tmp_path: Path, router: Router, seen: Seen
) -> None:
    app = make_ext_app(
        tmp_path,
        IVERTON_WEBHOOK_SECRETS=["whsec_new", "whsec_old"],
        IVERTON_WEBHOOK_STORE="memory://",
        IVERTON_WEBHOOK_RUNNER="inline",
        IVERTON_WEBHOOK_MAX_BODY_BYTES=2000,
        IVERTON_WEBHOOK_URL_PREFIX="/hooks/crm",
    )
    IvertonWebhooks(app, router=router)
    client = app.test_client()
    for n, secret in enumerate(["whsec_new", "whsec_old", "whsec_other"]):
        body = sample_body("deal.won", id=f"evt_rot{n}")
        response = client.post("/hooks/crm", data=body, headers=signed_headers(body, secret))
        assert response.status_code == (401 if secret == "whsec_other" else 200)
    assert client.post(PREFIX, data=body).status_code == 404  # default prefix not mounted
    big = sample_body("deal.won", data={"notes": "x" * 2000})
    assert (
        client.post("/hooks/crm", data=big, headers=signed_headers(big, "whsec_new")).status_code
        == 413
    )
    assert seen.ids == ["evt_rot0", "evt_rot1"]


def test_extension_one_instance_many_apps(tmp_path: Path, router: Router, seen: Seen) -> None:
    webhooks = IvertonWebhooks(router=router)
    apps = []
    for name, secret in (("a", "whsec_a"), ("b", "whsec_b")):
        app = make_ext_app(
            tmp_path, name=name, IVERTON_WEBHOOK_SECRET=secret, IVERTON_WEBHOOK_RUNNER="inline"
        )
        webhooks.init_app(app)
        apps.append(app)
    body = sample_body("deal.won", id="evt_ab")
    a, b = (app.test_client() for app in apps)
    assert a.post(PREFIX, data=body, headers=signed_headers(body, "whsec_b")).status_code == 401
    assert b.post(PREFIX, data=body, headers=signed_headers(body, "whsec_b")).status_code == 200
    assert webhooks.receiver(apps[0]) is not webhooks.receiver(apps[1])
    assert seen.runs == [("evt_ab", "b")]
    for app in apps:
        close_all(app)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "no webhook secret"),
        ({"IVERTON_WEBHOOK_SECRET": SECRET, "IVERTON_WEBHOOK_RUNNER": "asyncio"}, "thread"),
        ({"IVERTON_WEBHOOK_SECRET": SECRET, "IVERTON_WEBHOOK_RUNNER": "fast"}, "unknown runner"),
        ({"IVERTON_WEBHOOK_SECRET": SECRET, "IVERTON_WEBHOOK_STORE": "mysql://x"}, "scheme"),
        ({"IVERTON_WEBHOOK_SECRETS": 42}, "must be a list of strings"),
    ],
)
def test_extension_refuses_bad_config_at_init_app(
    tmp_path: Path, config: dict[str, object], message: str
) -> None:
    app = make_ext_app(tmp_path)
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=message):
        IvertonWebhooks().init_app(app)
