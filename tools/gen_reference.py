"""Write ``docs/reference.md`` from the public API: the names in
`iverton_webhooks.PUBLIC` by section, then each public module's ``__all__``.

A name exported by the package is documented once, under its section; a public module's
section lists what it adds. Run after changing ``PUBLIC`` or a public module's
``__all__``::

    python -m tools.gen_reference          # rewrite docs/reference.md
    python -m tools.gen_reference --check  # exit 1 if it is stale

``tests/test_public_api.py`` fails while the page and the API disagree.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from pathlib import Path

from iverton_webhooks import PUBLIC

# The checkout this script lives in, whichever copy of the package is installed: it
# reads the source and writes the page kept beside it.
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "iverton_webhooks"
PAGE = ROOT / "docs" / "reference.md"

#: The public modules and what each is for, in the page's order. Every other module of
#: the package is private (its name starts with ``_``) or belongs to an adapter's
#: framework (the Django app's models, admin, checks).
MODULES: tuple[tuple[str, str], ...] = (
    ("Writing a store", "iverton_webhooks.inbox"),
    ("Writing a store", "iverton_webhooks.store_contract"),
    ("Writing a runner", "iverton_webhooks.runners"),
    ("Parsing events", "iverton_webhooks.events"),
    ("Hooks and telemetry", "iverton_webhooks.hooks"),
    ("Hooks and telemetry", "iverton_webhooks.telemetry"),
    ("Adapters", "iverton_webhooks.adapter"),
    ("Adapters", "iverton_webhooks.wsgi"),
    ("Adapters", "iverton_webhooks.contrib.flask"),
    ("Adapters", "iverton_webhooks.contrib.starlette"),
    ("Adapters", "iverton_webhooks.contrib.fastapi"),
    ("Adapters", "iverton_webhooks.contrib.django.views"),
    ("Adapters", "iverton_webhooks.contrib.django.urls"),
    ("Adapters", "iverton_webhooks.contrib.django.task_runner"),
    ("Adapters", "iverton_webhooks.contrib.celery"),
    ("Samples and testing", "iverton_webhooks.samples"),
    ("Samples and testing", "iverton_webhooks.testing"),
)

_INTRO = """\
# API reference

Generated from the docstrings by `python -m tools.gen_reference`: first
everything `import iverton_webhooks` offers, then what each public module adds. Modules
whose names start with `_` are internal and may change in any release.
"""


def render() -> str:
    exported = {name for _, _, names in PUBLIC for name in names}
    blocks: list[str] = [_INTRO]
    section = ""
    for title, _, names in PUBLIC:
        if title != section:
            blocks.append(f"## {title}\n")
            section = title
        blocks.extend(f"::: iverton_webhooks.{name}\n" for name in names)
    for title, module in MODULES:
        members = [name for name in public_names(module) if name not in exported]
        if not members:
            continue
        if title != section:
            blocks.append(f"## {title}\n")
            section = title
        blocks.append(f"::: {module}\n    options:\n      members: [{', '.join(members)}]\n")
    return "\n".join(blocks)


def public_names(module: str) -> list[str]:
    """``module.__all__``, read from its source (importing the Django app's modules would
    need a configured project); a public module without one is an error, not a guess."""
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise ValueError(f"{module} is public but has no literal __all__")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    text = render()
    if "--check" in args:
        if PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is stale: run python -m tools.gen_reference")
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
