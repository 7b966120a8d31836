"""Write the typed ``on()`` overloads in `iverton_webhooks._router` from the catalogue.

The type checker needs the event names as ``Literal`` strings, so they are spelled out in
``_router.py`` between ``# <generated:...>`` markers. After adding a family to
`iverton_webhooks._catalogue`, run::

    python -m tools.gen_typing          # rewrite _router.py
    python -m tools.gen_typing --check  # exit 1 if _router.py is stale

``tests/test_typing.py`` fails while the catalogue and the overloads disagree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from iverton_webhooks._catalogue import CATALOGUE, Catalogue, Family

# The checkout's source, which this script rewrites (not an installed copy).
ROUTER = Path(__file__).resolve().parent.parent / "iverton_webhooks" / "_router.py"
_BLOCK = re.compile(
    r"(?P<open>^(?P<indent>[ ]*)# <generated:(?P<name>[a-z-]+)>\n)"
    r"(?P<body>.*?)"
    r"(?P<close>^[ ]*# </generated:(?P=name)>\n)",
    re.MULTILINE | re.DOTALL,
)


def _title(family: Family) -> str:
    # "email_list" -> "EmailList": the prefix of the Literal alias and the TypeVar.
    return "".join(part.capitalize() for part in re.split(r"[^a-zA-Z0-9]+", family.name))


def _model_ref(family: Family) -> str:
    # _router.py imports the catalogue module, so a model must be defined there.
    if family.model.__module__ != "iverton_webhooks._catalogue":
        raise ValueError(f"family {family.name!r}: its model must live in _catalogue.py")
    return f"catalogue.{family.model.__qualname__}"


def render_names(catalogue: Catalogue) -> list[str]:
    """Per family: the ``Literal`` of its names and the TypeVar of its handlers."""
    lines = []
    for family in catalogue.families:
        title = _title(family)
        lines.append(f"{title}Name = Literal[")
        lines.extend(f'    "{name}",' for name in (f"{family.name}.*", *family.types))
        lines.append("]")
        lines.append(f"{title}Handler = TypeVar(")
        lines.append(f'    "{title}Handler",')
        handler = f"Callable[[Event[{_model_ref(family)}]], HandlerResult]"
        lines.append(f'    bound="{handler} | AnyEventHandler",')
        lines.append(")")
    return lines


def _overloads(catalogue: Catalogue, self_arg: str) -> list[str]:
    lines = []
    for family in catalogue.families:
        title = _title(family)
        lines += [
            "@overload",
            "def on(",
            f"    {self_arg}name: {title}Name, /, *names: {title}Name, newest_only: bool = ...",
            f") -> Callable[[{title}Handler], {title}Handler]: ...",
        ]
    # Anything else (several families, "*", a name this version does not know): any event.
    lines += [
        "@overload",
        "def on(",
        f"    {self_arg}*names: str, newest_only: bool = ...",
        ") -> Callable[[AnyHandler], AnyHandler]: ...",
    ]
    return lines


def render_method(catalogue: Catalogue) -> list[str]:
    """The overloads of `Router.on`."""
    return _overloads(catalogue, "self, ")


def render_function(catalogue: Catalogue) -> list[str]:
    """The overloads of the module-level `on`."""
    return _overloads(catalogue, "")


RENDERERS: dict[str, Callable[[Catalogue], list[str]]] = {
    "names": render_names,
    "method": render_method,
    "function": render_function,
}


def render(source: str, catalogue: Catalogue = CATALOGUE) -> str:
    """``source`` (_router.py's text) with every generated block rewritten from ``catalogue``."""
    seen: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name, indent = match["name"], match["indent"]
        seen.add(name)
        # fmt: off keeps ruff format from re-wrapping the lines differently per name length.
        body = ["# fmt: off", *RENDERERS[name](catalogue), "# fmt: on"]
        text = "".join(f"{indent}{line}\n" if line else "\n" for line in body)
        return f"{match['open']}{text}{match['close']}"

    result = _BLOCK.sub(fill, source)
    missing = set(RENDERERS) - seen
    if missing:
        raise ValueError(f"_router.py lacks the generated blocks {sorted(missing)}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite _router.py, or with ``--check`` report (exit 1) whether it is stale."""
    args = list(sys.argv[1:] if argv is None else argv)
    current = ROUTER.read_text(encoding="utf-8")
    wanted = render(current)
    if current == wanted:
        print(f"{ROUTER.name} is up to date with the catalogue")
        return 0
    if "--check" in args:
        print(f"{ROUTER.name} is stale: run python -m tools.gen_typing")
        return 1
    ROUTER.write_text(wanted, encoding="utf-8")
    print(f"rewrote the typed overloads in {ROUTER.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
