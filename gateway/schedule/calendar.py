"""The trading calendar: which days trade, and what happens when on each of them.

How this works
--------------
:func:`parse_calendar` turns the table read from ``config/calendar.toml``
(by :func:`gateway.config.load_calendar`) into a :class:`TradingCalendar`:
the venue's time zone, its weekend, holidays, shortened days, the schedule
of a normal day (for every instrument, with per-instrument changes) and the
primary auctions. Times are written in the venue's local time and turned
into nanoseconds since the epoch here, through ``zoneinfo``, so a day across
a change of summer time is still right.

:meth:`TradingCalendar.points` lists one trading day's :class:`SchedulePoint`
in the order they are carried out: for each instrument the opening call,
continuous trading (the opening auction runs as it starts), the settlement
window, the closing call and the close (the closing auction runs as it
closes); each primary auction's opening; then the end of day. Ties in time
keep that order (a point's ``rank``). Pure: no clock, no I/O; what is due
*now* is the runner's question (:mod:`gateway.schedule.runner`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchange import ConfigError
from exchange.commands import AUCTION_ID

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# The order of a day's actions at the same instant (their rank), and the names the log and the docs use.
ACTIONS = ("opening_call", "continuous", "settlement_window", "closing_call", "close", "auction", "end_of_day")
RANK = {action: rank for rank, action in enumerate(ACTIONS)}


@dataclass(frozen=True)
class DaySchedule:
    """One instrument's normal day, local times (``HH:MM``) and minutes before the close."""

    opening_call: dt.time
    continuous: dt.time
    close: dt.time
    closing_call_minutes: int
    settlement_window_minutes: int


@dataclass(frozen=True)
class AuctionDate:
    """A primary auction of the auction calendar: an auctioneer's volume of an instrument, bid in a window."""

    date: dt.date
    auctioneer: str
    instrument: str
    volume: int  # allowances, a multiple of 500
    opens: dt.time
    closes: dt.time

    @property
    def auction_id(self) -> str:
        return f"{self.auctioneer}-{self.date:%Y%m%d}"


