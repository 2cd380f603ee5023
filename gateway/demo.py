"""A simulated trading day: the participants of the carbon market trading on carbonx.

How this works: each participant of ``PARTICIPANTS`` (roles from
shared/DOMAIN.md) has a way of trading: compliance buyers lift EUAs, project
developers sell CERs and ERUs, a broker quotes both sides post-only, a bank
and a speculator trade around the last price, with market, IOC, iceberg and
stop-limit orders among them. A seeded random generator (randomness belongs
here, in the gateway, never in the engine) picks who acts next and what
they send; the commands go through the real engine and its events drive the
printout. The same seed gives the same day.
"""
from __future__ import annotations

import asyncio
import random
import tempfile
from collections import Counter, deque
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TextIO

from exchange import (CancelOrder, ComplianceDeadline, ConfigError, EndOfDay, Engine, InvalidCommand, MassCancel,
                      NewOrder, OrderExpired, OrderRejected, OrderType, RecordEmissions, SelfTradePrevention, Side,
                      Surrender, TimeInForce, Trade, compliance_report, format_report)

from .config import AccountConfig, opening_commands
from .display import eur, ladder, tonnes
from .ledger import SqliteLedgerStore
from .settlement import Settlement, SettlementService, UnknownAccount, format_statement, reconcile, statement

OPEN_NS = 1_700_000_000 * 10**9  # the simulated session's opening timestamp
WORKING_ORDERS = 6  # orders a participant keeps working before it cancels its oldest


# Who acts how often (relative weights); who they are comes from config/accounts.toml.
ACTIVITY = {
    "utility-north": 6, "paper-mill": 3, "cement-works": 3, "broker": 10, "cdm-developer": 4,
    "ji-developer": 3, "gov-fund": 2, "carbon-fund": 2, "bank": 5, "speculator": 3,
}


class Simulation:
    """Drives one engine with the participants' orders."""

    def __init__(self, engine: Engine, seed: int) -> None:
        self.engine = engine
        self.random = random.Random(seed)
        self.ts = OPEN_NS
        self.client_ids = 0
        self.strategies: dict[str, Callable[[], Iterator[NewOrder]]] = {
            "utility-north": self._compliance_buyer, "paper-mill": self._compliance_buyer,
            "cement-works": self._compliance_buyer, "broker": self._market_maker,
            "cdm-developer": self._project_seller, "ji-developer": self._project_seller,
            "gov-fund": self._fund_buyer, "carbon-fund": self._fund_buyer, "bank": self._bank,
            "speculator": self._speculator,
        }
        self.participants = list(ACTIVITY)
        self.weights = list(ACTIVITY.values())
        self.acting = self.participants[0]
        self.working: dict[str, deque] = {}  # each participant's newest client order ids, oldest first
        self.rejected: Counter[str] = Counter()  # reject code name -> orders refused

    # -- the participants' behaviour ------------------------------------------------------

    def _mid(self, symbol: str) -> int:
        book = self.engine.books[symbol]
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            return (bid + ask) // 2
        return book.reference_price()

    def _order(self, symbol: str, side: Side, quantity: int, price: int | None, **options: object) -> NewOrder:
        self.client_ids += 1
        self.ts += self.random.randint(1, 400) * 1_000_000  # a few hundred milliseconds apart
        return NewOrder(ts=self.ts, account=self.acting, client_order_id=f"d{self.client_ids}",
                        instrument=symbol, side=side, quantity=quantity, price=price, **options)

    def _compliance_buyer(self) -> Iterator[NewOrder]:
        symbol = "CER" if self.acting == "cement-works" and self.random.random() < 0.3 else "EUA"
        mid = self._mid(symbol)
        if self.acting == "utility-north" and self.random.random() < 0.5:
            yield self._order(symbol, Side.BUY, self.random.choice((20, 40, 60)), mid - self.random.randint(0, 5),
                              display_quantity=5)
        elif self.random.random() < 0.3:
            yield self._order(symbol, Side.BUY, self.random.randint(1, 10), mid + 10,
                              time_in_force=TimeInForce.IOC)
        else:
            yield self._order(symbol, Side.BUY, self.random.randint(1, 15), mid - self.random.randint(0, 15))

    def _market_maker(self) -> Iterator[object]:
        symbol = self.random.choice(("EUA", "EUA", "CER", "ERU"))
        self.ts += 1_000_000
        yield MassCancel(ts=self.ts, account=self.acting, instrument=symbol)  # refresh: old quotes go first
        mid = self._mid(symbol)
        spread = self.random.randint(2, 8)
        size = self.random.randint(5, 25)
        for side, price in ((Side.BUY, mid - spread), (Side.SELL, mid + spread)):
            yield self._order(symbol, side, size, price, post_only=True,
                              self_trade_prevention=SelfTradePrevention.CANCEL_RESTING)

    def _project_seller(self) -> Iterator[NewOrder]:
        symbol = "CER" if self.acting == "cdm-developer" else "ERU"
        mid = self._mid(symbol)
        yield self._order(symbol, Side.SELL, self.random.randint(5, 50), mid + self.random.randint(-4, 12))

    def _fund_buyer(self) -> Iterator[NewOrder]:
        symbol = "ERU" if self.acting == "gov-fund" and self.random.random() < 0.6 else "CER"
        mid = self._mid(symbol)
        yield self._order(symbol, Side.BUY, self.random.randint(10, 60), mid - self.random.randint(-3, 10),
                          time_in_force=TimeInForce.DAY)

    def _bank(self) -> Iterator[NewOrder]:
        side = self.random.choice((Side.BUY, Side.SELL))
        mid = self._mid("EUA")
        edge = self.random.randint(-6, 10)
        price = mid - edge if side is Side.BUY else mid + edge
        yield self._order("EUA", side, self.random.randint(1, 20), price,
                          self_trade_prevention=SelfTradePrevention.CANCEL_TAKING)

    def _speculator(self) -> Iterator[NewOrder]:
        side = self.random.choice((Side.BUY, Side.SELL))
        last = self.engine.books["EUA"].last_price or self._mid("EUA")
        if self.random.random() < 0.5:
            yield self._order("EUA", side, self.random.randint(1, 8), None, order_type=OrderType.MARKET,
                              time_in_force=TimeInForce.IOC)
        else:  # a breakout stop: buy above the last price, sell below it
            stop = last + 15 if side is Side.BUY else last - 15
            limit = stop + 5 if side is Side.BUY else stop - 5
            yield self._order("EUA", side, self.random.randint(1, 8), limit, stop_price=stop)

    # -- running --------------------------------------------------------------------------

    def step(self) -> list:
        """One participant acts; returns the engine's events.

        Like a trader watching a screen, a participant keeps only its few
        newest orders working and cancels the oldest beyond them, so its cash
        and units are not all held back by stale orders.
        """
        self.acting = self.random.choices(self.participants, weights=self.weights)[0]
        events: list = []
        working = self.working.setdefault(self.acting, deque())
        try:
            for command in self.strategies[self.acting]():
                if type(command) is NewOrder:
                    working.append(command.client_order_id)
                    while len(working) > WORKING_ORDERS:
                        self.ts += 1_000
                        events += self.engine.handle(CancelOrder(ts=self.ts, account=self.acting,
                                                                 client_order_id=working.popleft()))
                events += self.engine.handle(command)
        except InvalidCommand as exc:
            self.rejected[exc.code.name] += 1  # a strategy priced itself off the book (a negative price, say)
        self.rejected.update(event.code.name for event in events if type(event) is OrderRejected)
        return events

    def close(self) -> list:
        self.ts += 1_000_000
        return self.engine.handle(EndOfDay(ts=self.ts, trading_date=20261127))


