from __future__ import annotations

import pytest

from iverton_webhooks import Event, Router


def noop(event: Event) -> None:
    pass


def names(router: Router, event_type: str) -> list[str]:
    return [h.func.__name__ for h in router.handlers_for(event_type)]


def test_exact_family_and_all_match_in_registration_order() -> None:
    router = Router()

    @router.on("*")
    def everything(event: Event) -> None: ...

    @router.on("deal.*")
    def deals(event: Event) -> None: ...

    @router.on("deal.won")
    def won(event: Event) -> None: ...

    assert names(router, "deal.won") == ["everything", "deals", "won"]
    assert names(router, "deal.lost") == ["everything", "deals"]
    assert names(router, "contact.created") == ["everything"]
    assert names(router, "invoice.paid") == ["everything"]


def test_a_handler_registered_for_overlapping_names_runs_once() -> None:
    router = Router()
    router.on("deal.won", "deal.*", "*")(noop)
    router.on("deal.won")(noop)
    assert names(router, "deal.won") == ["noop"]


def test_several_handlers_on_one_event_all_match() -> None:
    router = Router()

    @router.on("email.bounced", "email.complained")
    def suppress(event: Event) -> None: ...

    @router.on("email.bounced")
    async def alert(event: Event) -> None: ...

    handlers = router.handlers_for("email.bounced")
    assert [h.func.__name__ for h in handlers] == ["suppress", "alert"]
    assert [h.is_async for h in handlers] == [False, True]
    assert names(router, "email.complained") == ["suppress"]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("deal.wonn", "deal.won"), ("contact.create", "contact.created"), ("deals.*", "deal.*")],
)
def test_strict_router_refuses_unknown_names_with_a_suggestion(name: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean '{suggestion}'"):
        Router().on(name)


@pytest.mark.parametrize("name", ["", "zzz", "deal.", "*.won"])
def test_strict_router_refuses_nonsense(name: str) -> None:
    with pytest.raises(ValueError, match="event name"):
        Router().on(name)


def test_on_needs_a_name_and_names_are_strings() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Router().on()
    with pytest.raises(ValueError, match="non-empty strings"):
        Router().on(None)  # type: ignore[arg-type]


def test_non_strict_router_accepts_future_types() -> None:
    router = Router(strict=False)
    router.on("invoice.paid")(noop)
    assert names(router, "invoice.paid") == ["noop"]


def test_include_composes_live_and_refuses_cycles() -> None:
    parent, child = Router(), Router()
    parent.include(child)

    @child.on("deal.won")
    def registered_after_include(event: Event) -> None: ...

    assert names(parent, "deal.won") == ["registered_after_include"]
    with pytest.raises(ValueError, match="cycle"):
        child.include(parent)
    with pytest.raises(ValueError, match="cycle"):
        parent.include(parent)


def test_handler_names_are_stable_and_distinct() -> None:
    router = Router()
    router.on("deal.won")(noop)

    def noop_two(event: Event) -> None: ...

    router.add(noop_two, "deal.won", name="custom.name")
    assert [h.name for h in router.handlers_for("deal.won")] == [
        f"{noop.__module__}.noop",
        "custom.name",
    ]


def test_decorator_returns_the_function_unchanged() -> None:
    assert Router().on("deal.won")(noop) is noop


def test_clear_forgets_everything() -> None:
    router = Router()
    router.on("*")(noop)
    router.include(Router())
    router.clear()
    assert router.handlers_for("deal.won") == []


def test_on_returns_the_function_itself_sync_or_async() -> None:
    # The typed overloads are for the checker only: at run time the decorator hands
    # back the very function it registered, for every kind of name.
    router = Router(strict=False)

    async def later(event: Event) -> None: ...

    for names in (("deal.won",), ("deal.*", "deal.lost"), ("*",), ("deal.won", "contact.*")):
        assert router.on(*names)(noop) is noop
        assert router.on(*names)(later) is later
    assert router.on("invoice.paid")(noop) is noop
    assert [h.is_async for h in router.handlers_for("deal.won")] == [False, True]


def test_handlers_lists_every_handler_once_with_included_routers() -> None:
    router, billing = Router(), Router()
    first = router.add(print, "deal.won", "deal.lost", name="first")
    second = billing.add(print, "*", name="second", newest_only=True)
    router.include(billing)
    assert router.handlers() == [first, second]
    assert [h.newest_only for h in router.handlers()] == [False, True]
    assert Router().handlers() == []
