"""The day's files: a report for the operator and a statement per account, written at each end of day.

How this works
--------------
After the calendar's end of day (:mod:`gateway.schedule.runner`) the engine's
state *is* the day's close: :meth:`DayFiles.write` reads it at once, in the
event loop (balances through the engine's read API, each instrument's
closing statistics from the market-data feed), and writes the files in a
worker thread so that the disk never holds up trading. Under the data
directory, ``days/YYYYMMDD/``:

- ``report.json``: per instrument the closing statistics (open, high, low,
  last, volume, VWAP, trades) and the settlement price with how it was fixed;
  orders expired; what the engine holds (open orders, accounts);
  with futures, each contract's settlement price, the variation margin paid,
  the contracts expired and their deliveries;
- ``statements/ACCOUNT.json``: the account's cash and units, what its open
  orders hold back, its units valued at the day's settlement prices, and its
  futures positions, initial margin and the day's variation margin
  (the account id percent-encoded where it holds a character a file name
  may not, such as ``/``).

Amounts are written as strings in euros (two decimals) beside integer cents,
so a spreadsheet and a program read them alike. Files are written whole
(temporary name, then rename): a reader never sees half a statement; the report
comes last, so a day with a report has every file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

from exchange import (
    ContractExpired,
    Engine,
    FuturesDelivered,
    SettlementPriceFixed,
    TradingDayClosed,
    VariationMarginPaid,
)
from gateway.logs import log_event
from gateway.marketdata.feed import MarketDataFeed

log = logging.getLogger("carbonx.gateway")


def euros(cents: int | None) -> str | None:
    if cents is None:
        return None
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


class DayFiles:
    """Writes each trading day's report and statements under ``directory``; see the module notes."""

    def __init__(self, engine: Engine, feed: MarketDataFeed, directory: Path) -> None:
        self.engine = engine
        self.feed = feed
        self.directory = directory

    def missing(self, trading_date: int) -> bool:
        """Whether a closed day's files were never written whole (the process ended between its close and them)."""
        return not (self.directory / str(trading_date) / "report.json").exists()

    async def write(self, trading_date: int, events: list) -> Path:
        """The files of the day whose end of day produced ``events``; returns the day's folder. Without events
        (written at a start, after a stop that came between the close and its files) the report says so, and
        the settlement prices come from the engine, their methods and the expiries being unknown."""
        report, statements = self.read(trading_date, events)
        if not events:
            report["written_at_start"] = True
        folder = self.directory / str(trading_date)
        try:
            await asyncio.to_thread(_write_all, folder, report, statements)
        except OSError as error:  # a full disk: the day is closed all the same; the operator is told
            log_event(
                log, "day_files_failed", logging.ERROR, trading_date=trading_date, folder=str(folder), error=str(error)
            )
            return folder
        log_event(log, "day_files", trading_date=trading_date, folder=str(folder), statements=len(statements))
        return folder

    def read(self, trading_date: int, events: list) -> tuple[dict, dict[str, dict]]:
        """What the files say, read from the engine and the feed now (the day just closed)."""
        engine = self.engine
        fixed = {event.instrument: event for event in events if type(event) is SettlementPriceFixed}
        closed = [event for event in events if type(event) is TradingDayClosed]
        instruments = {}
        for symbol, instrument in engine.instruments.items():
            feed = self.feed.instruments[symbol]
            close = feed.last_close
            settlement = fixed.get(symbol)
            tick = instrument.tick_size
            instruments[symbol] = {
                "settlement_price": euros(settlement.price if settlement else engine.settlement_price(symbol)),
                "settlement_method": settlement.method if settlement else None,
                "settlement_window_lots": settlement.window_lots if settlement else 0,
                "open": euros(None if close is None or close.open is None else close.open * tick),
                "high": euros(None if close is None or close.high is None else close.high * tick),
                "low": euros(None if close is None or close.low is None else close.low * tick),
                "last": euros(None if close is None or close.last is None else close.last * tick),
                "volume_lots": 0 if close is None else close.volume,
                "volume_tonnes": 0 if close is None else close.volume_tonnes,
                "vwap": None if close is None else close.vwap,
                "trades": 0 if close is None else close.trades,
                "phase": str(engine.phase(symbol)),
            }
        counts = engine.counts()
        margins = [event for event in events if type(event) is VariationMarginPaid]
        report = {
            "trading_date": trading_date,
            "instruments": instruments,
            **_futures_report(events, fixed, engine),
            "expired_orders": sum(event.expired_orders for event in closed),
            "open_orders": counts.open_orders,
            "accounts": counts.accounts,
            "last_event_seq": counts.events,
        }
        prices = {symbol: engine.settlement_price(symbol) for symbol in engine.instruments}
        statements = {}
        for account_id in engine.account_ids():
            balances = engine.balances(account_id)
            assert balances is not None  # one of the engine's own accounts
            valued = {}
            for symbol, units in balances.units.items():
                price = prices.get(symbol)  # cents a unit (a tonne)
                if units and price is not None:
                    valued[symbol] = units * price
            statements[account_id] = {
                "account": account_id,
                "trading_date": trading_date,
                "cash": euros(balances.cash),
                "cash_cents": balances.cash,
                "cash_held_by_orders": euros(balances.reserved_cash),
                "units": {symbol: units for symbol, units in sorted(balances.units.items()) if units},
                "units_held_by_orders": {s: u for s, u in sorted(balances.reserved_units.items()) if u},
                "units_at_settlement": {symbol: euros(value) for symbol, value in sorted(valued.items())},
                "blocked": balances.blocked,
            }
            margin = engine.margin(account_id)
            if margin is not None and (margin.positions or margin.initial_margin):
                statements[account_id]["futures"] = {
                    "positions": {position.instrument: position.lots for position in margin.positions},
                    "initial_margin": euros(margin.initial_margin),
                    "variation_margin": euros(sum(e.amount for e in margins if e.account == account_id)),
                    "margin_call": margin.margin_called,
                }
        return report, statements