# The compliance year the demo closes: verified emissions of the installations (tonnes), reported by
# 31 March and covered by surrender before the deadline (30 September from 2024; DOMAIN.md).
COMPLIANCE_YEAR = 2026
COMPLIANCE_DEADLINE = 20270930
VERIFIED_EMISSIONS = {"utility-north": 520_000, "paper-mill": 400_000, "cement-works": 170_000}  # the mill falls short


def run_demo(engine: Engine, accounts: Mapping[str, AccountConfig], out: TextIO, orders: int = 2000,
             seed: int = 2005, show_trades: int = 25, ledger_path: Path | None = None,
             statements: Sequence[str] = ()) -> None:
    """Simulate a trading day and a compliance deadline through the engine, settling every event.

    Events stream to the settlement service (a bounded queue drained by its
    own task into the SQLite ledger at ``ledger_path``, a temporary file when
    none is given) while matching goes on; at the end the ledger is
    reconciled with the engine's view of holdings.
    """
    missing = [account for account in ACTIVITY if account not in accounts]
    if missing:
        raise ConfigError("accounts", f"the demo needs these participants: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="carbonx-demo-") as scratch:
        path = ledger_path or Path(scratch) / "ledger.sqlite3"
        asyncio.run(_run_demo(engine, accounts, out, orders, seed, show_trades, path, statements))


async def _run_demo(engine: Engine, accounts: Mapping[str, AccountConfig], out: TextIO, orders: int, seed: int,
                    show_trades: int, ledger_path: Path, statements: Sequence[str]) -> None:
    store = SqliteLedgerStore(ledger_path)
    try:
        settle = Settlement(store, engine.instruments, fee_account=engine.fee_account.account_id)
        async with SettlementService(settle) as settlement:
            settlement.submit(engine.handle_all(opening_commands(accounts, OPEN_NS)))
            simulation = Simulation(engine, seed)
            _print_trading_day(engine, accounts, simulation, settlement, orders, show_trades, out)
            settlement.submit(_close_compliance_year(engine, simulation, out))
            await settlement.drain()
        report = reconcile(engine, store)
        print(f"settlement ledger ({ledger_path}):", file=out)
        for line in report.summary():
            print("    " + line, file=out)
        for account in statements:
            print(file=out)
            try:
                lines = format_statement(statement(engine, store, account))
            except UnknownAccount:
                lines = [f"statement: no account {account!r} (the accounts are those of config/accounts.toml, "
                         f"{engine.fee_account.account_id!r} and {engine.compliance.config.penalty_account!r})"]
            for line in lines:
                print(line, file=out)
    finally:
        store.close()


def _print_trading_day(engine: Engine, accounts: Mapping[str, AccountConfig], simulation: Simulation,
                       settlement: SettlementService, orders: int, show_trades: int, out: TextIO) -> None:
    print("carbonx demo: a simulated trading day on EUA, CER and ERU (engine only; no network)", file=out)
    print("participants:", file=out)
    for account_id in ACTIVITY:
        print(f"  {account_id:<14} {accounts[account_id].name}", file=out)
    print(file=out)
    trades: list[Trade] = []
    for _ in range(orders):
        events = simulation.step()
        settlement.submit(events)
        for event in events:
            if type(event) is Trade:
                trades.append(event)
                if len(trades) <= show_trades:
                    instrument = engine.instruments[event.instrument]
                    buyer, seller = ((event.taker_account, event.maker_account) if event.aggressor_side is Side.BUY
                                     else (event.maker_account, event.taker_account))
                    print(f"trade #{event.trade_id:<5} {event.instrument} {event.quantity:>3} lots "
                          f"({tonnes(event.quantity, instrument)}) @ EUR {eur(event.price)}  "
                          f"buyer {buyer:<14} seller {seller}", file=out)
    if len(trades) > show_trades:
        print(f"... {len(trades) - show_trades} more trades", file=out)
    print(file=out)
    for symbol, book in engine.books.items():
        instrument = engine.instruments[symbol]
        own = [t for t in trades if t.instrument == symbol]
        lots = sum(t.quantity for t in own)
        vwap = sum(t.price * t.quantity for t in own) // lots if lots else None
        print(f"{symbol} ({instrument.name}): {len(own)} trades, {lots} lots ({tonnes(lots, instrument)}), "
              f"last EUR {eur(book.last_price)}, VWAP EUR {eur(vwap)}", file=out)
        for line in ladder(book):
            print("    " + line, file=out)
        print(file=out)
    closing = simulation.close()
    settlement.submit(closing)
    expired = sum(1 for event in closing if type(event) is OrderExpired)
    refused = ", ".join(f"{name} {count}" for name, count in simulation.rejected.most_common())
    print(f"orders refused during the day: {sum(simulation.rejected.values())} ({refused or 'none'})", file=out)
    print(f"end of day: DAY orders expired: {expired}; state hash {engine.state_hash()[:16]}", file=out)
    print(file=out)


def _close_compliance_year(engine: Engine, simulation: Simulation, out: TextIO) -> list:
    """The registry's side: verified emissions, surrenders from what each installation holds, the deadline."""
    commands: list = []
    ts = simulation.ts
    allowances, credits = engine.compliance.config.allowances, engine.compliance.config.credits
    for account_id, tonnes_emitted in VERIFIED_EMISSIONS.items():
        ts += 1_000
        commands.append(RecordEmissions(ts=ts, account=account_id, year=COMPLIANCE_YEAR, tonnes=tonnes_emitted))
    events = engine.handle_all(commands)
    commands = []
    for account_id, tonnes_emitted in VERIFIED_EMISSIONS.items():
        account = engine.accounts[account_id]
        owed = tonnes_emitted
        credit_room = tonnes_emitted * engine.compliance.installations[account_id].credit_limit_bps // 10_000
        for symbol in (*credits, *allowances):  # credits first: they are cheaper and capped
            available = account.units[symbol] - account.reserved_units[symbol]
            units = min(available, owed, credit_room if symbol in credits else owed)
            if units > 0:
                ts += 1_000
                commands.append(Surrender(ts=ts, account=account_id, year=COMPLIANCE_YEAR, instrument=symbol,
                                          units=units))
                owed -= units
                if symbol in credits:
                    credit_room -= units
    ts += 1_000
    commands.append(ComplianceDeadline(ts=ts, year=COMPLIANCE_YEAR, date=COMPLIANCE_DEADLINE))
    events += engine.handle_all(commands)
    print(f"compliance {COMPLIANCE_YEAR} (deadline {COMPLIANCE_DEADLINE}):", file=out)
    for line in format_report(compliance_report(engine.compliance, year=COMPLIANCE_YEAR)):
        print("    " + line, file=out)
    print(file=out)
    return events
