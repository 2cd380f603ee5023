"""The trading calendar, pure (gateway.schedule.calendar): which days trade and when each point of a day falls,
in the venue's time zone, against times written out by hand; and that a wrong calendar file is a clear error."""

from __future__ import annotations

import datetime as dt
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from exchange import ConfigError
from gateway.config import PACKAGED_CONFIG, load_calendar, load_instruments
from gateway.schedule.calendar import parse_calendar

BERLIN = ZoneInfo("Europe/Berlin")
INSTRUMENTS = {"EUA": object(), "CER": object()}


def local(point_at: int) -> str:
    return dt.datetime.fromtimestamp(point_at / 1e9, BERLIN).strftime("%Y-%m-%d %H:%M %Z")


def schedule(calendar, day: dt.date, symbol: str = "EUA") -> list[tuple[str, str]]:
    return [(point.action, local(point.at)) for point in calendar.points(day) if point.instrument in (symbol, "")]


def test_a_normal_day_in_winter_and_in_summer_time():
    calendar = parse_calendar({}, INSTRUMENTS)
    assert schedule(calendar, dt.date(2026, 1, 6)) == [
        ("opening_call", "2026-01-06 07:45 CET"),
        ("continuous", "2026-01-06 08:00 CET"),
        ("settlement_window", "2026-01-06 17:50 CET"),
        ("closing_call", "2026-01-06 17:55 CET"),
        ("close", "2026-01-06 18:00 CET"),
        ("end_of_day", "2026-01-06 18:00 CET"),
    ]
    # the Monday after the change to summer time (29 March 2026): the same local times, an hour earlier in UTC
    summer = calendar.points(dt.date(2026, 3, 30))
    assert local(summer[0].at) == "2026-03-30 07:45 CEST"
    assert dt.datetime.fromtimestamp(summer[0].at / 1e9, dt.UTC).hour == 5


def test_points_come_in_the_order_they_are_carried_out():
    calendar = parse_calendar({"instruments": {"CER": {"close": "17:30"}}}, INSTRUMENTS)
    points = calendar.points(dt.date(2026, 1, 6))
    assert points == sorted(points)
    assert [(p.action, p.instrument) for p in points if p.action == "close"] == [("close", "CER"), ("close", "EUA")]
    # the end of day follows the last close, and comes after it at the same instant
    assert points[-1].action == "end_of_day" and points[-1].at == max(p.at for p in points if p.action == "close")
    assert points[-2].action == "close"


def test_weekends_and_holidays_do_not_trade_and_a_shortened_day_closes_early():
    calendar = parse_calendar(
        {"holidays": ["2026-01-01", "2026-04-03"], "short_days": {"2026-12-24": "14:00"}}, INSTRUMENTS
    )
    assert calendar.points(dt.date(2026, 1, 1)) == []  # a holiday (a Thursday)
    assert calendar.points(dt.date(2026, 1, 3)) == []  # a Saturday
    assert calendar.points(dt.date(2026, 4, 3)) == []  # Good Friday
    assert [day.isoformat() for day in islice(calendar.trading_days(dt.date(2026, 1, 1)), 3)] == [
        "2026-01-02",
        "2026-01-05",
        "2026-01-06",
    ]
    assert schedule(calendar, dt.date(2026, 12, 24))[2:] == [
        ("settlement_window", "2026-12-24 13:50 CET"),
        ("closing_call", "2026-12-24 13:55 CET"),
        ("close", "2026-12-24 14:00 CET"),
        ("end_of_day", "2026-12-24 14:00 CET"),
    ]


def test_primary_auctions_open_on_their_date_with_their_window():
    calendar = parse_calendar(
        {"auctions": [{"date": "2026-01-08", "auctioneer": "de-auctioneer", "instrument": "EUA", "volume": 3_000_000}]},
        INSTRUMENTS,
    )
    (auction,) = [point for point in calendar.points(dt.date(2026, 1, 8)) if point.action == "auction"]
    assert local(auction.at) == "2026-01-08 09:00 CET"
    assert auction.auction is not None and auction.auction.auction_id == "de-auctioneer-20260108"
    assert calendar.at(auction.auction.date, auction.auction.closes) - auction.at == 2 * 3600 * 10**9
    assert not [point for point in calendar.points(dt.date(2026, 1, 9)) if point.action == "auction"]


def test_the_shipped_calendar_reads_and_covers_every_instrument():
    instruments = load_instruments()
    calendar = load_calendar(instruments, PACKAGED_CONFIG / "calendar.toml")
    assert set(calendar.schedules) == set(instruments)
    assert calendar.points(dt.date(2026, 12, 25)) == []
    assert calendar.is_trading_day(dt.date(2026, 12, 28))


@pytest.mark.parametrize(
    ("table", "field", "problem"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "no time zone"),
        ({"weekend": ["caturday"]}, "weekend", "not a day of the week"),
        ({"holidays": ["2026-13-01"]}, "holidays", "not a date"),
        ({"day": {"close": "25:00"}}, "day.close", "not a time"),
        ({"day": {"opening_call": "09:00", "continuous": "08:00"}}, "day", "in that order"),
        ({"day": {"lunch": "12:00"}}, "day.lunch", "unknown setting"),
        ({"day": {"closing_call_minutes": 0}}, "day.closing_call_minutes", "whole minutes"),
        ({"instruments": {"XYZ": {}}}, "instruments.XYZ", "not an instrument"),
        ({"short_days": {"2026-12-24": "07:50"}}, "short_days.2026-12-24", "closes before"),
        (
            {"auctions": [{"date": "2026-01-08", "auctioneer": "x", "instrument": "EUA", "volume": 777}]},
            "auctions[0].volume",
            "multiple of 500",
        ),
        ({"lunch": True}, "lunch", "unknown setting"),
        (
            {"weekend": list(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))},
            "weekend",
            "never trade",
        ),
        ({"short_days": ["2026-12-24"]}, "short_days", "must be a table"),
        ({"instruments": "EUA"}, "instruments", "must be a table"),
        ({"day": {"close": "18:00+01:00"}}, "day.close", "without an offset"),
        (
            {"auctions": [{"date": "2026-01-08", "auctioneer": "de.auctioneer", "instrument": "EUA", "volume": 500}]},
            "auctions[0].auctioneer",
            "letters, digits",
        ),
        (
            {
                "auctions": [
                    {"date": "2026-01-08", "auctioneer": "de", "instrument": "EUA", "volume": 500},
                    {"date": "2026-01-08", "auctioneer": "de", "instrument": "EUA", "volume": 1000},
                ]
            },
            "auctions[1]",
            "a second auction",
        ),
    ],
)
def test_a_wrong_calendar_is_an_error_naming_the_field(table, field, problem):
    with pytest.raises(ConfigError) as error:
        parse_calendar(table, INSTRUMENTS)
    assert error.value.field == f"calendar.toml: {field}"
    assert problem in error.value.problem
