"""The documentation site (docs/, mkdocs.yml) runs, and the release files are in order.

Every ``python`` block of every page executes, collected with tests/test_readme.py's
collector:

- a plain block is executed as the README's are (in a temporary directory, with
  ``IVERTON_WEBHOOK_SECRET`` set);
- a block that defines ``test_*`` functions is run as a test file in a pytester session,
  with the plugin's fixtures, as a user's suite would run it;
- a block after ``<!-- project test: FRAMEWORK -->`` is the test file of a quickstart's
  project: tests/test_testing_your_app.py builds the project and runs it there;
- the Django quickstart's blocks (each after a ``<!-- django: FILE -->`` comment) are
  written into a scratch Django project, which is migrated and then sent a signed
  event through Django's test client: the handler must run.

A block needing a framework that is not installed is skipped with the reason.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import iverton_webhooks
from iverton_webhooks import Receiver, default_router

# Imported here, before any test takes pytester's sys.modules snapshot, so the modules
# the blocks use are not dropped and imported afresh between tests.
assert Receiver

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MKDOCS = ROOT / "mkdocs.yml"


def _load_readme_collector() -> ModuleType:
    # tests/ may or may not be a package; load the README's test module by path.
    name = "_iverton_readme_collector"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_readme.py"))
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


readme = _load_readme_collector()
SECRET: str = readme.SECRET
FRAMEWORKS: set[str] = readme.FRAMEWORKS


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def doc_blocks() -> list[tuple[Path, object, str | None]]:
    """(page, block, django file name or None) for every python block of the site."""
    found = []
    for page in pages():
        lines = page.read_text().splitlines()
        for block in readme.blocks(page.read_text()):
            before = lines[block.line - 2].strip() if block.line >= 2 else ""
            django = re.fullmatch(r"<!-- django: (\S+) -->", before)
            if re.fullmatch(r"<!-- project test: \w+ -->", before):
                continue  # tests/test_testing_your_app.py runs it in its project
            found.append((page, block, django and django.group(1)))
    return found


BLOCKS = doc_blocks()
PLAIN = [(page, block) for page, block, django in BLOCKS if not django]
DJANGO = [(page, block, name) for page, block, name in BLOCKS if name]


def block_id(page: Path, block: object) -> str:
    return f"{page.relative_to(ROOT)}:{block.line}"  # type: ignore[attr-defined]


def missing_framework(code: str) -> str | None:
    """The first framework the block imports that is not installed."""
    for module in re.findall(r"^\s*(?:from|import)\s+(\w+)", code, re.M):
        if module in FRAMEWORKS and importlib.util.find_spec(module) is None:
            return module
    return None


@pytest.fixture
def clean_default_router() -> Iterator[None]:
    handlers = {key: list(value) for key, value in default_router._handlers.items()}
    included = list(default_router._included)
    yield
    default_router._handlers.clear()
    default_router._handlers.update(handlers)
    default_router._included[:] = included


def is_test_file(code: str) -> bool:
    return re.search(r"^(def test_|class Test)", code, re.M) is not None


CODE = [(page, block) for page, block in PLAIN if not is_test_file(block.code)]  # type: ignore[attr-defined]
TEST_FILES = [(page, block) for page, block in PLAIN if is_test_file(block.code)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("page", "block"), CODE, ids=[block_id(p, b) for p, b in CODE])
@pytest.mark.usefixtures("clean_default_router")
def test_docs_block_runs(
    page: Path, block: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code: str = block.code  # type: ignore[attr-defined]
    assert not block.skip, "the docs have no skipped blocks"  # type: ignore[attr-defined]
    if missing := missing_framework(code):
        pytest.skip(f"needs {missing}")
    monkeypatch.chdir(tmp_path)  # a default SQLite inbox lands here
    monkeypatch.setenv("IVERTON_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}_{block.line}"}  # type: ignore[attr-defined]
    try:
        exec(compile(code, block_id(page, block), "exec"), namespace)
    finally:
        for value in namespace.values():
            if type(value).__name__ == "Receiver":
                value.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("page", "block"), TEST_FILES, ids=[block_id(p, b) for p, b in TEST_FILES])
def test_docs_test_file_passes(page: Path, block: object, pytester: pytest.Pytester) -> None:
    """A block that is a test file, as the user would write it: run with the plugin."""
    code: str = block.code  # type: ignore[attr-defined]
    if missing := missing_framework(code):
        pytest.skip(f"needs {missing}")
    pytester.makepyfile(**{f"test_docs_{page.stem}_{block.line}": code})  # type: ignore[attr-defined]
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:django")
    outcomes = result.parseoutcomes()
    assert not outcomes.get("failed"), result.stdout.str()
    assert not outcomes.get("errors"), result.stdout.str()
    if "StoreContract" in code:
        assert outcomes.get("passed", 0) > 10, result.stdout.str()  # the whole contract ran
    else:
        assert outcomes.get("passed") == len(re.findall(r"^def test_", code, re.M))


DJANGO_RUN = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "docsproject.settings"
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
call_command("check")
import docsproject.handlers  # the page says: a module Django imports at start-up
from django.test import Client
from iverton_webhooks.testing import signed_delivery, post_delivery
client = Client()
delivery = signed_delivery("deal.won", os.environ["IVERTON_WEBHOOK_SECRET"])
for expected in ("accepted", "duplicate"):
    reply = post_delivery(client, "/webhooks/iverton/", delivery)
    assert reply.status_code == 200, (reply.status_code, reply.content)
    assert reply.json() == {"status": expected}, reply.content
print("ok")
"""

