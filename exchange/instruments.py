"""Instruments: the contract terms the engine enforces, parsed from plain data.

How this works: the configuration file (``config/instruments.toml``) is read
by the gateway, which hands the parsed TOML tables to :func:`parse_instruments`.
This module converts every human-written amount once, at the edge, into the
integers the engine uses (prices in euro cents, quantities in lots, units per
lot) and checks each field, raising :class:`ConfigError` with the dotted path
of the first bad field (``instruments.EUA.tick_size_eur``). A new instrument
is a new table in the file; no code names EUA, CER or ERU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{1,11}$")
CENTS_PER_EUR = 100


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradeable instrument. All amounts are integers: cents, lots, units."""

    symbol: str
    name: str
    lot_units: int  # units (tonnes of CO2e) in one lot
    tick_size: int  # cents; every price is a multiple of it
    min_lots: int  # smallest order quantity
    max_lots: int  # largest order quantity (fat-finger limit)
    min_price: int  # cents, lowest price an order may carry
    max_price: int  # cents, highest price an order may carry
    reference_price: int  # cents; the collar and band are centred on it until the first trade
    market_collar: int | None  # cents from the reference a market order may trade at most; None: no collar
    price_band_bps: int  # band around the reference price, basis points; a limit price outside it is refused
    maker_fee: int = 0  # cents per lot, paid by the resting order's account
    taker_fee: int = 0  # cents per lot, paid by the incoming order's account
    # Dynamic band, basis points around the last trade (or auction) price: an order that would trade outside
    # it sends the instrument into a volatility interruption instead; 0: no band.
    volatility_band_bps: int = 0
    volatility_call_seconds: int = 120  # length of a volatility interruption's call (the gateway's timer)
    # The band refuses only the side that would trade through it, as ICE applies its reasonability limits (ICE
    # Futures Europe Rule 8B.05(c)): a buy above the upper limit, a sell below the lower one. A buy below the band
    # or a sell above it cannot trade at an unrepresentative price, so it may rest. False: both sides are held to it.
    price_band_one_sided: bool = True
    max_fee: int = field(init=False, repr=False, compare=False)  # the larger fee: what a buy must hold back

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_fee", max(self.maker_fee, self.taker_fee))

    def price_allowed(self, price: int) -> bool:
        """On the tick and within the price limits (``min_price`` is itself on the tick)."""
        return self.min_price <= price <= self.max_price and price % self.tick_size == 0


_FIELDS = {
    "name",
    "lot_units",
    "tick_size_eur",
    "min_lots",
    "max_lots",
    "min_price_eur",
    "max_price_eur",
    "reference_price_eur",
    "market_collar_eur",
    "price_band_bps",
    "price_band_sides",
    "maker_fee_eur",
    "taker_fee_eur",
    "volatility_band_bps",
    "volatility_call_seconds",
}


def parse_instruments(document: Mapping[str, Any]) -> dict[str, Instrument]:
    """Build the instruments from a parsed ``instruments.toml``; raise ConfigError on the first bad field."""
    tables = document.get("instruments")
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigError("instruments", "missing: define at least one [instruments.SYMBOL] table")
    return {symbol: _parse_instrument(symbol, table) for symbol, table in tables.items()}


