"""Where processing starts by itself: the one policy every adapter asks.

An adapter that loads a receiver (Django's ``ready()``, Flask's ``init_app``, a
`WebhookApp`) calls `start_if_serving`; an ASGI lifespan asks `lifespan_starts`. `decide`
answers from the command line, the environment (`ENV` overrides it) and the modules
loaded, as the table in ``docs/processing.md`` says.
"""

from __future__ import annotations

import enum
import inspect
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

from ._errors import ConfigurationError

__all__ = [
    "ENV",
    "Decision",
    "Verdict",
    "decide",
    "lifespan_starts",
    "our_command",
    "start_if_serving",
    "when_serving",
]

log = logging.getLogger("iverton_webhooks")

#: The override: ``auto`` (the policy), ``on`` (start as a server would) or ``off``.
ENV = "IVERTON_WEBHOOKS_PROCESSING"
_CHOICES = ("auto", "on", "off")


class Decision(enum.Enum):
    """What this process does with the receivers it loads."""

    START = "start"  # start them now
    IN_FORKED_WORKERS = "in_forked_workers"  # a pre-fork master: start in each forked worker
    NO = "no"  # never by itself (an explicit ``receiver.start()`` still starts it)


class Verdict(NamedTuple):
    decision: Decision
    why: str


class Startable(Protocol):
    def start(self) -> None: ...


#: Servers that load the app in the processes that serve it. In an ASGI server the
#: lifespan start-up is the trigger, but an app without one (Django) starts when loaded.
SERVERS = frozenset({"uvicorn", "hypercorn", "daphne", "waitress-serve"})
#: Servers whose master may load the app and then fork the workers that serve it.
PREFORK_SERVERS = frozenset({"gunicorn", "uwsgi"})
#: ``manage.py`` commands that serve requests.
DJANGO_SERVING = frozenset({"runserver", "runserver_plus"})
_DJANGO_PROGRAMS = frozenset({"manage.py", "django-admin", "django-admin.py", "django"})
_TEST_RUNNERS = frozenset({"pytest", "py.test"})
#: ``flask`` options before the command that take a value.
_FLASK_VALUE_OPTIONS = frozenset({"-A", "--app", "-e", "--env-file"})


def program(argv: Sequence[str]) -> str:
    """The command's name: ``gunicorn`` for ``/venv/bin/gunicorn`` and for ``python -m
    gunicorn`` (whose ``argv[0]`` is ``.../gunicorn/__main__.py``)."""
    if not argv or not argv[0]:
        return ""
    path = argv[0]
    name = os.path.basename(path)
    if name == "__main__.py":
        name = os.path.basename(os.path.dirname(path))
    for suffix in (".exe", "-script.py"):
        name = name.removesuffix(suffix)
    return name


def setting(environ: Mapping[str, str]) -> str:
    """The override's value (``auto`` when unset); any other value is refused."""
    value = environ.get(ENV, "").strip().lower() or "auto"
    if value not in _CHOICES:
        raise ConfigurationError(
            f"{ENV}={environ.get(ENV)!r}: use 'auto' (start in serving processes only), "
            "'on' (start in this process as a server would) or 'off'"
        )
    return value


def decide(
    argv: Sequence[str],
    environ: Mapping[str, str],
    modules: Collection[str] = (),
    *,
    prefork_worker: bool = False,
    command: str | None = None,
) -> Verdict:
    """Does this process start processing by itself? A pure function of what it is given.

    ``modules``: names in ``sys.modules``; ``prefork_worker``: under gunicorn or uWSGI,
    whether this process is one of the workers (not the master); ``command``: the name
    of one of our commands running in this process.
    """
    chosen = setting(environ)
    if chosen == "off":
        return Verdict(Decision.NO, f"{ENV}=off")
    name = program(argv)
    if command is None:
        command = _our_command(name, argv)
    if command is not None:
        # The worker commands process in the foreground and nothing else may claim
        # beside them; the others only read or requeue.
        return Verdict(Decision.NO, f"our {command!r} command")
    prefork = name in PREFORK_SERVERS or "uwsgi" in modules
    prefork = prefork or environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")
    if chosen == "on":
        if prefork and not prefork_worker:
            return Verdict(Decision.IN_FORKED_WORKERS, f"{ENV}=on, in a pre-fork master")
        return Verdict(Decision.START, f"{ENV}=on")
    if name in _TEST_RUNNERS or "pytest" in modules or "_pytest" in modules:
        return Verdict(Decision.NO, f"a test session (set {ENV}=on to start)")
    if prefork:
        server = "uwsgi" if "uwsgi" in modules or name == "uwsgi" else "gunicorn"
        if prefork_worker:
            return Verdict(Decision.START, f"a {server} worker")
        return Verdict(Decision.IN_FORKED_WORKERS, f"the {server} master: its workers process")
    if name in SERVERS:
        return Verdict(Decision.START, f"served by {name}")
    for server in ("mod_wsgi", "waitress"):
        if server in modules:
            return Verdict(Decision.START, f"served by {server}")
    if name == "flask":
        return _flask(argv, environ)
    if _is_django(name):
        return _django(argv, environ)
    return Verdict(Decision.NO, f"not a known server ({name or 'no program'}; set {ENV}=on)")


def _our_command(name: str, argv: Sequence[str]) -> str | None:
    if name == "iverton-webhooks":
        return name
    if name == "flask" and _flask_command(argv) == "iverton":
        return "flask iverton"
    if _is_django(name) and len(argv) > 1 and argv[1].startswith("iverton_webhooks_"):
        return argv[1]
    return None


