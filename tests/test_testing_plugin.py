"""The pytest plugin (``iverton_webhooks.testing``): its fixtures, their docs, its cost.

Most tests run a small test file in a pytester session, as a user's suite would, with the
plugin loaded from its ``pytest11`` entry point.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from iverton_webhooks import Event, Receiver, Router, Status
from iverton_webhooks.testing import AppWebhooks, deliver, isolate, signed_delivery

pytest_plugins = ["pytester"]

FIXTURES = (
    "iverton_secret",
    "iverton_router",
    "iverton_receiver",
    "iverton_captured",
    "iverton_signed_post",
    "iverton_isolate",
)
HEAVY = (
    "pydantic",
    "iverton_webhooks.events",
    "iverton_webhooks._receiver",
    "iverton_webhooks._processor",
    "iverton_webhooks.inbox",
    "django",
    "flask",
    "starlette",
    "fastapi",
)


def needs(module: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"needs {module}")


# In-process use of the fixtures (the plugin is loaded for this very suite).


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


# Documentation and cost.


def test_every_fixture_has_a_docstring(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:randomly")
    out = result.stdout.str()
    for name in FIXTURES:
        assert name in out, name
    # pytest prints each fixture's name line, then its docstring indented (or the warning).
    lines = out.splitlines()
    for index, line in enumerate(lines):
        if line.split(" ", 1)[0] in FIXTURES:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            assert "no docstring available" not in following, line
            assert following.startswith("    "), (line, following)


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    code = "import json, sys, iverton_webhooks.testing\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = set(json.loads(out))
    assert not [m for m in loaded if m.partition(".")[0] in HEAVY or m in HEAVY]
    assert "pytest" not in loaded  # outside a pytest session, pytest is not imported either


def test_a_pytest_session_does_not_load_the_receiver_until_a_fixture_asks(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_cost=f"""
        import sys

        HEAVY = {HEAVY!r}

        def test_nothing_heavy_loaded_yet():
            assert "iverton_webhooks.testing" in sys.modules  # the plugin is loaded
            loaded = [m for m in HEAVY if m.startswith("iverton_webhooks") and m in sys.modules]
            assert loaded == []
            assert "pydantic" not in sys.modules

        def test_a_fixture_loads_it(iverton_receiver):
            assert "iverton_webhooks._receiver" in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:django")
    result.assert_outcomes(passed=2)


# Each fixture in a user's suite.


def test_secret_router_and_receiver_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def iverton_secret():
            return "whsec_mine_7f3a9c01b2d4"
        """
    )
    pytester.makepyfile(
        """
        from iverton_webhooks import Router, Status
        from iverton_webhooks.testing import signed_delivery

        def test_receiver(iverton_receiver, iverton_router, iverton_secret):
            assert iverton_secret == "whsec_mine_7f3a9c01b2d4"
            assert isinstance(iverton_router, Router) and iverton_router.strict
            won = []
            iverton_router.on("deal.won")(lambda event: won.append(event.id))
            delivery = signed_delivery("deal.won", iverton_secret, id="evt_1")
            assert iverton_receiver.receive("POST", delivery.body, delivery.headers).status == 200
            assert won == ["evt_1"]
            assert iverton_receiver.store.get("evt_1").status is Status.DONE

        def test_router_is_fresh_per_test(iverton_router):
            assert iverton_router.handlers_for("deal.won") == []
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)


def test_captured_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from iverton_webhooks import Router
        from iverton_webhooks.testing import inline_receiver, signed_delivery

        def test_captured(iverton_receiver, iverton_captured):
            for event_id, event_type in (("evt_1", "deal.won"), ("evt_2", "contact.created")):
                delivery = signed_delivery(event_type, id=event_id)
                iverton_receiver.receive("POST", delivery.body, delivery.headers)
            assert iverton_captured.ids == ["evt_1", "evt_2"]
            assert iverton_captured.types == ["deal.won", "contact.created"]
            assert [e.id for e in iverton_captured.of("deal.won")] == ["evt_1"]
            assert len(iverton_captured) == 2 and iverton_captured[1].data.id

        def test_attach_to_another_router(iverton_captured):
            router = Router()
            iverton_captured.attach(router)
            receiver = inline_receiver(router)
            delivery = signed_delivery("email.opened", id="evt_3")
            receiver.receive("POST", delivery.body, delivery.headers)
            receiver.close()
            assert iverton_captured.ids == ["evt_3"]

        def test_a_duplicate_is_not_dispatched_twice(iverton_receiver, iverton_captured):
            delivery = signed_delivery("deal.won", id="evt_4")
            for _ in range(2):
                iverton_receiver.receive("POST", delivery.body, delivery.headers)
            assert iverton_captured.ids == ["evt_4"]
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)


