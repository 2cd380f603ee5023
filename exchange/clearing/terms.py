"""The futures terms a venue configures: the series listed, each underlying's margin, its holidays.

How this works: the gateway reads ``config/futures.toml`` and the holidays of ``config/calendar.toml`` and
hands the parsed tables to :func:`parse_futures`, which checks every field once, at the edge, and turns
amounts into the engine's integers (cents a tonne, basis points), raising :class:`ConfigError` with the
dotted path of the first bad field. A contract's lot and tick are its underlying spot instrument's (ICE Endex:
1,000 tonnes and EUR 0.01 for spot and futures alike). :meth:`FuturesConfig.to_value` and
:meth:`FuturesConfig.from_value` keep the terms in a journal's genesis, so a replay lists and margins exactly
as the run did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..instruments import ConfigError, Instrument, eur_to_cents
from .contracts import ContractSeries, to_date
from .house import BPS, MarginTerms

SERIES_FIELDS = frozenset(
    {
        "decembers",
        "quarterlies",
        "monthlies",
        "last_month",
        "scanning_range_eur",
        "spread_charge_eur",
        "maintenance_bps",
        "block_min_lots",
        "tas_ticks",
        "december_spreads",
    }
)


@dataclass(frozen=True, slots=True)
class FuturesConfig:
    """What the engine needs to list and clear futures."""

    series: tuple[ContractSeries, ...]
    margins: Mapping[str, MarginTerms]  # underlying -> its margin terms
    holidays: frozenset[int] = field(default_factory=frozenset)  # YYYYMMDD: the venue's non-business weekdays
    default_premium_bps: int = 1_000  # what a failed delivery costs the short over the final price
    weekend: frozenset[int] = frozenset({5, 6})  # weekday numbers (Monday 0) the venue never trades

    def business_day(self, yyyymmdd: int) -> bool:
        """Whether the venue trades on the day (the trading calendar's weekend and holidays)."""
        return to_date(yyyymmdd).weekday() not in self.weekend and yyyymmdd not in self.holidays

    def __post_init__(self) -> None:
        for series in self.series:
            if series.underlying not in self.margins:
                raise ConfigError(f"futures.{series.underlying}", "no margin terms")

    def to_value(self) -> dict:
        """Plain data (a journal's genesis keeps it)."""
        return {
            "series": [asdict(series) for series in self.series],
            "margins": {underlying: asdict(terms) for underlying, terms in sorted(self.margins.items())},
            "holidays": sorted(self.holidays),
            "default_premium_bps": self.default_premium_bps,
            "weekend": sorted(self.weekend),
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> FuturesConfig:
        return cls(
            tuple(ContractSeries(**series) for series in value["series"]),
            {underlying: MarginTerms(**terms) for underlying, terms in value["margins"].items()},
            frozenset(value["holidays"]),
            value["default_premium_bps"],
            frozenset(value.get("weekend", (5, 6))),
        )


def parse_futures(
    document: Mapping[str, Any],
    instruments: Mapping[str, Instrument],
    holidays: Iterable[int],
    weekend: Iterable[int] = (5, 6),
) -> FuturesConfig:
    """The futures of a parsed ``futures.toml`` on the spot ``instruments``; ConfigError on the first bad field."""
    unknown = sorted(set(document) - {"futures", "default_premium_bps"})
    if unknown:
        raise ConfigError(unknown[0], "unknown field (known: futures, default_premium_bps)")
    tables = document.get("futures")
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigError("futures", "missing: define at least one [futures.UNDERLYING] table")
    premium = document.get("default_premium_bps", 1_000)
    if type(premium) is not int or not 0 <= premium <= 10 * BPS:
        raise ConfigError("default_premium_bps", "must be an integer from 0 to 100000 basis points")
    series, margins = [], {}
    for underlying, table in tables.items():
        where = f"futures.{underlying}"
        spot = instruments.get(underlying)
        if spot is None:
            raise ConfigError(where, f"no spot instrument {underlying!r} to deliver (instruments.toml)")
        if not isinstance(table, Mapping):
            raise ConfigError(where, "must be a table")
        extra = sorted(set(table) - SERIES_FIELDS)
        if extra:
            raise ConfigError(f"{where}.{extra[0]}", f"unknown field (known: {', '.join(sorted(SERIES_FIELDS))})")
        counts = {}
        for name, default in (
            ("decembers", 7),
            ("quarterlies", 9),
            ("monthlies", 2),
            ("last_month", 203012),
            ("block_min_lots", 50),
            ("tas_ticks", 10),
        ):
            counts[name] = table.get(name, default)
            if type(counts[name]) is not int:
                raise ConfigError(f"{where}.{name}", f"must be an integer, not {counts[name]!r}")
        spreads = table.get("december_spreads", False)
        if type(spreads) is not bool:
            raise ConfigError(f"{where}.december_spreads", f"must be true or false, not {spreads!r}")
        series.append(
            ContractSeries(
                underlying,
                lot_units=spot.lot_units,
                tick_size=spot.tick_size,
                december_spreads=spreads,
                **counts,
            )
        )
        amounts = {}
        for name in ("scanning_range_eur", "spread_charge_eur"):
            text = table.get(name)
            try:
                amounts[name] = eur_to_cents(text) if isinstance(text, str) else -1
            except ValueError:
                amounts[name] = -1
            if amounts[name] < 0 or (name == "scanning_range_eur" and amounts[name] == 0):
                raise ConfigError(f"{where}.{name}", 'must be a euro amount written as a string ("8.00"), not negative')
        maintenance = table.get("maintenance_bps", BPS)
        if type(maintenance) is not int or not 1 <= maintenance <= BPS:
            raise ConfigError(f"{where}.maintenance_bps", "must be an integer from 1 to 10000 basis points")
        margins[underlying] = MarginTerms(amounts["scanning_range_eur"], amounts["spread_charge_eur"], maintenance)
    return FuturesConfig(tuple(series), margins, frozenset(holidays), premium, frozenset(weekend))
