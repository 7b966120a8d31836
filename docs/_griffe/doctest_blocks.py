"""A Griffe extension for the API reference: doctest blocks in docstrings become fenced
``pycon`` code blocks before mkdocstrings renders them.

The docstrings are Markdown to mkdocstrings, and a bare doctest is not: ``>>>`` reads as
a nested quote, and its lines as Markdown, so ``[60, 180, 540]`` under a line ending in
``]`` or ``event["data"]["email"]`` is a ``[title][identifier]`` cross-reference that
mkdocs-autorefs cannot resolve (a warning, fatal under ``--strict``). Griffe's own doctest
support covers an ``Examples:`` section of Google or NumPy docstrings only, while ours
hold doctests anywhere, as pytest's ``--doctest-modules`` runs them; fencing them here
keeps the docstrings as they are and renders every block as code.
"""

from __future__ import annotations

from typing import Any

import griffe

FENCE = "```"


def fence_doctests(text: str) -> str:
    """``text`` with each doctest block (a ``>>>`` line up to the next blank line, as
    doctest reads it) wrapped in a ``pycon`` fence; text inside fences is left alone.

    >>> fence_doctests("Delays:\\n>>> [1, 2][0]\\n1\\n\\nDone.").splitlines()
    ['Delays:', '', '```pycon', '>>> [1, 2][0]', '1', '```', '', 'Done.']
    """
    lines = text.splitlines()
    out: list[str] = []
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip()
        if stripped.startswith(FENCE):
            in_fence = not in_fence
        elif not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while index < len(lines) and lines[index].strip():
                block.append(lines[index])
                index += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}{FENCE}pycon", *block, f"{indent}{FENCE}"]
            continue
        out.append(line)
        index += 1
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the doctest blocks of every docstring Griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