@needs("flask")
def test_signed_post_with_flask(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from flask import Flask

        from iverton_webhooks.contrib.flask import webhooks_blueprint

        def test_flask(iverton_signed_post, iverton_receiver, iverton_captured):
            app = Flask(__name__)
            app.register_blueprint(webhooks_blueprint(receiver=iverton_receiver))
            client = app.test_client()
            reply = iverton_signed_post(client, "/webhooks/iverton", "deal.won", id="evt_f")
            assert reply.status_code == 200, reply.data
            assert reply.get_json() == {"status": "accepted"}
            assert iverton_captured.ids == ["evt_f"]
            own = iverton_signed_post(client, "/webhooks/iverton", body=b"{}")
            assert own.get_json() == {"status": "quarantined"}
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)


@needs("starlette")
@needs("httpx")
def test_signed_post_with_starlette(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from starlette.applications import Starlette
        from starlette.testclient import TestClient

        from iverton_webhooks.contrib.starlette import webhook_route

        def test_starlette(iverton_signed_post, iverton_receiver, iverton_captured):
            app = Starlette(routes=[webhook_route("/hooks", iverton_receiver)])
            with TestClient(app) as client:
                reply = iverton_signed_post(client, "/hooks", "contact.created", id="evt_s")
            assert reply.status_code == 200, reply.text
            assert reply.json() == {"status": "accepted"}
            assert iverton_captured.ids == ["evt_s"]
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)


@needs("django")
def test_signed_post_with_django(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_django_client="""
        import django
        from django.conf import settings

        settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"])
        django.setup()

        from django.http import HttpResponse
        from django.test import Client
        from django.urls import path
        from django.views.decorators.csrf import csrf_exempt

        RECEIVER = []

        @csrf_exempt
        def view(request):
            # What an adapter does: the raw body and headers, unchanged.
            reply = RECEIVER[0].receive(request.method, request.body, request.headers)
            return HttpResponse(reply.body, status=reply.status)

        urlpatterns = [path("hooks/", view)]

        def test_django(iverton_signed_post, iverton_receiver, iverton_captured):
            RECEIVER.append(iverton_receiver)
            reply = iverton_signed_post(Client(), "/hooks/", "deal.lost", id="evt_d")
            assert reply.status_code == 200, reply.content
            assert iverton_captured.ids == ["evt_d"]
            assert iverton_captured[0].type == "deal.lost"
        """
    )
    # pytest-django, when installed, would want DJANGO_SETTINGS_MODULE: this file
    # configures Django itself, as a project without pytest-django would.
    pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:django").assert_outcomes(passed=1)


def test_signed_post_refuses_an_unknown_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        class Client:
            def post(self, *args, **kwargs):
                raise AssertionError("not called")

        def test_unknown(iverton_signed_post):
            with pytest.raises(TypeError, match="unsupported test client"):
                iverton_signed_post(Client(), "/hooks")
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=1)


