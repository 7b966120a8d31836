"""The public API is one table (`iverton_webhooks.PUBLIC`): ``__all__``, the lazy loader,
the imports type checkers read and the API reference all follow from it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

import iverton_webhooks
from tools import gen_reference

PACKAGE = Path(iverton_webhooks.__file__).parent
# The checkout's page (tox runs these tests against an installed package).
PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"


def type_checking_imports() -> dict[str, str]:
    """Name -> module of each import under ``if TYPE_CHECKING:`` in the package."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for item in node.body:
                assert isinstance(item, ast.ImportFrom), ast.dump(item)
                assert item.level == 1, "relative imports of the package's own modules"
                for alias in item.names:
                    assert alias.asname == alias.name, f"{alias.name}: a re-export says `as`"
                    found[alias.name] = f"iverton_webhooks.{item.module}"
    return found


def test_the_type_checking_imports_mirror_the_table() -> None:
    table = {name: module for _, module, names in iverton_webhooks.PUBLIC for name in names}
    assert type_checking_imports() == table


def test_all_is_every_name_of_the_table_once() -> None:
    names = [name for _, _, group in iverton_webhooks.PUBLIC for name in group]
    assert len(names) == len(set(names))
    assert sorted(iverton_webhooks.__all__) == sorted(names)


@pytest.mark.parametrize("name", iverton_webhooks.__all__)
def test_each_name_loads_from_its_module(name: str) -> None:
    module = dict(type_checking_imports())[name]
    assert getattr(iverton_webhooks, name) is getattr(import_module(module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Recevier'"):
        iverton_webhooks.Recevier  # noqa: B018


def test_importing_the_package_loads_none_of_its_modules() -> None:
    # The pytest plugin imports the package in every user's test session.
    code = (
        "import sys, iverton_webhooks; "
        "print(sorted(m for m in sys.modules if m.startswith('iverton_webhooks.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_reference_page_is_generated_from_the_api() -> None:
    assert PAGE.read_text(encoding="utf-8") == gen_reference.render(), (
        "docs/reference.md is stale: run python -m tools.gen_reference"
    )


def test_the_reference_documents_every_public_name_and_no_private_module() -> None:
    page = PAGE.read_text(encoding="utf-8")
    targets = re.findall(r"^::: (\S+)", page, re.MULTILINE)
    assert not [t for t in targets if any(part.startswith("_") for part in t.split("."))]
    for name in iverton_webhooks.__all__:
        assert f"::: iverton_webhooks.{name}\n" in page
    for _, module in gen_reference.MODULES:
        for name in gen_reference.public_names(module):
            assert name in page, f"{module}.{name}"


def test_a_public_module_needs_a_literal_all() -> None:
    with pytest.raises(ValueError, match="has no literal __all__"):
        gen_reference.public_names("iverton_webhooks.contrib")
