"""The event name types the handler: mypy --strict on tests/typing_samples/handlers.py.

The sample marks each line that must fail with ``# expect: CODE``; mypy must report
exactly those (line, code) pairs in it and nothing else. The overloads in _router.py are
generated from the catalogue, and must agree with it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from iverton_webhooks import _router as router
from iverton_webhooks._catalogue import CATALOGUE, Catalogue, Family, Resource
from tools import gen_typing

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(__file__).resolve().parent / "typing_samples" / "handlers.py"
_EXPECT = re.compile(r"#\s*expect:\s*([a-z-]+)\s*$")
_REPORT = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")
_CODE = re.compile(r"\s+\[(?P<code>[a-z-]+)\]$")

DEAL = "iverton_webhooks.events.Event[iverton_webhooks._catalogue.Deal]"
# reveal_type() of a decorated function: the decorator handed back the same signature.
REVEALED = {
    "won": f"def (event: {DEAL})",
    "closed": f"def (event: {DEAL}) -> typing.Coroutine[Any, Any, None]",
}


def expected_errors() -> set[tuple[int, str]]:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    found = {(number, m[1]) for number, line in enumerate(lines, 1) if (m := _EXPECT.search(line))}
    assert len(found) >= 10, "the sample lost its refused handlers"
    return found


def run_mypy(tmp_path: Path) -> tuple[set[tuple[int, str]], dict[int, str]]:
    """(line, code) of each error in the sample, and the text of each note, by line."""
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        # A fresh cache: never race another mypy on the project's own cache.
        "--cache-dir",
        str(tmp_path / "mypy-cache"),
        "--hide-error-context",
        "--no-error-summary",
        "--no-pretty",
        "--show-error-codes",
        "--no-color-output",
        str(SAMPLE.relative_to(ROOT)),
    ]
    # From the project root, so pyproject.toml's [tool.mypy] (python_version 3.10) applies.
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode in (0, 1), done.stderr or done.stdout
    errors: set[tuple[int, str]] = set()
    notes: dict[int, str] = {}
    for line in done.stdout.splitlines():
        report = _REPORT.match(line)
        # Only the sample: the package's own mypy run is a separate CI step.
        if not report or Path(report["path"]).resolve() != SAMPLE:
            continue
        if report["kind"] == "note":
            notes[int(report["line"])] = report["text"]
            continue
        code = _CODE.search(report["text"])
        assert code, f"an error without a code: {line}"
        errors.add((int(report["line"]), code["code"]))
    return errors, notes


@pytest.mark.slow
def test_mypy_refuses_exactly_the_marked_handlers(tmp_path: Path) -> None:
    errors, notes = run_mypy(tmp_path)
    expected = expected_errors()
    assert errors - expected == set(), "refused but meant to be accepted"
    assert expected - errors == set(), "accepted but meant to be refused"

    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    for name, signature in REVEALED.items():
        number = next(n for n, line in enumerate(lines, 1) if f"reveal_type({name})" in line)
        assert notes.get(number) == f'Revealed type is "{signature}"'


def test_router_overloads_agree_with_the_catalogue() -> None:
    source = Path(router.__file__).read_text(encoding="utf-8")
    assert gen_typing.render(source) == source, (
        "_router.py is stale: run python -m tools.gen_typing"
    )
    assert gen_typing.main(["--check"]) == 0


def test_a_new_family_changes_the_generated_overloads() -> None:
    invoice = Family("invoice", Resource, ("paid", "voided"), sample={"id": "inv_1"})
    bigger = Catalogue((*CATALOGUE.families, invoice))
    source = Path(router.__file__).read_text(encoding="utf-8")
    rendered = gen_typing.render(source, bigger)

    assert rendered != source  # so the check above fails until the generator is rerun
    assert 'InvoiceName = Literal[\n    "invoice.*",\n    "invoice.paid",' in rendered
    assert 'bound="Callable[[Event[catalogue.Resource]], HandlerResult]' in rendered
    overload = "name: InvoiceName, /, *names: InvoiceName, newest_only: bool = ...\n"
    assert rendered.count(overload) == 2  # Router.on and the module-level on()
    # Regenerating is idempotent, and the families already there are untouched.
    assert gen_typing.render(rendered, bigger) == rendered
    assert gen_typing.render(rendered, CATALOGUE) == source


def test_a_model_outside_the_catalogue_module_is_refused() -> None:
    class Invoice(Resource):
        pass

    invoice = Family("invoice", Invoice, ("paid",), sample={"id": "inv_1"})
    source = Path(router.__file__).read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"catalogue\.py"):
        gen_typing.render(source, Catalogue((*CATALOGUE.families, invoice)))


def test_a_router_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="generated blocks"):
        gen_typing.render("def on(): ...\n")
