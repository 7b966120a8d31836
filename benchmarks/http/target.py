"""The app a server should load: ``benchmarks.http.target:app``.

Which one is read from the environment, set by :mod:`benchmarks.http.run`:
``IVERTON_BENCH_CASE`` (a case name of :mod:`benchmarks.apps`, e.g. ``"flask bare"``) and
``IVERTON_BENCH_WORKDIR`` (where its databases go). The app is the very object the
in-process benchmark calls, so HTTP and in-process numbers describe the same code.
"""

from __future__ import annotations

import os
from typing import Any

from ..apps import AsgiCase, WsgiCase, build_cases

_case_name = os.environ.get("IVERTON_BENCH_CASE", "flask floor")
_cases = build_cases(
    _case_name.split()[0], os.environ.get("IVERTON_BENCH_WORKDIR", "."), _case_name
)
if not _cases:
    raise RuntimeError(f"case {_case_name!r} is not available (adapter missing?)")
_case = _cases[0]
assert isinstance(_case, (WsgiCase, AsgiCase))
app: Any = _case.app