def _futures_report(events: list, fixed: dict[str, SettlementPriceFixed], engine: Engine) -> dict:
    """The day's futures in the report: settlement prices, variation margin, expiries and deliveries (none
    without futures)."""
    spot = engine.instruments
    contracts = {
        symbol: {"settlement_price": euros(event.price), "settlement_method": event.method}
        for symbol, event in sorted(fixed.items())
        if symbol not in spot
    }
    if not contracts:
        return {}
    return {
        "futures": contracts,
        "variation_margin": [
            {"account": e.account, "instrument": e.instrument, "amount": euros(e.amount), "amount_cents": e.amount}
            for e in events
            if type(e) is VariationMarginPaid
        ],
        "expired_contracts": [
            {"instrument": e.instrument, "final_price": euros(e.final_price)}
            for e in events
            if type(e) is ContractExpired
        ],
        "deliveries": [
            {
                "instrument": e.instrument,
                "long": e.long_account,
                "short": e.short_account,
                "units": e.units,
                "cash": euros(e.cash),
                "failed_units": e.failed_units,
                "unpaid_units": e.unpaid_units,
                "compensation": euros(e.compensation),
            }
            for e in events
            if type(e) is FuturesDelivered
        ],
    }


def _write_all(folder: Path, report: dict, statements: dict[str, dict]) -> None:
    (folder / "statements").mkdir(parents=True, exist_ok=True)
    for account_id, statement in statements.items():
        # An account id may hold any character (a quoted TOML key): percent-encoded, it is one plain file name.
        _write_json(folder / "statements" / f"{quote(account_id, safe='')}.json", statement)
    _write_json(folder / "report.json", report)  # last: a day with its report has all its files


def _write_json(path: Path, value: dict) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as file:
        file.write(json.dumps(value, indent=2) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