def _parse_instrument(symbol: str, table: Any) -> Instrument:
    where = f"instruments.{symbol}"
    if not SYMBOL_PATTERN.match(symbol):
        raise ConfigError(where, "symbol must be 2-12 capital letters or digits, starting with a letter")
    if not isinstance(table, Mapping):
        raise ConfigError(where, "must be a table")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_FIELDS))})")

    name = table.get("name", symbol)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name", "must be a non-empty string")
    lot_units = _positive_int(table, where, "lot_units")
    tick_size = _cents(table, where, "tick_size_eur")
    if tick_size <= 0:
        raise ConfigError(f"{where}.tick_size_eur", "must be at least 0.01")
    min_lots = _positive_int(table, where, "min_lots")
    max_lots = _positive_int(table, where, "max_lots")
    if max_lots < min_lots:
        raise ConfigError(f"{where}.max_lots", f"must be at least min_lots ({min_lots})")
    min_price = _on_tick(table, where, "min_price_eur", tick_size, default=tick_size)  # on the tick: the
    # allowed prices are then exactly range(min_price, max_price + 1, tick_size)
    max_price = _on_tick(table, where, "max_price_eur", tick_size)
    if min_price <= 0:
        raise ConfigError(f"{where}.min_price_eur", "must be positive")
    if max_price < min_price:
        raise ConfigError(f"{where}.max_price_eur", "must be at least min_price_eur")
    reference_price = _on_tick(table, where, "reference_price_eur", tick_size)
    if not min_price <= reference_price <= max_price:
        raise ConfigError(f"{where}.reference_price_eur", "must lie between min_price_eur and max_price_eur")
    market_collar: int | None = None
    if "market_collar_eur" in table:
        market_collar = _on_tick(table, where, "market_collar_eur", tick_size)
        if market_collar <= 0:
            raise ConfigError(f"{where}.market_collar_eur", "must be positive (leave it out for no collar)")
    band = table.get("price_band_bps", 0)
    if type(band) is not int or not 0 <= band <= 10_000:
        raise ConfigError(f"{where}.price_band_bps", "must be an integer from 0 to 10000 basis points")
    band_sides = table.get("price_band_sides", "one")
    if band_sides not in ("one", "both"):
        raise ConfigError(f"{where}.price_band_sides", f'must be "one" or "both", not {band_sides!r}')
    volatility_band = table.get("volatility_band_bps", 0)
    if type(volatility_band) is not int or not 0 <= volatility_band <= 10_000:
        raise ConfigError(f"{where}.volatility_band_bps", "must be an integer from 0 to 10000 basis points")
    volatility_call = table.get("volatility_call_seconds", 120)
    if type(volatility_call) is not int or not 1 <= volatility_call <= 3600:
        raise ConfigError(f"{where}.volatility_call_seconds", "must be a whole number of seconds from 1 to 3600")
    fees = {}
    for key in ("maker_fee_eur", "taker_fee_eur"):
        fees[key] = _cents(table, where, key, default=0) if key in table else 0
        if fees[key] < 0:
            raise ConfigError(f"{where}.{key}", "must not be negative")
        # A seller pays its fee out of the sale's proceeds, so a lot at the lowest price must cover it:
        # then no fill can leave a seller's cash below zero.
        if fees[key] > min_price * lot_units:
            raise ConfigError(f"{where}.{key}", "must not exceed the value of one lot at min_price_eur")
    return Instrument(
        symbol=symbol,
        name=name,
        lot_units=lot_units,
        tick_size=tick_size,
        min_lots=min_lots,
        max_lots=max_lots,
        min_price=min_price,
        max_price=max_price,
        reference_price=reference_price,
        market_collar=market_collar,
        price_band_bps=band,
        price_band_one_sided=band_sides == "one",
        maker_fee=fees["maker_fee_eur"],
        taker_fee=fees["taker_fee_eur"],
        volatility_band_bps=volatility_band,
        volatility_call_seconds=volatility_call,
    )


def _positive_int(table: Mapping[str, Any], where: str, key: str) -> int:
    if key not in table:
        raise ConfigError(f"{where}.{key}", "missing")
    value = table[key]
    if type(value) is not int or value <= 0:
        raise ConfigError(f"{where}.{key}", f"must be a positive integer, not {value!r}")
    return value


def eur_to_cents(text: str) -> int:
    """Convert a decimal euro amount written as a string ("70.25") to integer cents.

    Raises ValueError if the text is not a decimal number or has more than two decimals.
    """
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    cents = amount * CENTS_PER_EUR
    if cents != cents.to_integral_value():
        raise ValueError(f"{text!r} has more than two decimals")
    return int(cents)


def cents_to_eur(cents: int, thousands: bool = False) -> str:
    """Integer cents as a euro amount with two decimals: 7005 -> "70.05" (with ``thousands``: "1,234.56").

    The one way back from cents to text, for reports and the terminal.
    """
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), CENTS_PER_EUR)
    return f"{sign}{whole:,}.{part:02d}" if thousands else f"{sign}{whole}.{part:02d}"


def _cents(table: Mapping[str, Any], where: str, key: str, *, default: int | None = None) -> int:
    if key not in table:
        if default is not None:
            return default
        raise ConfigError(f"{where}.{key}", "missing")
    value = table[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}", f'write euro amounts as quoted decimals ("70.00"), not {value!r}')
    try:
        return eur_to_cents(value)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}", str(exc)) from None


def _on_tick(table: Mapping[str, Any], where: str, key: str, tick_size: int, *, default: int | None = None) -> int:
    cents = _cents(table, where, key, default=default)
    if cents % tick_size:
        raise ConfigError(f"{where}.{key}", f"must be a multiple of the tick size ({tick_size} cents)")
    return cents