@dataclass(frozen=True, order=True)
class SchedulePoint:
    """One action of a trading day, due at ``at`` (ns since the epoch)."""

    at: int
    rank: int
    instrument: str  # "" for the end of day
    action: str = field(compare=False)
    trading_date: int = field(compare=False)  # YYYYMMDD
    auction: AuctionDate | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TradingCalendar:
    """The venue's calendar; see the module notes."""

    zone: ZoneInfo
    weekend: frozenset[int]  # weekday numbers, Monday 0
    holidays: frozenset[dt.date]
    short_days: Mapping[dt.date, dt.time]  # date -> the close on that day (calls and windows keep their minutes)
    schedules: Mapping[str, DaySchedule]  # instrument -> its normal day
    auctions: tuple[AuctionDate, ...]

    def is_trading_day(self, day: dt.date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def trading_days(self, first: dt.date) -> Iterator[dt.date]:
        """Trading days from ``first`` on (``first`` included if it trades), without end."""
        day = first
        while True:
            if self.is_trading_day(day):
                yield day
            day += dt.timedelta(days=1)

    def local_date(self, ns: int) -> dt.date:
        """The venue's calendar date at an instant."""
        return dt.datetime.fromtimestamp(ns / 1e9, self.zone).date()

    def at(self, day: dt.date, local: dt.time) -> int:
        """ns since the epoch of a local time on a day, in the venue's zone."""
        moment = dt.datetime.combine(day, local, tzinfo=self.zone)
        return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000

    def points(self, day: dt.date) -> list[SchedulePoint]:
        """The day's schedule points in the order they are carried out (none on a day that does not trade)."""
        if not self.is_trading_day(day):
            return []
        number = date_number(day)
        points = []
        last_close = 0
        for symbol, schedule in self.schedules.items():
            close = self.at(day, self.short_days.get(day, schedule.close))
            last_close = max(last_close, close)
            minute = 60 * 1_000_000_000
            times = {
                "opening_call": self.at(day, schedule.opening_call),
                "continuous": self.at(day, schedule.continuous),
                "settlement_window": close - schedule.settlement_window_minutes * minute,
                "closing_call": close - schedule.closing_call_minutes * minute,
                "close": close,
            }
            for action, at in times.items():
                points.append(SchedulePoint(at, RANK[action], symbol, action, number))
        for auction in self.auctions:
            if auction.date == day:
                at = self.at(day, auction.opens)
                points.append(SchedulePoint(at, RANK["auction"], auction.instrument, "auction", number, auction))
        points.append(SchedulePoint(last_close, RANK["end_of_day"], "", "end_of_day", number))
        return sorted(points)


def date_number(day: dt.date) -> int:
    """A date as the engine writes it: YYYYMMDD."""
    return day.year * 10000 + day.month * 100 + day.day


def number_date(value: int) -> dt.date:
    return dt.date(value // 10000, value // 100 % 100, value % 100)


# -- parsing ---------------------------------------------------------------------------------------


def parse_calendar(data: Mapping, instruments: Mapping[str, object], origin: str = "calendar.toml") -> TradingCalendar:
    """A :class:`TradingCalendar` from the calendar file's table; ``instruments`` are the exchange's (every one
    gets a schedule). A mistake is a :class:`ConfigError` naming the field."""
    known = {"timezone", "weekend", "holidays", "short_days", "day", "instruments", "auctions"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{origin}: {key}", f"unknown setting (known: {', '.join(sorted(known))})")
    zone_name = _text(data.get("timezone", "Europe/Berlin"), f"{origin}: timezone")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{origin}: timezone", f"no time zone {zone_name!r} (an IANA name: Europe/Berlin)") from None
    weekend = set()
    for name in data.get("weekend", ["saturday", "sunday"]):
        if not isinstance(name, str) or name.lower() not in WEEKDAYS:
            raise ConfigError(f"{origin}: weekend", f"{name!r} is not a day of the week (monday ... sunday)")
        weekend.add(WEEKDAYS.index(name.lower()))
    if len(weekend) == len(WEEKDAYS):
        raise ConfigError(f"{origin}: weekend", "every day of the week: the exchange would never trade")
    holidays = frozenset(_date(value, f"{origin}: holidays") for value in data.get("holidays", []))
    short_days = {
        _date(day, f"{origin}: short_days"): _time(close, f"{origin}: short_days.{day}")
        for day, close in _table(data.get("short_days", {}), f"{origin}: short_days").items()
    }
    normal = _day_schedule(data.get("day", {}), None, f"{origin}: day")
    overrides = _table(data.get("instruments", {}), f"{origin}: instruments")
    for symbol in overrides:
        if symbol not in instruments:
            raise ConfigError(f"{origin}: instruments.{symbol}", "not an instrument of the exchange")
    schedules = {
        symbol: _day_schedule(overrides.get(symbol, {}), normal, f"{origin}: instruments.{symbol}")
        for symbol in instruments
    }
    entries = data.get("auctions", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: auctions", "must be an array of tables ([[auctions]])")
    auctions = tuple(
        _auction(entry, instruments, f"{origin}: auctions[{index}]") for index, entry in enumerate(entries)
    )
    seen: set[str] = set()
    for index, auction in enumerate(auctions):
        if auction.auction_id in seen:
            raise ConfigError(f"{origin}: auctions[{index}]", f"a second auction of {auction.auctioneer} that day")
        seen.add(auction.auction_id)
    for day in short_days:
        for symbol, schedule in schedules.items():
            if short_days[day] <= schedule.continuous:
                raise ConfigError(
                    f"{origin}: short_days.{day}", f"closes before {symbol} opens ({schedule.continuous})"
                )
    return TradingCalendar(zone, frozenset(weekend), holidays, short_days, schedules, auctions)


def _day_schedule(table: object, base: DaySchedule | None, where: str) -> DaySchedule:
    if not isinstance(table, Mapping):
        raise ConfigError(where, "must be a table")
    fields = ("opening_call", "continuous", "close", "closing_call_minutes", "settlement_window_minutes")
    for key in table:
        if key not in fields:
            raise ConfigError(f"{where}.{key}", f"unknown setting (known: {', '.join(fields)})")
    defaults = {
        "opening_call": "07:45",
        "continuous": "08:00",
        "close": "18:00",
        "closing_call_minutes": 5,
        "settlement_window_minutes": 10,
    }
    if base is not None:
        defaults = {
            "opening_call": base.opening_call.strftime("%H:%M"),
            "continuous": base.continuous.strftime("%H:%M"),
            "close": base.close.strftime("%H:%M"),
            "closing_call_minutes": base.closing_call_minutes,
            "settlement_window_minutes": base.settlement_window_minutes,
        }
    value = {**defaults, **table}
    schedule = DaySchedule(
        _time(value["opening_call"], f"{where}.opening_call"),
        _time(value["continuous"], f"{where}.continuous"),
        _time(value["close"], f"{where}.close"),
        _minutes(value["closing_call_minutes"], f"{where}.closing_call_minutes"),
        _minutes(value["settlement_window_minutes"], f"{where}.settlement_window_minutes"),
    )
    if not schedule.opening_call <= schedule.continuous < schedule.close:
        raise ConfigError(where, "the opening call, continuous trading and the close must come in that order")
    trading = dt.datetime.combine(dt.date.min, schedule.close) - dt.datetime.combine(dt.date.min, schedule.continuous)
    if max(schedule.closing_call_minutes, schedule.settlement_window_minutes) * 60 >= trading.total_seconds():
        raise ConfigError(where, "the closing call and the settlement window must fit inside the trading day")
    return schedule


def _auction(entry: object, instruments: Mapping[str, object], where: str) -> AuctionDate:
    if not isinstance(entry, Mapping):
        raise ConfigError(where, "must be a table (date, auctioneer, instrument, volume, opens, closes)")
    for key in ("date", "auctioneer", "instrument", "volume"):
        if key not in entry:
            raise ConfigError(f"{where}.{key}", "missing")
    instrument = _text(entry["instrument"], f"{where}.instrument")
    if instrument not in instruments:
        raise ConfigError(f"{where}.instrument", f"{instrument!r} is not an instrument of the exchange")
    volume = entry["volume"]
    if type(volume) is not int or volume <= 0 or volume % 500:
        raise ConfigError(f"{where}.volume", "allowances, a positive multiple of 500")
    auction = AuctionDate(
        _date(entry["date"], f"{where}.date"),
        _text(entry["auctioneer"], f"{where}.auctioneer"),
        instrument,
        volume,
        _time(entry.get("opens", "09:00"), f"{where}.opens"),
        _time(entry.get("closes", "11:00"), f"{where}.closes"),
    )
    if auction.closes <= auction.opens:
        raise ConfigError(f"{where}.closes", "the bidding window must close after it opens")
    if AUCTION_ID.fullmatch(auction.auction_id) is None:  # the engine's rule for an auction's id
        raise ConfigError(
            f"{where}.auctioneer", "letters, digits, - and _ only, at most 23 characters (the id adds the date)"
        )
    return auction


def _table(value: object, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(where, "must be a table")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "must be a non-empty string")
    return value


def _date(value: object, where: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # TOML's own local date
    try:
        return dt.date.fromisoformat(_text(value, where))
    except ValueError:
        raise ConfigError(where, f"{value!r} is not a date written YYYY-MM-DD") from None


def _time(value: object, where: str) -> dt.time:
    if isinstance(value, dt.time):
        return value  # TOML's own local time
    try:
        parsed = dt.time.fromisoformat(_text(value, where))
    except ValueError:
        raise ConfigError(where, f"{value!r} is not a time written HH:MM") from None
    if parsed.tzinfo is not None:
        raise ConfigError(where, f"{value!r}: a local time of the venue's zone, without an offset")
    return parsed


def _minutes(value: object, where: str) -> int:
    if type(value) is not int or not 0 < value <= 600:
        raise ConfigError(where, "whole minutes from 1 to 600")
    return value
