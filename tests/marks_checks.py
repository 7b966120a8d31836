"""Checks of `ResourceMarks` shared by the Redis and Django tests: a test class
subclasses `MarksChecks` and provides the ``store`` and ``clock`` fixtures and
`race_stores`."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

from iverton_webhooks.inbox.base import MarkAnswer, MarkKey, ResourceMarks

RUN, SUPERSEDED, BUSY = MarkAnswer.RUN, MarkAnswer.SUPERSEDED, MarkAnswer.BUSY
KEY = MarkKey("default", "deal/d_1", "sync_deal")
T0 = 1_700_000_000.123456
#: Two created_at values one ulp apart near T0: stored or compared with fewer than 17
#: significant digits, they would be the same time.
LATER = T0 + 2.384185791015625e-07
RACERS = 8
ROUNDS = 20


class Clock:
    def __init__(self, now: float = 1_800_000_000.654321) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MarksChecks:
    """What every `ResourceMarks` store must do. Subclasses provide the fixtures
    ``store`` (a `ResourceMarks` whose clock is ``clock``) and ``clock`` (a `Clock`)."""

    def racer(self, store: ResourceMarks) -> AbstractContextManager[ResourceMarks]:
        """Entered in a racing thread: a store of ``store``'s inbox on that thread's own
        connection."""
        raise NotImplementedError

    def test_the_first_event_runs_and_an_older_one_is_superseded(
        self, store: ResourceMarks
    ) -> None:
        assert store.take_mark(KEY, LATER, "evt_2", "w1", 30) is RUN
        store.release_mark(KEY, "w1", (LATER, "evt_2"))
        assert store.take_mark(KEY, T0, "evt_1", "w2", 30) is SUPERSEDED

    def test_the_same_event_again_is_superseded(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        store.release_mark(KEY, "w1", (T0, "evt_1"))
        assert store.take_mark(KEY, T0, "evt_1", "w2", 30) is SUPERSEDED
        # Even presented as newer: the id decides that it is the same event.
        assert store.take_mark(KEY, LATER, "evt_1", "w2", 30) is SUPERSEDED

    def test_a_newer_event_and_one_of_the_same_time_run(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        store.release_mark(KEY, "w1", (T0, "evt_1"))
        assert store.take_mark(KEY, T0, "evt_same_time", "w2", 30) is RUN
        store.release_mark(KEY, "w2", (T0, "evt_same_time"))
        assert store.take_mark(KEY, LATER, "evt_2", "w3", 30) is RUN

    def test_busy_while_another_holder_holds_it(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        assert store.take_mark(KEY, LATER, "evt_2", "w2", 30) is BUSY
        # The holder itself may take it again (a redelivery of its own claim).
        assert store.take_mark(KEY, LATER, "evt_2", "w1", 30) is RUN

    def test_superseded_wins_over_busy(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, LATER, "evt_2", "w1", 30) is RUN
        store.release_mark(KEY, "w1", (LATER, "evt_2"))
        assert store.take_mark(KEY, LATER, "evt_3", "w2", 30) is RUN
        assert store.take_mark(KEY, T0, "evt_1", "w3", 30) is SUPERSEDED

    def test_runs_once_the_hold_ran_out(self, store: ResourceMarks, clock: Clock) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        clock.now += 29.5
        assert store.take_mark(KEY, LATER, "evt_2", "w2", 30) is BUSY
        clock.now += 1
        assert store.take_mark(KEY, LATER, "evt_2", "w2", 30) is RUN
        assert store.take_mark(KEY, LATER, "evt_2", "w1", 30) is BUSY  # w2 holds it now

    def test_renew_extends_the_hold_of_its_holder_only(
        self, store: ResourceMarks, clock: Clock
    ) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        assert store.renew_mark(KEY, "w2", 300) is False
        clock.now += 20
        assert store.renew_mark(KEY, "w1", 30) is True
        clock.now += 20  # past the first hold, within the renewed one
        assert store.take_mark(KEY, LATER, "evt_2", "w2", 30) is BUSY

    def test_renew_by_a_holder_that_lost_the_mark_is_false(
        self, store: ResourceMarks, clock: Clock
    ) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        clock.now += 31
        assert store.take_mark(KEY, LATER, "evt_2", "w2", 30) is RUN
        assert store.renew_mark(KEY, "w1", 30) is False
        other = MarkKey(KEY.endpoint, KEY.resource, "never_taken")
        assert store.renew_mark(other, "w1", 30) is False

    def test_release_ends_the_hold(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        store.release_mark(KEY, "w1", None)
        assert store.take_mark(KEY, T0, "evt_1", "w2", 30) is RUN

    def test_release_without_applied_keeps_the_applied_event(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
        store.release_mark(KEY, "w1", (T0, "evt_1"))
        assert store.take_mark(KEY, LATER, "evt_2", "w2", 30) is RUN
        store.release_mark(KEY, "w2", None)  # its handler failed
        assert store.take_mark(KEY, T0, "evt_1", "w3", 30) is SUPERSEDED
        store.release_mark(KEY, "w3", None)
        assert store.take_mark(KEY, LATER, "evt_2", "w3", 30) is RUN

    def test_release_never_moves_the_applied_event_back(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, LATER, "evt_2", "w1", 30) is RUN
        store.release_mark(KEY, "w1", (LATER, "evt_2"))
        store.release_mark(KEY, "w2", (T0, "evt_1"))  # a slow, older handler finishing
        assert store.take_mark(KEY, LATER, "evt_2", "w3", 30) is SUPERSEDED
        assert store.take_mark(KEY, T0, "evt_0", "w3", 30) is SUPERSEDED

    def test_release_by_a_holder_that_lost_the_mark(
        self, store: ResourceMarks, clock: Clock
    ) -> None:
        assert store.take_mark(KEY, LATER, "evt_2", "w1", 30) is RUN
        clock.now += 31
        assert store.take_mark(KEY, T0, "evt_1", "w2", 30) is RUN
        # w1's handler did apply evt_2: it counts, but w2 keeps its hold.
        store.release_mark(KEY, "w1", (LATER, "evt_2"))
        assert store.take_mark(KEY, LATER, "evt_2", "w3", 30) is SUPERSEDED
        assert store.take_mark(KEY, LATER + 1, "evt_3", "w3", 30) is BUSY
        assert store.renew_mark(KEY, "w2", 30) is True

    def test_odd_text_in_every_key_field_round_trips(self, store: ResourceMarks) -> None:
        odd = ("\ud83d", "a\x00b", "é:/%")
        for text in odd:
            for key in (
                MarkKey(text, KEY.resource, KEY.handler),
                MarkKey(KEY.endpoint, text, KEY.handler),
                MarkKey(KEY.endpoint, KEY.resource, text),
            ):
                assert store.take_mark(key, T0, "evt_1", text, 30) is RUN
                assert store.renew_mark(key, text, 30) is True
                store.release_mark(key, text, (T0, text))
                assert store.take_mark(key, T0, text, "w", 30) is SUPERSEDED
                assert store.take_mark(key, T0, "evt_1", "w", 30) is RUN
        # Each key was its own mark: a fresh one still runs.
        assert store.take_mark(KEY, T0, "\ud83d", "w", 30) is RUN

    def test_endpoints_resources_and_handlers_are_separate(self, store: ResourceMarks) -> None:
        assert store.take_mark(KEY, LATER, "evt_2", "w1", 30) is RUN
        store.release_mark(KEY, "w1", (LATER, "evt_2"))
        for other in (
            MarkKey("billing", KEY.resource, KEY.handler),
            MarkKey(KEY.endpoint, "deal/d_2", KEY.handler),
            MarkKey(KEY.endpoint, KEY.resource, "other_handler"),
        ):
            assert store.take_mark(other, T0, "evt_1", "w2", 30) is RUN

    def test_one_of_many_racing_takers_runs(self, store: ResourceMarks) -> None:
        for round_ in range(ROUNDS):
            key = MarkKey("default", f"deal/race_{round_}", "sync_deal")
            barrier = threading.Barrier(RACERS, timeout=10)

            def take(n: int, key: MarkKey = key, barrier: threading.Barrier = barrier) -> str:
                with self.racer(store) as racer:
                    barrier.wait()
                    return racer.take_mark(key, T0, f"evt_{n}", f"w{n}", 30).value

            with ThreadPoolExecutor(RACERS) as pool:
                answers = list(pool.map(take, range(RACERS)))
            assert answers.count("run") == 1, (round_, answers)
            assert answers.count("busy") == RACERS - 1, (round_, answers)
