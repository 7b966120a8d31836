"""epoch_seconds (what a store records as an event's created_at) is exactly
``datetime.timestamp()``, in any zone and as the zone changes from one call to the next."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import epoch_seconds


def _parsed(created: str) -> datetime:
    body = {"id": "e", "type": "deal.won", "created_at": created, "data": {"id": "d"}}
    return parse_envelope(json.dumps(body).encode()).created_at


# The parser's own fixed-offset zone type (pydantic-core's TzInfo), however it is exported.
TzInfo: type = type(_parsed("2026-11-30T08:00:01Z").tzinfo)

ZONES: list[tzinfo | None] = [
    timezone.utc,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-11)),
    TzInfo(0),
    TzInfo(-3600),
    TzInfo(50400),
    ZoneInfo("Europe/Paris"),  # daylight saving: never a difference within the zone
    ZoneInfo("America/St_Johns"),
    None,  # naive: local time, as timestamp() has it
]


@given(
    st.lists(
        st.tuples(
            st.datetimes(
                min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), allow_imaginary=False
            ),
            st.sampled_from(ZONES),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_epoch_seconds_is_timestamp_in_every_zone(moments: list[tuple[datetime, tzinfo]]) -> None:
    for wall, zone in moments:  # several in a row: the zone kept from one call changes
        moment = wall.replace(tzinfo=zone)
        try:
            expected = moment.timestamp()
        except (OverflowError, OSError, ValueError):
            continue  # a naive time the platform's local time cannot convert
        assert epoch_seconds(moment) == expected, (moment, zone)


def test_a_parsed_created_at_gives_the_same_epoch_as_timestamp() -> None:
    for created in (
        "2026-11-30T08:00:01.123456Z",
        "2024-02-29T23:59:59+05:30",
        "1970-01-01T00:00:00Z",
    ):
        body = {"id": "e", "type": "deal.won", "created_at": created, "data": {"id": "d"}}
        moment = parse_envelope(json.dumps(body).encode()).created_at
        assert epoch_seconds(moment) == moment.timestamp()
        # (Python 3.10's fromisoformat takes no "Z".)
        iso = created.replace("Z", "+00:00")
        assert epoch_seconds(moment) == datetime.fromisoformat(iso).timestamp()
