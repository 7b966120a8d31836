"""The policy of where processing starts by itself (iverton_webhooks._placement): each row of
docs/processing.md's table, and the in-process behaviour adapters rely on."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import pytest

from iverton_webhooks import _placement as placement
from iverton_webhooks._errors import ConfigurationError
from iverton_webhooks._placement import Decision, decide

START, FORKED, NO = Decision.START, Decision.IN_FORKED_WORKERS, Decision.NO
PY = "/srv/venv/lib/python3.12/site-packages"

# (argv, environ, modules, prefork_worker, expected): docs/processing.md, row by row.
ROWS: list[tuple[list[str], Mapping[str, str], tuple[str, ...], bool, Decision]] = [
    # gunicorn: workers start, the master (--preload, or a config importing the app) defers
    (["/srv/venv/bin/gunicorn", "app:app"], {}, (), True, START),
    (["/srv/venv/bin/gunicorn", "--preload", "app:app"], {}, (), False, FORKED),
    ([f"{PY}/gunicorn/__main__.py", "-w", "4", "app:app"], {}, (), True, START),
    ([f"{PY}/gunicorn/__main__.py", "--preload", "app:app"], {}, (), False, FORKED),
    (["/srv/run.py"], {"SERVER_SOFTWARE": "gunicorn/23.0.0"}, (), False, FORKED),
    # uWSGI: the embedded uwsgi module says which process this is
    (["/srv/venv/bin/uwsgi", "--ini", "x.ini"], {}, ("uwsgi",), True, START),
    (["uwsgi"], {}, ("uwsgi",), False, FORKED),
    # other WSGI servers
    (["/srv/venv/bin/waitress-serve", "app:app"], {}, (), False, START),
    (["/srv/serve.py"], {}, ("waitress",), False, START),
    (["/usr/sbin/httpd"], {}, ("mod_wsgi",), False, START),
    # ASGI servers (a Django project under them starts at ready(); Starlette at lifespan)
    (["/srv/venv/bin/uvicorn", "app:app", "--workers", "4"], {}, (), False, START),
    ([f"{PY}/uvicorn/__main__.py", "app:app"], {}, (), False, START),
    (["/srv/venv/bin/hypercorn", "app:app"], {}, (), False, START),
    (["/srv/venv/bin/daphne", "project.asgi:application"], {}, (), False, START),
    # flask run: the reloader's child, or no reloader
    (["/srv/venv/bin/flask", "run"], {}, (), False, START),
    (["/srv/venv/bin/flask", "--app", "app", "run", "--no-reload"], {}, (), False, START),
    (["/srv/venv/bin/flask", "--app", "app", "--debug", "run"], {}, (), False, NO),
    (["flask", "--debug", "run"], {"WERKZEUG_RUN_MAIN": "true"}, (), False, START),
    (["flask", "run"], {"FLASK_DEBUG": "1"}, (), False, NO),
    (["flask", "run", "--reload"], {}, (), False, NO),
    ([f"{PY}/flask/__main__.py", "run"], {}, (), False, START),
    # other flask commands, ours included
    (["flask", "routes"], {}, (), False, NO),
    (["flask", "shell"], {}, (), False, NO),
    (["flask", "--app", "run", "iverton", "worker"], {}, (), False, NO),
    (["flask", "-A", "app", "iverton", "stats"], {}, (), False, NO),
    (["flask", "iverton", "events"], {"WERKZEUG_RUN_MAIN": "true"}, (), False, NO),
    # manage.py runserver: the autoreloader's child, or --noreload
    (["manage.py", "runserver"], {"RUN_MAIN": "true"}, (), False, START),
    (["./manage.py", "runserver", "--noreload"], {}, (), False, START),
    (["manage.py", "runserver"], {}, (), False, NO),
    (["manage.py", "migrate"], {}, (), False, NO),
    (["manage.py", "shell"], {}, (), False, NO),
    (["manage.py", "check"], {}, (), False, NO),
    (["manage.py"], {}, (), False, NO),
    (["/srv/venv/bin/django-admin", "migrate"], {}, (), False, NO),
    ([f"{PY}/django/__main__.py", "check"], {}, (), False, NO),
    (["manage.py", "iverton_webhooks_worker"], {}, (), False, NO),
    (["manage.py", "iverton_webhooks_stats"], {}, (), False, NO),
    (["manage.py", "iverton_webhooks_events"], {}, (), False, NO),
    # our own command line
    (["/srv/venv/bin/iverton-webhooks", "worker", "--app", "app"], {}, (), False, NO),
    (["/srv/venv/bin/iverton-webhooks", "stats", "--app", "app"], {}, (), False, NO),
    # test sessions and scripts that merely import the app
    (["/srv/venv/bin/pytest", "tests"], {}, (), False, NO),
    ([f"{PY}/pytest/__main__.py"], {}, ("pytest", "_pytest"), False, NO),
    (["/srv/app.py"], {}, ("_pytest",), False, NO),
    (["-c"], {}, (), False, NO),
    (["/srv/script.py"], {}, (), False, NO),
    (["/srv/venv/bin/celery", "-A", "proj", "worker"], {}, (), False, NO),
    ([], {}, (), False, NO),
]


@pytest.mark.parametrize(("argv", "environ", "modules", "worker", "expected"), ROWS)
def test_the_policy_table(
    argv: list[str],
    environ: Mapping[str, str],
    modules: tuple[str, ...],
    worker: bool,
    expected: Decision,
) -> None:
    found = decide(argv, environ, modules, prefork_worker=worker)
    assert found.decision is expected, found.why
    assert found.why  # every answer says why (it is logged)


OVERRIDES: list[tuple[list[str], str, tuple[str, ...], bool, Decision]] = [
    # on: start as a server would, in tests and scripts too; a pre-fork master still defers
    (["/srv/script.py"], "on", (), False, START),
    (["/srv/venv/bin/pytest"], "on", ("pytest",), False, START),
    (["flask", "shell"], "ON", (), False, START),
    (["gunicorn", "--preload", "app:app"], "on", (), False, FORKED),
    # ...but never beside our commands: a worker claims alone, the others claim nothing
    (["flask", "iverton", "worker", "--once"], "on", (), False, NO),
    (["manage.py", "iverton_webhooks_worker"], "on", (), False, NO),
    (["iverton-webhooks", "stats"], "on", (), False, NO),
    # off: nothing starts by itself, even where a server serves
    (["gunicorn", "app:app"], "off", (), True, NO),
    (["uvicorn", "app:app"], "off", (), False, NO),
    (["manage.py", "runserver", "--noreload"], "off", (), False, NO),
    # auto (or empty): the table above
    (["gunicorn", "app:app"], "auto", (), True, START),
    (["/srv/script.py"], "", (), False, NO),
]


@pytest.mark.parametrize(("argv", "value", "modules", "worker", "expected"), OVERRIDES)
def test_the_override(
    argv: list[str], value: str, modules: tuple[str, ...], worker: bool, expected: Decision
) -> None:
    environ = {placement.ENV: value}
    assert decide(argv, environ, modules, prefork_worker=worker).decision is expected


def test_a_command_marked_in_this_process_starts_nothing() -> None:
    for value in ("auto", "on"):
        environ = {placement.ENV: value}
        found = decide(["uvicorn", "app:app"], environ, command="iverton-webhooks worker")
        assert found.decision is NO


@pytest.mark.parametrize("value", ["yes", "1", "true", "sometimes"])
def test_an_unknown_override_is_refused_with_the_choices(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"'auto'.*'on'.*'off'"):
        decide(["gunicorn"], {placement.ENV: value})


class Counter:
    def __init__(self) -> None:
        self.starts = 0

    def start(self) -> None:
        self.starts += 1


def test_in_this_test_session_nothing_starts_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(placement.ENV, raising=False)
    counter = Counter()
    assert placement.start_if_serving(counter) is NO
    assert counter.starts == 0
    monkeypatch.setenv(placement.ENV, "on")
    assert placement.start_if_serving(counter) is START
    assert counter.starts == 1
    with placement.our_command("iverton-webhooks worker"):
        assert placement.start_if_serving(counter) is NO
    assert counter.starts == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_pre_fork_master_defers_to_each_forked_worker_and_never_starts_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As gunicorn --preload: the master loads the app (nothing starts there), then forks.
    monkeypatch.setenv(placement.ENV, "auto")
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/test")
    monkeypatch.setattr(sys, "argv", ["/srv/venv/bin/gunicorn", "--preload", "app:app"])
    monkeypatch.delitem(sys.modules, "pytest")
    monkeypatch.delitem(sys.modules, "_pytest")
    monkeypatch.setattr(placement, "_in_prefork_worker", lambda modules: False)
    monkeypatch.setattr(placement, "_deferred", [])
    counter = Counter()
    try:
        assert placement.start_if_serving(counter) is FORKED
        assert counter.starts == 0  # the master never processes
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: started by the fork hook, before any request
            os.close(read)
            os.write(write, str(counter.starts).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            started_in_child = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert started_in_child == "1"
        assert counter.starts == 0  # still never in the master
    finally:
        placement._master_pid = None
