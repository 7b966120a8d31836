"""Every README and docs ``python`` block runs as a user runs it: saved as a script and
started in a fresh interpreter, in an empty directory, with ``IVERTON_WEBHOOK_SECRET``
set.

tests/test_readme.py and tests/test_docs.py execute the same blocks inside the test
process, where pytest keeps the interpreter alive after the block: a background thread
that has not run the handler yet still gets to run it there, but not in a script, whose
daemon threads die with the process when the last line has run. So the Quickstart must
print its handler's line here, not only there.

Skipped: blocks after a ``<!-- skip: ... -->`` comment (fragments), blocks that are test
files (tests/test_docs.py runs each in a pytest subprocess) and the Django quickstart's
files (tests/test_docs.py builds them into a project and runs it in a subprocess).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_readme_3b9f0c2d7e4a61"
FRAMEWORKS = {"django", "flask", "starlette", "fastapi", "celery"}
#: Per script; a block that hangs (a thread that never ends) fails instead of waiting.
TIMEOUT = 60.0


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks(page: Path) -> list[Snippet]:
    """The runnable ``python`` blocks of a page (see the module docstring)."""
    lines = page.read_text().splitlines()
    found = []
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            start = index
            body = []
            index += 1
            while lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            before = lines[start - 1].strip() if start else ""
            code = "\n".join(body) + "\n"
            fragment = re.fullmatch(r"<!-- (skip: .+|django: \S+) -->", before)
            test_file = re.search(r"^(def test_|class Test)", code, re.M)
            if not fragment and not test_file:
                found.append(Snippet(page.relative_to(ROOT).as_posix(), start + 1, code))
        index += 1
    return found


def snippets() -> list[Snippet]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [snippet for page in pages for snippet in _blocks(page)]


SNIPPETS = snippets()


def missing_framework(code: str) -> str | None:
    for module in re.findall(r"^\s*(?:from|import)\s+(\w+)", code, re.M):
        if module in FRAMEWORKS and importlib.util.find_spec(module) is None:
            return module
    return None


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str


def run_script(snippet: Snippet) -> Run:
    """The block saved as ``snippet.py`` in an empty directory and run there."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IVERTON_", "FLASK_IVERTON_", "DJANGO_SETTINGS"))
        and key != "PYTEST_CURRENT_TEST"
    }
    env["IVERTON_WEBHOOK_SECRET"] = SECRET
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="snippet-") as scratch:
        script = Path(scratch) / "snippet.py"
        script.write_text(snippet.code)
        try:
            proc = subprocess.run(
                [sys.executable, str(script)],
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            said = (expired.stdout or b"") + (expired.stderr or b"")
            text = said.decode(errors="replace") if isinstance(said, bytes) else said
            return Run(-1, f"timed out after {TIMEOUT:g} s\n{text}")
    return Run(proc.returncode, proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    """Every runnable snippet, run at once: one interpreter each, in parallel."""
    todo = [snippet for snippet in SNIPPETS if not missing_framework(snippet.code)]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = pool.map(run_script, todo)
        return {snippet.name: run for snippet, run in zip(todo, results, strict=True)}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.name for s in SNIPPETS])
def test_snippet_runs_as_a_script(snippet: Snippet, runs: dict[str, Run]) -> None:
    if missing := missing_framework(snippet.code):
        pytest.skip(f"needs {missing}")
    run = runs[snippet.name]
    assert run.returncode == 0, f"{snippet.name} exited {run.returncode}:\n{run.output}"
    assert "Traceback" not in run.output, run.output


def _quickstart(page: str, heading: str) -> Snippet:
    text = (ROOT / page).read_text()
    section_start = text.index(heading)
    line = text.count("\n", 0, text.index("```python", section_start)) + 1
    return next(s for s in SNIPPETS if s.page == page and s.line == line)


@pytest.mark.parametrize(
    ("page", "heading"), [("README.md", "## Quickstart"), ("docs/index.md", "## Thirty seconds")]
)
def test_first_snippet_shows_its_handler_ran(page: str, heading: str, runs: dict[str, Run]) -> None:
    """The first block a user runs prints the handler's line before the script ends."""
    snippet = _quickstart(page, heading)
    assert "print(" in snippet.code
    run = runs[snippet.name]
    assert run.returncode == 0, run.output
    assert re.search(r"^won deal_\w+", run.output, re.M), (
        f"{snippet.name}: the handler did not run before the script ended:\n{run.output!r}"
    )


def test_every_block_is_run_somewhere() -> None:
    """Nothing escapes: each block is a script here, a test file, or a named fragment."""
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = page.read_text()
        fences = text.count("```python")
        fragments = len(re.findall(r"<!-- (?:skip: .+|django: \S+) -->\n```python", text))
        here = [s for s in SNIPPETS if s.page == page.relative_to(ROOT).as_posix()]
        test_files = fences - fragments - len(here)
        assert test_files >= 0
        if test_files:
            assert "def test_" in text or "class Test" in text, page


# What the Quickstart's last line relies on --------------------------------------------


def _slow_receiver(tmp_path: Path, seconds: float, done: list[str]) -> object:
    import time

    from iverton_webhooks import Receiver, Router

    router = Router()

    @router.on("deal.won")
    def slow(event: object) -> None:
        time.sleep(seconds)
        done.append("ran")

    return Receiver(
        secret=SECRET, router=router, store=f"sqlite:///{tmp_path / 'inbox.db'}", runner="thread"
    )


def _post(receiver: object, event_id: str) -> None:
    from iverton_webhooks.testing import signed_delivery

    delivery = signed_delivery("deal.won", SECRET, id=event_id)
    reply = receiver.receive("POST", delivery.body, delivery.headers)  # type: ignore[attr-defined]
    assert reply.status == 200


def test_close_finishes_the_handler_in_flight(tmp_path: Path) -> None:
    from iverton_webhooks import Status

    done: list[str] = []
    receiver = _slow_receiver(tmp_path, 0.3, done)
    _post(receiver, "evt_close_1")
    receiver.close()  # type: ignore[attr-defined]
    assert done == ["ran"]
    from iverton_webhooks import Receiver

    reopened = Receiver(secret=SECRET, store=f"sqlite:///{tmp_path / 'inbox.db'}", runner="inline")
    try:
        stored = reopened.store.get("evt_close_1")
        assert stored is not None
        assert stored.status is Status.DONE
    finally:
        reopened.close()


def test_close_with_a_short_timeout_keeps_the_unfinished_event(tmp_path: Path) -> None:
    import time

    from iverton_webhooks import Receiver, Status

    done: list[str] = []
    receiver = _slow_receiver(tmp_path, 3.0, done)
    _post(receiver, "evt_close_2")
    started = time.monotonic()
    receiver.close(timeout=0.2)  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2.9  # did not wait for the handler
    reopened = Receiver(secret=SECRET, store=f"sqlite:///{tmp_path / 'inbox.db'}", runner="inline")
    try:
        stored = reopened.store.get("evt_close_2")
        assert stored is not None
        assert stored.status not in (Status.DONE, Status.DEAD)  # kept for the next run
    finally:
        reopened.close()