def _is_django(name: str) -> bool:
    return name in _DJANGO_PROGRAMS or name.endswith("manage.py")


def _flask_command(argv: Sequence[str]) -> str:
    args = iter(argv[1:])
    for arg in args:
        if arg in _FLASK_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return ""


def _flask(argv: Sequence[str], environ: Mapping[str, str]) -> Verdict:
    command = _flask_command(argv)
    if command != "run":
        return Verdict(Decision.NO, f"flask {command or '(no command)'}: serves nothing")
    if environ.get("WERKZEUG_RUN_MAIN") == "true":
        return Verdict(Decision.START, "flask run, the reloader's child")
    if "--no-reload" in argv:
        reloads = False
    elif "--reload" in argv:
        reloads = True
    elif "FLASK_RUN_RELOAD" in environ:
        reloads = _truthy(environ["FLASK_RUN_RELOAD"])
    else:  # Flask reloads in debug mode unless told otherwise
        reloads = "--debug" in argv or (
            "--no-debug" not in argv and _truthy(environ.get("FLASK_DEBUG", ""))
        )
    if reloads:
        return Verdict(Decision.NO, "flask run, the reloader's parent: its child serves")
    return Verdict(Decision.START, "flask run")


def _django(argv: Sequence[str], environ: Mapping[str, str]) -> Verdict:
    command = argv[1] if len(argv) > 1 else ""
    if command not in DJANGO_SERVING:
        return Verdict(Decision.NO, f"manage.py {command or '(no command)'}: serves nothing")
    if environ.get("RUN_MAIN") == "true" or "--noreload" in argv:
        return Verdict(Decision.START, f"manage.py {command}")
    return Verdict(Decision.NO, f"manage.py {command}, the autoreloader's parent")


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


# This process --------------------------------------------------------------------------

_lock = threading.Lock()
#: Our command running in this process (set by the command line tools).
_command: str | None = None
#: The pid of a pre-fork master in which a start was deferred to its forked workers.
_master_pid: int | None = None
#: The pid of a worker forked from such a master (it starts everything at once).
_forked_worker_pid: int | None = None
#: What to start in each worker forked from this process, held weakly where possible.
_deferred: list[Callable[[], Callable[[], object] | None]] = []


def _in_prefork_worker(modules: Mapping[str, Any]) -> bool:
    """Whether this process is a worker of gunicorn or uWSGI, not their master, told
    as docs/processing.md explains (uvicorn's gunicorn worker sets ``SIGUSR1`` too). A
    process that deferred its start stays a master, and one forked from it is a worker.
    """
    pid = os.getpid()
    if _forked_worker_pid == pid:
        return True
    if _master_pid == pid:
        return False
    uwsgi = modules.get("uwsgi")
    if uwsgi is not None and callable(getattr(uwsgi, "worker_id", None)):
        return bool(uwsgi.worker_id() > 0)
    usr1 = getattr(signal, "SIGUSR1", None)
    return usr1 is not None and callable(signal.getsignal(usr1))


def when_serving(start: Callable[[], object], *, what: str = "webhook processing") -> Decision:
    """Call ``start()`` now if this process serves, or in each worker forked from it if
    it is a pre-fork master; otherwise never. Returns the decision taken.

    A bound method (a receiver's) is held weakly: dropped before the fork, its object is
    neither kept alive nor started."""
    found = decide(
        sys.argv,
        os.environ,
        sys.modules,
        prefork_worker=_in_prefork_worker(sys.modules),
        command=_command,
    )
    if found.decision is Decision.START:
        log.debug("%s starts in this process: %s", what, found.why)
        start()
    elif found.decision is Decision.IN_FORKED_WORKERS:
        global _master_pid
        log.debug("%s starts in each forked worker, not here: %s", what, found.why)
        holder: Callable[[], Callable[[], object] | None] = (
            weakref.WeakMethod(start) if inspect.ismethod(start) else lambda: start
        )
        with _lock:
            _master_pid = os.getpid()
            if not any(held() == start for held in _deferred):
                _deferred.append(holder)
    else:
        log.debug("%s does not start in this process: %s", what, found.why)
    return found.decision


def start_if_serving(startable: Startable) -> Decision:
    """`when_serving` for a receiver or a runner: its ``start()``."""
    return when_serving(startable.start, what=f"processing of {type(startable).__name__}")


def lifespan_starts() -> bool:
    """An ASGI lifespan start-up is a server (or a test client entered on purpose) asking
    the app to start: it starts processing unless ``IVERTON_WEBHOOKS_PROCESSING=off``."""
    return setting(os.environ) != "off"


@contextmanager
def our_command(name: str) -> Iterator[None]:
    """Run one of our commands in this process: nothing starts processing by itself
    while it runs, whatever app it loads (workers process in the foreground)."""
    global _command
    previous, _command = _command, name
    try:
        yield
    finally:
        _command = previous


def _after_fork_in_child() -> None:
    # A worker forked from a pre-fork master that deferred its starts: start them here.
    global _lock, _forked_worker_pid, _master_pid
    _lock = threading.Lock()  # it may have been copied held
    if _master_pid is None:
        return
    try:
        if setting(os.environ) == "off":
            return
    except ConfigurationError:
        pass  # a bad value is refused where the app loads; here it reads as auto
    _forked_worker_pid, _master_pid = os.getpid(), None
    deferred, _deferred[:] = list(_deferred), []
    for holder in deferred:
        start = holder()
        if start is None:
            continue
        try:
            start()
        except Exception:
            log.exception("webhook processing could not start in this worker")


os.register_at_fork(after_in_child=_after_fork_in_child)