def test_the_plugin_is_registered_by_its_entry_point() -> None:
    env = {**os.environ, "PYTEST_ADDOPTS": ""}
    code = textwrap.dedent(
        """
        from importlib.metadata import entry_points
        print([e.value for e in entry_points(group="pytest11") if e.name == "iverton_webhooks"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "['iverton_webhooks.testing']"


# The iverton_secret fixture, overridden as the docs advise.


def test_overriding_the_secret_keeps_the_docs_examples_passing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def iverton_secret():
            return "whsec_my_own_realistic_7f3a9c"
        """
    )
    pytester.makepyfile(
        test_docs_example="""
        from iverton_webhooks.testing import deliver, inline_receiver, signed_delivery

        def test_signed_delivery_signs_with_the_fixture(iverton_router, iverton_receiver):
            seen = []
            iverton_router.on("deal.won")(lambda event: seen.append(event.id))
            delivery = signed_delivery("deal.won", id="evt_1")
            assert iverton_receiver.receive("POST", delivery.body, delivery.headers).status == 200
            assert seen == ["evt_1"]

        def test_every_helper_agrees(iverton_secret):
            from iverton_webhooks import sign
            body = b'{"not": "an event"}'
            assert deliver(body).headers["X-Iverton-Signature"] == sign(body, iverton_secret)
            receiver = inline_receiver()
            raw = deliver(body)
            assert receiver.receive("POST", raw.body, raw.headers).status == 200
            receiver.close()

        def test_an_explicit_secret_still_wins(iverton_receiver):
            delivery = signed_delivery("deal.won", "whsec_someone_else_12345")
            assert iverton_receiver.receive("POST", delivery.body, delivery.headers).status == 401
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:django").assert_outcomes(passed=3)


def test_outside_a_test_the_helpers_sign_with_the_test_secret() -> None:
    code = (
        "from iverton_webhooks import sign\n"
        "from iverton_webhooks.testing import TEST_SECRET, deliver\n"
        "assert deliver(b'x').headers['X-Iverton-Signature'] == sign(b'x', TEST_SECRET)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# iverton_isolate / isolate: your real app, isolated.

APP_SECRET = "whsec_app_under_test_0d4e2b"


@needs("flask")
def test_isolate_a_flask_app(tmp_path: object) -> None:
    from pathlib import Path

    from flask import Flask

    from iverton_webhooks.contrib.flask import webhooks_blueprint

    router = Router()
    ran: list[str] = []
    router.on("deal.won")(lambda event: ran.append(event.id))
    dev_inbox = f"sqlite:///{Path(str(tmp_path)) / 'dev.sqlite3'}"
    app = Flask(__name__)
    app.register_blueprint(
        webhooks_blueprint(secret=APP_SECRET, store=dev_inbox, router=router),
        url_prefix="/webhooks/iverton",
    )
    from iverton_webhooks.testing import _receivers_of

    (receiver,) = _receivers_of(app)
    real_store, real_runner = receiver.store, receiver.runner
    with isolate(app) as webhooks:
        assert isinstance(webhooks, AppWebhooks)
        assert APP_SECRET not in repr(webhooks)
        client = app.test_client()
        reply = webhooks.post(client, "/webhooks/iverton", "deal.won", id="evt_iso")
        assert reply.get_json() == {"status": "accepted"}
        assert ran == ["evt_iso"]  # inline: the handler has run
        assert webhooks.status("evt_iso") is Status.DONE
        # The plugin's test secret is not the app's: refused.
        refused = client.post(
            "/webhooks/iverton",
            data=signed_delivery("deal.won").body,
            headers=signed_delivery("deal.won").headers,
        )
        assert refused.status_code == 401
        assert webhooks.status("evt_missing") is None
    assert receiver.store is real_store
    assert receiver.processor.store is real_store
    assert receiver.runner is real_runner
    assert real_store.get("evt_iso") is None  # nothing reached the app's own inbox
    receiver.close()


def test_isolate_puts_everything_back_when_the_test_fails() -> None:
    receiver = Receiver(APP_SECRET, store="memory://", runner="inline")
    real_store, real_runner, real_log = receiver.store, receiver.runner, receiver.answer_log
    seen: list[object] = []

    def failing_test() -> None:
        with isolate(receiver) as webhooks:
            seen.append(webhooks.store)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_test()
    assert seen
    assert seen[0] is not real_store
    assert (receiver.store, receiver.runner, receiver.answer_log) == (
        real_store,
        real_runner,
        real_log,
    )
    receiver.close()


def test_isolate_refuses_what_holds_no_receiver() -> None:
    with pytest.raises(LookupError, match="found no webhook receiver"), isolate(object()):
        pass


def test_several_endpoints_need_a_name() -> None:
    import types

    module = types.ModuleType("two_endpoints")
    # Own routers: the default router may hold handlers another test registered.
    module.a = Receiver(APP_SECRET, endpoint="a", store="memory://", router=Router())  # type: ignore[attr-defined]
    module.b = Receiver(  # type: ignore[attr-defined]
        "whsec_other_endpoint_9a8b7c", endpoint="b", store="memory://", router=Router()
    )
    with isolate(module) as webhooks:
        with pytest.raises(LookupError, match="pass endpoint=NAME"):
            webhooks.signed_delivery("deal.won")
        delivery = webhooks.signed_delivery("deal.won", endpoint="b", id="evt_b")
        assert module.b.receive("POST", delivery.body, delivery.headers).status == 200
        assert module.a.receive("POST", delivery.body, delivery.headers).status == 401
        assert webhooks.status("evt_b", endpoint="b") is Status.UNHANDLED
        assert webhooks.status("evt_b", endpoint="a") is None  # endpoints stay separate
    module.a.close()
    module.b.close()


@needs("flask")
def test_the_fixture_isolates_for_one_test_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_app=f"""
        from flask import Flask

        from iverton_webhooks.contrib.flask import webhooks_blueprint

        app = Flask(__name__)
        app.register_blueprint(
            webhooks_blueprint(secret="{APP_SECRET}", store="sqlite:///dev.sqlite3"),
            url_prefix="/webhooks/iverton",
        )

        def test_isolated(iverton_isolate):
            webhooks = iverton_isolate(app)
            reply = webhooks.post(app.test_client(), "/webhooks/iverton", id="evt_1")
            assert reply.get_json() == {{"status": "accepted"}}

        def test_after_it(iverton_isolate):
            from iverton_webhooks.testing import _receivers_of
            (receiver,) = _receivers_of(app)
            assert "dev.sqlite3" in repr(receiver.store)
            assert receiver.store.get("evt_1") is None
        """
    )
    pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:django").assert_outcomes(passed=2)