DJANGO_SETTINGS_TAIL = """
# Added by tests/test_docs.py around the page's settings: a runnable project.
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
] + [app for app in INSTALLED_APPS if app is not ...]
IVERTON_WEBHOOKS = {**IVERTON_WEBHOOKS, "RUNNER": "inline"}
SECRET_KEY = "docs-test-only"
ROOT_URLCONF = "docsproject.urls"
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "docs.sqlite3"}}
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="needs django")
def test_django_quickstart_runs_as_a_project(tmp_path: Path) -> None:
    files = {name: block.code for _, block, name in DJANGO}  # type: ignore[attr-defined]
    assert set(files) == {"settings.py", "urls.py", "handlers.py"}, set(files)
    package = tmp_path / "docsproject"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(files["settings.py"] + DJANGO_SETTINGS_TAIL)
    (package / "urls.py").write_text(files["urls.py"])
    # The handler prints; the run checks the print reached stdout.
    (package / "handlers.py").write_text(files["handlers.py"])
    proc = subprocess.run(
        [sys.executable, "-c", DJANGO_RUN],
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "IVERTON_WEBHOOK_SECRET": SECRET,
            "PYTHONPATH": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("won deal_") == 1, proc.stdout  # once: the second is a duplicate
    assert proc.stdout.rstrip().endswith("ok")


def test_every_page_has_runnable_blocks_or_none_by_design() -> None:
    with_code = {page.relative_to(DOCS).as_posix() for page, _, _ in BLOCKS}
    for needed in (
        "index.md",
        "quickstart/django.md",
        "quickstart/flask.md",
        "quickstart/starlette.md",
        "quickstart/wsgi.md",
        "handlers.md",
        "payloads.md",
        "stores.md",
        "runners.md",
        "operations.md",
        "monitoring.md",
        "testing.md",
        "deploying.md",
        "security.md",
    ):
        assert needed in with_code, needed
    # No block escapes the collector.
    for page in pages():
        assert page.read_text().count("```python") == len(readme.blocks(page.read_text()))
    project_tests = re.findall(
        r"<!-- project test: (\w+) -->\n```python", (DOCS / "testing.md").read_text()
    )
    assert sorted(project_tests) == ["django", "flask", "starlette"]


def test_nav_lists_every_page() -> None:
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", MKDOCS.read_text(), re.M))
    on_disk = {page.relative_to(DOCS).as_posix() for page in pages()}
    assert listed == on_disk


def test_payload_table_matches_the_catalogue() -> None:
    text = (DOCS / "payloads.md").read_text()
    match = re.search(
        r"<!-- payload-table:start[^>]*-->\n(.*?)\n<!-- payload-table:end -->", text, re.S
    )
    assert match, "docs/payloads.md lost its payload table markers"
    assert match.group(1) == readme.payload_table(), "regenerate with readme.payload_table()"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra")
def test_site_builds_strict(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    # The API reference really comes from the docstrings.
    assert "Verifies, records and hands off Iverton webhook requests" in reference


# Release hygiene ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel and sdist, built as a release would be (python -m build)."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("needs the build package (the dev extra)")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.mark.slow
def test_license_ships_in_wheel_and_sdist(built: dict[str, Path]) -> None:
    import tarfile

    with zipfile.ZipFile(built["wheel"]) as wheel:
        licenses = [n for n in wheel.namelist() if n.endswith("/LICENSE")]
        assert licenses, wheel.namelist()
        assert "MIT License" in wheel.read(licenses[0]).decode()
        metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA")))
    text = metadata.decode()
    assert "License-Expression: MIT" in text
    assert f"\nVersion: {iverton_webhooks.__version__}\n" in text
    with tarfile.open(built["sdist"]) as sdist:
        names = sdist.getnames()
    assert any(n.endswith("/LICENSE") for n in names), names
    assert any(n.endswith("/CHANGELOG.md") for n in names), names


def test_license_is_mit_with_the_authors_line() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the iverton-webhooks authors" in text


def test_one_version_source() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject, re.M)
    assert 'path = "iverton_webhooks/__init__.py"' in pyproject
    from importlib.metadata import version

    # The installed metadata was built from __version__ (reinstall after changing it).
    assert version("iverton-webhooks") == iverton_webhooks.__version__


def test_changelog_has_this_wave_and_the_first_release() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## 0.2.0 (unreleased)" in text
    assert "## 0.1.0" in text
    assert iverton_webhooks.__version__.startswith("0.2.0")


def _pyproject() -> dict[str, object]:
    if importlib.util.find_spec("tomllib") is None:
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def test_classifiers_name_the_tested_versions() -> None:
    classifiers = set(_pyproject()["classifiers"])  # type: ignore[call-overload]
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Development Status :: 4 - Beta" in classifiers
    assert "Typing :: Typed" in classifiers
    assert {"Framework :: Flask", "Framework :: FastAPI"} <= classifiers
    # Each Django series tox.ini tests is a classifier, and no other.
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    tested = {
        match
        for section in tox.sections()
        for match in re.findall(r"Django>=(\d+\.\d+)", tox[section].get("deps", ""))
    }
    declared = {
        c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith("Framework :: Django ::")
    }
    assert tested == declared


def test_project_urls_and_no_bench_extra() -> None:
    project = _pyproject()
    assert project.get("urls"), "Project-URLs missing"
    extras: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    assert "bench" not in extras
    users = [requirement for name, group in extras.items() for requirement in group]
    assert not [r for r in users if re.match(r"(svix|stripe|standardwebhooks)\b", r)]
    assert any(r.startswith("mkdocs") for r in extras["docs"])
    assert "docs" in extras["dev"][0]
    requirements = (ROOT / "benchmarks" / "requirements.txt").read_text()
    for peer in ("svix", "stripe", "standardwebhooks"):
        assert peer in requirements
    assert "benchmarks/requirements.txt" in (ROOT / "benchmarks" / "README.md").read_text()


def test_ci_builds_the_docs_strict() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"mkdocs\" build --strict", ci)


def test_docs_extra_is_what_the_site_needs() -> None:
    # The plugins mkdocs.yml names are the ones the docs extra installs.
    config = MKDOCS.read_text()
    assert "name: material" in config
    assert "mkdocstrings" in config
    assert textwrap.dedent(config).count("strict: true") == 1
