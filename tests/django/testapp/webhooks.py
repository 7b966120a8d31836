"""Found by autodiscovery. Handlers go on a private router (named by the ROUTER setting),
so the rest of the test session's default_router stays untouched."""

from __future__ import annotations

from iverton_webhooks import Event, Router

router = Router()
#: (handler name, event id) for every call, in order
calls: list[tuple[str, str]] = []
#: names of handlers that raise until removed from here
broken: set[str] = set()


def _run(name: str, event: Event) -> None:
    calls.append((name, event.id))
    if name in broken:
        raise RuntimeError(f"{name} is broken")


@router.on("*")
def audit(event: Event) -> None:
    _run("audit", event)


@router.on("deal.won")
def celebrate(event: Event) -> None:
    _run("celebrate", event)
