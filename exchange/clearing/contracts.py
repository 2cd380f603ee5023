"""Futures contracts: which months are listed on a day, when each stops trading, when it delivers.

How this works
--------------
A :class:`ContractSeries` describes the futures on one underlying (EUA, or CER and ERU where configured)
as the venue lists them: how many December, quarterly and monthly contracts trade at once, the last
contract month ever listed, lot and tick. :func:`listed_contracts` answers, for a trading date, the
contracts open for trading on it, nearest first; each is a :class:`FuturesContract` with its symbol
(the underlying and the standard month code: ``EUAZ27`` is December 2027), its last trading day and its
delivery day. Listing is a function of the date alone, so a new month appears on the first day the
calendar reaches it and an expired one is gone the day after its last trading day: nothing is stored,
replaying a day lists the same contracts.

The dates follow ICE Endex's EUA Futures (product 197, the contract specification; docs/FUTURES.md
quotes it): trading ends on the last Monday of the contract month, or on the penultimate Monday when the
last Monday is not a business day or a non-business day falls in the four days after it; delivery
completes on the third business day after the last trading day. Business days are the venue's calendar
(weekends and holidays given by the caller; ICE uses UK bank holidays, a venue here its own calendar).

Dates are ``YYYYMMDD`` integers as everywhere in the engine; ``datetime.date`` does the arithmetic
(no clock is read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from ..instruments import SYMBOL_PATTERN, ConfigError

# The futures month codes every venue uses (CME, ICE, EEX): January F ... December Z.
MONTH_CODES = "FGHJKMNQUVXZ"
QUARTER_MONTHS = (3, 6, 9, 12)
DELIVERY_BUSINESS_DAYS = 3  # delivery completes on the third business day after the last trading day
MONDAY = 0
BusinessDay = Callable[[int], bool]  # YYYYMMDD -> whether the venue trades that day


def to_date(yyyymmdd: int) -> date:
    return date(yyyymmdd // 10_000, yyyymmdd // 100 % 100, yyyymmdd % 100)


def to_int(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


@dataclass(frozen=True, slots=True)
class ContractSeries:
    """The futures listed on one underlying. Amounts are integers: cents, lots, units."""

    underlying: str  # the spot instrument delivered at expiry (EUA, CER, ERU)
    decembers: int = 7  # December contracts listed at once (ICE Endex: up to 7)
    quarterlies: int = 9  # March, June, September and December contracts listed at once (ICE Endex: 9)
    monthlies: int = 2  # nearest monthly contracts listed at once (ICE Endex: 2)
    last_month: int = 203012  # YYYYMM: no contract beyond it (ICE Endex: none beyond December 2030)
    lot_units: int = 1_000  # tonnes in one lot (ICE Endex and EEX: 1,000)
    tick_size: int = 1  # cents a tonne (EUR 0.01)
    block_min_lots: int = 50  # the smallest block trade or EFP (ICE Endex EUA futures: 50 lots)
    tas_ticks: int = 10  # trade at settlement: offsets of up to this many ticks either side; 0: no TAS
    december_spreads: bool = False  # a calendar spread book for each pair of consecutive Decembers listed

    def __post_init__(self) -> None:
        where = f"futures.{self.underlying}"
        if not SYMBOL_PATTERN.match(self.underlying + "Z00"):
            raise ConfigError(f"{where}", "the underlying's symbol with a month code must be a valid symbol")
        for name in ("decembers", "quarterlies", "monthlies"):
            if not 0 <= getattr(self, name) <= 120:
                raise ConfigError(f"{where}.{name}", "must be between 0 and 120")
        if not self.decembers + self.quarterlies + self.monthlies:
            raise ConfigError(where, "lists no contract: decembers, quarterlies and monthlies are all 0")
        if not 1 <= self.last_month % 100 <= 12:
            raise ConfigError(f"{where}.last_month", "must be YYYYMM")
        if self.lot_units < 1 or self.tick_size < 1:
            raise ConfigError(where, "lot_units and tick_size must be positive")
        if not 0 <= self.tas_ticks <= 1_000:
            raise ConfigError(f"{where}.tas_ticks", "must be between 0 and 1000 ticks")
        if not 1 <= self.block_min_lots <= 1_000_000:
            raise ConfigError(f"{where}.block_min_lots", "must be between 1 and 1000000 lots")


@dataclass(frozen=True, slots=True)
class FuturesContract:
    """One contract month of a series."""

    symbol: str  # underlying + month code + two-digit year: EUAZ27
    underlying: str
    year: int
    month: int
    last_trading_day: int  # YYYYMMDD: trading ends at this day's close; the settlement price is the EDSP
    delivery_day: int  # YYYYMMDD: units and cash change hands by this day


def contract_symbol(underlying: str, year: int, month: int) -> str:
    return f"{underlying}{MONTH_CODES[month - 1]}{year % 100:02d}"


def last_trading_day(year: int, month: int, business_day: BusinessDay) -> int:
    """The last Monday of the month; the penultimate one when the last is not a business day or a non-business
    day falls in the four days after it (ICE Endex EUA Futures, "Last Trading Day")."""
    if month == 12:
        last = date(year + 1, 1, 1) - timedelta(days=1)
    else:
        last = date(year, month + 1, 1) - timedelta(days=1)
    monday = last - timedelta(days=(last.weekday() - MONDAY) % 7)
    following = (to_int(monday + timedelta(days=offset)) for offset in range(0, 5))
    if not all(business_day(day) for day in following):
        monday -= timedelta(days=7)
    return to_int(monday)


def delivery_day(last_day: int, business_day: BusinessDay) -> int:
    """The third business day after the last trading day, when the delivery period ends."""
    day = to_date(last_day)
    counted = 0
    while counted < DELIVERY_BUSINESS_DAYS:
        day += timedelta(days=1)
        if business_day(to_int(day)):
            counted += 1
    return to_int(day)


def contract(series: ContractSeries, year: int, month: int, business_day: BusinessDay) -> FuturesContract:
    last = last_trading_day(year, month, business_day)
    return FuturesContract(
        contract_symbol(series.underlying, year, month),
        series.underlying,
        year,
        month,
        last,
        delivery_day(last, business_day),
    )


def _months_from(year: int, month: int) -> Iterator[tuple[int, int]]:
    while True:
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def listed_contracts(series: ContractSeries, trading_date: int, business_day: BusinessDay) -> list[FuturesContract]:
    """The contracts of ``series`` that trade on ``trading_date``, nearest first.

    From the first month whose last trading day is on or after the date: the nearest ``monthlies`` months,
    the nearest ``quarterlies`` quarter months and the nearest ``decembers`` Decembers (a contract counted
    in several sets is listed once), none beyond ``last_month``.
    """
    today = to_date(trading_date)
    wanted = {"monthly": series.monthlies, "quarterly": series.quarterlies, "december": series.decembers}
    chosen: list[FuturesContract] = []
    for year, month in _months_from(today.year, today.month):
        if year * 100 + month > series.last_month or not any(wanted.values()):
            break
        candidate = contract(series, year, month, business_day)
        if candidate.last_trading_day < trading_date:
            continue  # this month's contract stopped trading earlier in the month
        take = False
        for kind, applies in (("monthly", True), ("quarterly", month in QUARTER_MONTHS), ("december", month == 12)):
            if applies and wanted[kind]:
                wanted[kind] -= 1
                take = True
        if take:
            chosen.append(candidate)
    return chosen
