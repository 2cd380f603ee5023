"""``carbonx demo``: the exchange running, and the carbon market's participants trading on it over sockets.

How this works: the whole exchange starts in this process (engine,
settlement into a SQLite ledger, the trading gateway on a loopback port).
Each participant of ``ACTIVITY`` (roles from shared/DOMAIN.md) logs on
with the client library as a trading client would, and trades its way:
compliance buyers lift EUAs, project developers sell CERs and ERUs, a
broker quotes both sides post-only, funds buy, a bank and a speculator
trade around the last price, with market, IOC, iceberg and stop-limit
orders among them. Before acting a participant looks at the book (a
``book`` request), as a trader looks at a screen. A seeded random
generator (randomness belongs here, never in the engine) picks who acts
and what they send; participants act one after another, so the same seed
gives the same day.

The exchange runs on its trading calendar (config/calendar.toml) with a
simulated clock: two trading days (DEMO_DAYS), each from its opening
auction through its settlement window to its close; the demo moves the
clock over the hours between these scenes and the calendar does the rest
(phases, settlement prices, the end of day, DAY orders expiring, each
day's report and statements). While the days run, a terminal shows the
books and the latest trades (on a terminal: redrawn in place; otherwise
the first trades are printed as they happen). Then, if the accounts have
the competent authority, the compliance year is closed over the wire (the
authority records allocations and verified emissions, the installations
surrender, the authority closes the year), the
settlement ledger is reconciled with the engine's holdings, and the
summary is printed. Before that, if the accounts have the auctioneer, the member state sells
allowances in a primary auction: a few participants send sealed bids and the exchange clears it when
its one-second window closes (the exchange draws the auction's seed, so bids tied at the clearing price
may be served in another order from one run to the next). ``--keep-serving`` leaves the exchange running
afterwards for ``carbonx book``, ``carbonx order`` and friends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TextIO

from exchange import (
    ComplianceConfig,
    ConfigError,
    RejectCode,
    Side,
)
from exchange.clearing import FuturesConfig
from exchange.instruments import Instrument, eur_to_cents
from gateway.cli.compliance import position_lines, report_line
from gateway.cli.demo_futures import print_day as print_futures_day
from gateway.cli.demo_futures import trade_curve
from gateway.cli.display import auction_summary, eur, ladder, tonnes
from gateway.client import ExchangeClient, LogonRefused, connect
from gateway.config import AccountConfig, ServerConfig
from gateway.lifecycle import ExchangeStopped
from gateway.node import TradingGateway, run_until_stopped, running_exchange
from gateway.schedule.calendar import TradingCalendar, date_number
from gateway.schedule.clock import SimulatedClock
from gateway.schedule.runner import point_name
from gateway.sessions.credentials import DEMO_SECRET
from gateway.settlement.ledger import SqliteLedgerStore
from gateway.settlement.service import UnknownAccount, format_statement, reconcile, statement

WORKING_ORDERS = 6  # orders a participant keeps working before it cancels its oldest
# The simulated trading days (a Thursday, a Friday and a Monday, the November futures' last trading day)
DEMO_DAYS = (dt.date(2026, 11, 26), dt.date(2026, 11, 27), dt.date(2026, 11, 30))
TRADING_DATE = 20261130  # the last of them
WINDOW_SHARE = 0.1  # of each day's participant actions, in its settlement window
WATCHER = "market-ops"  # the operator account whose session draws the screen
AUCTIONEER = "de-auctioneer"  # the member state that sells allowances in the day's primary auction
AUCTION_ID = f"DE-{TRADING_DATE}"
AUCTION_VOLUME = 40_000  # allowances
AUCTION_WINDOW = 1  # seconds: a demo's bidding window (EEX's is two hours)
AUCTION_BIDDERS = ("utility-north", "gov-fund", "carbon-fund", "bank", "broker")
REJECT_NAMES = {code.value: code.name for code in RejectCode}  # how the day's refusals are counted

# Who acts how often (relative weights); who they are comes from config/accounts.toml.
ACTIVITY = {
    "utility-north": 6,
    "paper-mill": 3,
    "cement-works": 3,
    "broker": 10,
    "cdm-developer": 4,
    "ji-developer": 3,
    "gov-fund": 2,
    "carbon-fund": 2,
    "bank": 5,
    "speculator": 3,
}

# The compliance year the demo closes over the wire: the authority records each installation's free allocation
# and verified emissions (reported by 31 March), the installations surrender, and the authority closes the year;
# its deadline, 30 September 2026, has passed by the demo's days (docs/COMPLIANCE.md).
AUTHORITY = "de-authority"
COMPLIANCE_YEAR = 2025
ALLOCATION = {"utility-north": 300_000, "paper-mill": 250_000, "cement-works": 150_000}  # free allocation, units
VERIFIED_EMISSIONS = {"utility-north": 520_000, "paper-mill": 400_000, "cement-works": 170_000}  # the mill falls short


@dataclass(frozen=True)
class Quote:
    """What a participant sees of a book before acting: prices in ticks (cents for the shipped instruments)."""

    bid: int | None
    ask: int | None
    last: int | None
    reference: int

    @property
    def mid(self) -> int:
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) // 2
        return self.last if self.last is not None else self.reference


class Simulation:
    """The participants' behaviour: who acts next, on which instrument, and the messages they send."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.client_ids = 0
        self.participants = list(ACTIVITY)
        self.weights = list(ACTIVITY.values())
        self.working: dict[str, deque] = {}  # each participant's newest client order ids, oldest first
        self.choosers: dict[str, Callable[[str], str]] = {
            "utility-north": self._compliance_symbol,
            "paper-mill": self._compliance_symbol,
            "cement-works": self._compliance_symbol,
            "broker": self._maker_symbol,
            "cdm-developer": lambda _: "CER",
            "ji-developer": lambda _: "ERU",
            "gov-fund": self._fund_symbol,
            "carbon-fund": self._fund_symbol,
            "bank": lambda _: "EUA",
            "speculator": lambda _: "EUA",
        }
        self.strategies: dict[str, Callable[[str, str, Quote], list[dict]]] = {
            "utility-north": self._compliance_buyer,
            "paper-mill": self._compliance_buyer,
            "cement-works": self._compliance_buyer,
            "broker": self._market_maker,
            "cdm-developer": self._project_seller,
            "ji-developer": self._project_seller,
            "gov-fund": self._fund_buyer,
            "carbon-fund": self._fund_buyer,
            "bank": self._bank,
            "speculator": self._speculator,
        }

    def next_participant(self) -> tuple[str, str]:
        """Who acts next, and on which instrument."""
        who = self.random.choices(self.participants, weights=self.weights)[0]
        return who, self.choosers[who](who)

    def messages(self, who: str, symbol: str, quote: Quote) -> list[dict]:
        """What ``who`` sends, given the book it sees.

        Like a trader watching a screen, a participant keeps only its few
        newest orders working and cancels the oldest beyond them, so its cash
        and units are not all held back by stale orders.
        """
        out = []
        working = self.working.setdefault(who, deque())
        for message in self.strategies[who](who, symbol, quote):
            if message["type"] == "new_order":
                working.append(message["client_order_id"])
                while len(working) > WORKING_ORDERS:
                    out.append({"type": "cancel_order", "client_order_id": working.popleft()})
            out.append(message)
        return out

    def _order(self, symbol: str, side: str, quantity: int, price: int | None, **options: object) -> dict:
        self.client_ids += 1
        message = {
            "type": "new_order",
            "client_order_id": f"d{self.client_ids}",
            "instrument": symbol,
            "side": side,
            "quantity": quantity,
            **options,
        }
        if price is not None:
            message["price"] = price
        return message

    # -- choosing an instrument ------------------------------------------------------------

    def _compliance_symbol(self, who: str) -> str:
        return "EUA"  # the only unit that counts for the demo's compliance year (CERs have not since 2013)

    def _maker_symbol(self, who: str) -> str:
        return self.random.choice(("EUA", "EUA", "CER", "ERU"))

    def _fund_symbol(self, who: str) -> str:
        return "ERU" if who == "gov-fund" and self.random.random() < 0.6 else "CER"

    # -- the participants' ways of trading ---------------------------------------------------

    def _compliance_buyer(self, who: str, symbol: str, quote: Quote) -> list[dict]:
        mid = quote.mid
        if who == "utility-north" and self.random.random() < 0.5:
            return [
                self._order(
                    symbol, "B", self.random.choice((20, 40, 60)), mid - self.random.randint(0, 5), display_quantity=5
                )
            ]
        if self.random.random() < 0.3:
            return [self._order(symbol, "B", self.random.randint(1, 10), mid + 10, time_in_force="IOC")]
        return [self._order(symbol, "B", self.random.randint(1, 15), mid - self.random.randint(0, 15))]

    def _market_maker(self, who: str, symbol: str, quote: Quote) -> list[dict]:
        mid = quote.mid
        spread = self.random.randint(2, 8)
        size = self.random.randint(5, 25)
        refresh = {"type": "mass_cancel", "instrument": symbol}  # old quotes go first
        return [refresh] + [
            self._order(symbol, side, size, price, post_only=True, self_trade_prevention="CANCEL_RESTING")
            for side, price in (("B", mid - spread), ("S", mid + spread))
        ]

    def _project_seller(self, who: str, symbol: str, quote: Quote) -> list[dict]:
        return [self._order(symbol, "S", self.random.randint(5, 50), quote.mid + self.random.randint(-4, 12))]

    def _fund_buyer(self, who: str, symbol: str, quote: Quote) -> list[dict]:
        return [
            self._order(
                symbol, "B", self.random.randint(10, 60), quote.mid - self.random.randint(-3, 10), time_in_force="DAY"
            )
        ]

    def _bank(self, who: str, symbol: str, quote: Quote) -> list[dict]:
        side = self.random.choice(("B", "S"))
        edge = self.random.randint(-6, 10)
        price = quote.mid - edge if side == "B" else quote.mid + edge
        return [self._order(symbol, side, self.random.randint(1, 20), price, self_trade_prevention="CANCEL_TAKING")]

    def _speculator(self, who: str, symbol: str, quote: Quote) -> list[dict]:
        side = self.random.choice(("B", "S"))
        last = quote.last if quote.last is not None else quote.mid
        if self.random.random() < 0.5:
            return [
                self._order(symbol, side, self.random.randint(1, 8), None, order_type="MARKET", time_in_force="IOC")
            ]
        stop = last + 15 if side == "B" else last - 15  # a breakout stop: buy above the last price, sell below
        limit = stop + 5 if side == "B" else stop - 5
        return [self._order(symbol, side, self.random.randint(1, 8), limit, stop_price=stop)]


class Tape:
    """What the demo saw: every trade once (from the taker's report), and the orders refused.

    (A cancel that comes too late, the order having filled, is not counted: it is the market's normal
    race, answered with code 403.)
    """

    def __init__(self, ticks: Mapping[str, int]) -> None:
        self.ticks = ticks  # cents per tick, by instrument
        self.trades: list[dict] = []
        self.refused: Counter[str] = Counter()  # reject code name -> orders refused

    def record(self, account: str, message: dict) -> None:
        kind = message["type"]
        if kind == "execution_report" and message["exec_type"] == "trade" and message["liquidity"] == "taker":
            tick = self.ticks.get(message["instrument"])
            if tick is None:  # a futures contract's: the futures scene tells its own (gateway.cli.demo_futures)
                return
            price = message["last_price"] * tick
            self.trades.append({**message, "taker": account, "price_cents": price})
        elif kind == "execution_report" and message["exec_type"] == "rejected" or kind == "reject":
            code = message["code"]
            self.refused[REJECT_NAMES.get(code, str(code))] += 1


def run_demo(
    config: ServerConfig,
    instruments: Mapping[str, Instrument],
    accounts: Mapping[str, AccountConfig],
    compliance: ComplianceConfig,
    calendar: TradingCalendar,
    out: TextIO,
    *,
    orders: int = 2000,
    seed: int = 2005,
    show_trades: int = 25,
    statements: Sequence[str] = (),
    rate: float | None = None,
    keep_serving: bool = False,
    live: bool | None = None,
    futures: FuturesConfig | None = None,
) -> int:
    """Run the demo; returns the exit status. ``live``: redraw a screen (default: when ``out`` is a terminal);
    ``futures``: the EUA futures are listed and traded too (gateway.cli.demo_futures)."""
    missing = [account for account in (*ACTIVITY, WATCHER) if account not in accounts]
    if missing:
        raise ConfigError("accounts", f"the demo needs these participants: {', '.join(missing)}")
    closed = [day.isoformat() for day in DEMO_DAYS if not calendar.is_trading_day(day)]
    if closed:
        raise ConfigError("calendar", f"the demo trades on {', '.join(closed)}, which the calendar closes")
    if live is None:
        live = out.isatty()
    if rate is None:
        rate = 400.0 if live else 0.0  # on a terminal, slow enough to watch
    return asyncio.run(
        _run_demo(
            config,
            instruments,
            accounts,
            compliance,
            calendar,
            out,
            orders,
            seed,
            show_trades,
            statements,
            rate,
            keep_serving,
            live,
            futures,
        )
    )


async def _run_demo(
    config: ServerConfig,
    instruments: Mapping[str, Instrument],
    accounts: Mapping[str, AccountConfig],
    compliance: ComplianceConfig,
    calendar: TradingCalendar,
    out: TextIO,
    orders: int,
    seed: int,
    show_trades: int,
    statements: Sequence[str],
    rate: float,
    keep_serving: bool,
    live: bool,
    futures: FuturesConfig | None,
) -> int:
    # A simulated clock from the first day's opening call; the demo moves it over the hours between its scenes.
    first = DEMO_DAYS[0]
    clock = SimulatedClock(calendar.at(first, calendar.schedules[next(iter(instruments))].opening_call), 1.0)
    async with running_exchange(config, instruments, accounts, compliance, calendar, clock, futures) as gateway:
        closed = gateway.engine.last_closed_date
        if closed is not None and closed >= date_number(first):
            raise ConfigError(
                "journal.data_dir", f"{config.data_dir} has traded the demo's days already: give a new one"
            )
        port = gateway.port
        print(
            f"carbonx demo: the exchange is listening on {config.host}:{port}; "
            f"{len(ACTIVITY)} participants log on and trade EUA, CER and ERU on the trading calendar, "
            f"{len(DEMO_DAYS)} days from {first:%A %d %B %Y} ({calendar.zone.key} time, a simulated clock)",
            file=out,
        )
        tape = Tape({symbol: instrument.tick_size for symbol, instrument in instruments.items()})
        async with AsyncExitStack() as stack:
            logons = [
                asyncio.create_task(
                    stack.enter_async_context(connect(config.host, port, account, DEMO_SECRET)),
                    name=f"demo-logon-{account}",
                )
                for account in (*ACTIVITY, WATCHER)
            ]
            sessions = dict(zip((*ACTIVITY, WATCHER), await asyncio.gather(*logons), strict=True))
            feeds = [
                asyncio.create_task(_follow(account, client, tape, out, show_trades, live), name=f"demo-feed-{account}")
                for account, client in sessions.items()
            ]
            progress = _Progress()
            screen = (
                asyncio.create_task(_screen(sessions[WATCHER], tape, out, progress, orders), name="demo-screen")
                if live
                else None
            )
            started = time.perf_counter()
            simulation = Simulation(seed)
            days = DaysOnTheCalendar(gateway, calendar, clock, out)
            for number, day in enumerate(DEMO_DAYS):
                actions = orders // len(DEMO_DAYS) + (orders % len(DEMO_DAYS) if number == 0 else 0)
                in_window = int(actions * WINDOW_SHARE)
                await days.move_to(day, "continuous")
                await _trade(sessions, simulation, actions - in_window, rate, progress)
                if futures is not None:
                    await trade_curve(gateway, sessions, number, (day.year, day.month), out)
                await days.move_to(day, "settlement_window")
                await _trade(sessions, simulation, in_window, rate, progress)
                if number == len(DEMO_DAYS) - 1 and screen is not None:
                    screen.cancel()
                    await asyncio.gather(screen, return_exceptions=True)
                    await _draw(sessions[WATCHER], tape, out, progress, orders)
                if number == len(DEMO_DAYS) - 1:
                    elapsed = time.perf_counter() - started
                    _day_summary(gateway, tape, out, orders, elapsed, 0 if live else show_trades)
                await days.close(day)  # before they leave
            if AUCTIONEER in accounts:
                auctioneer = await stack.enter_async_context(connect(config.host, port, AUCTIONEER, DEMO_SECRET))
                await _primary_auction(auctioneer, sessions, random.Random(seed), out)
            for feed in feeds:
                feed.cancel()
        if AUTHORITY in accounts:
            await _close_compliance_year(gateway, config.host, port, out)
        await gateway.settlement.drain()
        _print_settlement(gateway, out, statements)
        if keep_serving:
            print(
                f"the exchange keeps running on {config.host}:{port} (Ctrl-C to stop); try:\n"
                f"    carbonx book EUA --port {port} --account bank\n"
                f"    carbonx order --port {port} --account bank sell 5 EUA 70.50",
                file=out,
            )
            await run_until_stopped(gateway)
    return 0


class _Progress:
    def __init__(self) -> None:
        self.actions = 0


async def _trade(
    sessions: Mapping[str, ExchangeClient], simulation: Simulation, actions: int, rate: float, progress: _Progress
) -> None:
    """The participants act one after another: look at the book, send, wait for each answer."""
    pause = 1.0 / rate if rate > 0 else 0.0
    for _ in range(actions):
        who, symbol = simulation.next_participant()
        client = sessions[who]
        book = await client.book(symbol, 1)
        reference = next(entry["reference_price"] for entry in client.logon["instruments"] if entry["symbol"] == symbol)
        quote = Quote(
            book["bids"][0][0] if book["bids"] else None,
            book["asks"][0][0] if book["asks"] else None,
            book["last_price"],
            reference,
        )
        for message in simulation.messages(who, symbol, quote):
            await client.request(message)
        progress.actions += 1
        if pause:
            await asyncio.sleep(pause)


async def _follow(account: str, client: ExchangeClient, tape: Tape, out: TextIO, show_trades: int, live: bool) -> None:
    async for message in client.messages():
        before = len(tape.trades)
        tape.record(account, message)
        if not live and len(tape.trades) > before and len(tape.trades) <= show_trades:
            print(_trade_line(tape.trades[-1]), file=out)


def _trade_line(trade: dict) -> str:
    buyer_is_taker = trade["side"] == "B"
    taker = trade["taker"]
    return (
        f"trade #{trade['trade_id']:<5} {trade['instrument']} {trade['last_quantity']:>3} lots "
        f"@ EUR {eur(trade['price_cents'])}  taker {taker:<14} ({'buys' if buyer_is_taker else 'sells'})"
    )


async def _screen(watcher: ExchangeClient, tape: Tape, out: TextIO, progress: _Progress, actions: int) -> None:
    while True:
        await _draw(watcher, tape, out, progress, actions)
        await asyncio.sleep(0.5)


async def _draw(watcher: ExchangeClient, tape: Tape, out: TextIO, progress: _Progress, actions: int) -> None:
    """Redraw the terminal: each instrument's ladder, then the latest trades."""
    lines = [
        f"carbonx demo: {progress.actions}/{actions} participant actions, {len(tape.trades)} trades (Ctrl-C stops)",
        "",
    ]
    for entry in watcher.logon["instruments"]:
        book = await watcher.book(entry["symbol"], 5)
        tick = eur_to_cents(entry["tick_size"])
        last = None if book["last_price"] is None else book["last_price"] * tick
        lines.append(f"{entry['symbol']}  last EUR {eur(last)}")
        lines.extend("    " + line for line in ladder(book["bids"], book["asks"], tick))
        lines.append("")
    lines.append("latest trades:")
    lines.extend("    " + _trade_line(trade) for trade in tape.trades[-8:])
    out.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
    out.flush()


class DaysOnTheCalendar:
    """The demo's trading days: the simulated clock moved to each scene, the exchange's calendar doing the rest
    (phases, auctions, settlement prices, the end of day and its files)."""

    def __init__(self, gateway: TradingGateway, calendar: TradingCalendar, clock: SimulatedClock, out: TextIO) -> None:
        self.gateway = gateway
        self.calendar = calendar
        self.clock = clock
        self.out = out

    async def move_to(self, day: dt.date, action: str) -> None:
        """Move the clock to the day's ``action`` and wait until the calendar has carried it out everywhere."""
        points = [point for point in self.calendar.points(day) if point.action == action]
        self.clock.jump_to(max(point.at for point in points))  # (instruments may have their own times)
        wanted = {point_name(point) for point in points}
        await self._until(lambda: wanted <= self.gateway.engine.schedule_done(date_number(day)))

    async def close(self, day: dt.date) -> None:
        """Move the clock to the day's close; once the end of day is done, tell what it fixed."""
        number = date_number(day)
        self.clock.jump_to(self.calendar.points(day)[-1].at)
        engine = self.gateway.engine
        folder = self.gateway.data_dir / "days" / str(number)
        await self._until(lambda: engine.last_closed_date == number and (folder / "report.json").exists())
        report = json.loads((folder / "report.json").read_text())
        prices = ", ".join(
            f"{symbol} EUR {figures['settlement_price'] or '-'} ({figures['settlement_method']})"
            for symbol, figures in report["instruments"].items()
        )
        print(
            f"end of day {day:%a %d %b %Y}: settlement {prices}; DAY orders expired: {report['expired_orders']}; "
            f"report and {len(list((folder / 'statements').iterdir()))} statements in {folder}"
            f"{'' if self.gateway.config.data_dir else ' (a temporary folder: --data-dir keeps them)'}",
            file=self.out,
        )
        print_futures_day(folder, self.out)

    async def _until(self, done: Callable[[], bool]) -> None:
        runner = self.gateway.calendar
        assert runner is not None  # the demo runs on the calendar
        while not done():
            if self.gateway.failure is not None:  # the exchange stopped: nothing will come
                raise ExchangeStopped(f"the exchange failed: {self.gateway.failure}")
            runner.wake()
            await asyncio.sleep(0.005)


def _day_summary(
    gateway: TradingGateway, tape: Tape, out: TextIO, actions: int, elapsed: float, show_trades: int
) -> None:
    engine = gateway.engine
    if show_trades and len(tape.trades) > show_trades:
        print(f"... {len(tape.trades) - show_trades} more trades", file=out)
    print(f"\n{actions} participant actions in {elapsed:.1f} s over the socket protocol", file=out)
    print(file=out)
    for symbol, instrument in engine.instruments.items():
        own = [t for t in tape.trades if t["instrument"] == symbol]
        lots = sum(t["last_quantity"] for t in own)
        vwap = sum(t["price_cents"] * t["last_quantity"] for t in own) // lots if lots else None
        print(
            f"{symbol} ({instrument.name}): {len(own)} trades, {lots} lots ({tonnes(lots, instrument)}), "
            f"last EUR {eur(engine.last_price(symbol))}, VWAP EUR {eur(vwap)}",
            file=out,
        )
        for line in ladder(engine.depth(symbol, Side.BUY, 5), engine.depth(symbol, Side.SELL, 5)):
            print("    " + line, file=out)
        print(file=out)
    refused = ", ".join(f"{name} {count}" for name, count in tape.refused.most_common())
    print(f"orders refused during the days: {sum(tape.refused.values())} ({refused or 'none'})", file=out)
    print(f"state hash before the last close {engine.state_hash()[:16]}", file=out)


async def _primary_auction(
    auctioneer: ExchangeClient, sessions: Mapping[str, ExchangeClient], rng: random.Random, out: TextIO
) -> None:
    """The member state's primary auction: sealed bids around the day's last EUA price, cleared by the exchange
    when the window closes; the published results."""
    opened = await auctioneer.open_auction(AUCTION_ID, "EUA", AUCTION_VOLUME, AUCTION_WINDOW)
    if opened["type"] != "auction_report":
        print(f"primary auction not opened: {opened.get('code')} {opened.get('text')}", file=out)
        return
    last = (await auctioneer.book("EUA", 1))["last_price"]
    if last is None:
        last = next(entry["reference_price"] for entry in auctioneer.logon["instruments"] if entry["symbol"] == "EUA")
    for bidder in AUCTION_BIDDERS:
        client = sessions[bidder]
        cash = next(entry["available"] for entry in (await client.balances())["balances"] if entry["asset"] == "EUR")
        for number in range(rng.randint(1, 2)):
            price = last + rng.randint(-80, 20)  # ticks (cents)
            lots = min(rng.randint(4, 40), cash // (price * 500))  # what the bidder's free cash pays for
            if lots <= 0:
                break
            cash -= lots * 500 * price
            answer = await client.submit_bid(AUCTION_ID, f"{bidder}-{number + 1}", price, 500 * lots)
            if answer["type"] != "bid_report":
                print(f"    bid of {bidder} refused: {answer.get('code')} {answer.get('text')}", file=out)
    deadline = time.monotonic() + AUCTION_WINDOW + 10
    status = await auctioneer.auction_status(AUCTION_ID)
    while status["status"] == "open" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        status = await auctioneer.auction_status(AUCTION_ID)
    ticks = {entry["symbol"]: eur_to_cents(entry["tick_size"]) for entry in auctioneer.logon["instruments"]}
    print("primary auction:", file=out)
    for line in auction_summary(status, ticks).splitlines():
        print("    " + line, file=out)
    print(file=out)


async def _close_compliance_year(gateway: TradingGateway, host: str, port: int, out: TextIO) -> None:
    """The registry's side, over the wire: the authority records allocations and verified emissions, each
    installation surrenders what counts from what it holds, and the authority closes the year.

    (These sessions leave cancel-on-disconnect off: they hold no orders, and their logouts then cause no engine
    command that could still be settling when the ledger is reconciled.)
    """
    rules = gateway.engine.compliance_config
    async with AsyncExitStack() as stack:
        authority = await stack.enter_async_context(_compliance_session(host, port, AUTHORITY))
        for account_id, tonnes_emitted in VERIFIED_EMISSIONS.items():
            for answer in (
                await authority.record_allocation(account_id, COMPLIANCE_YEAR, ALLOCATION[account_id]),
                await authority.record_emissions(account_id, COMPLIANCE_YEAR, tonnes_emitted),
            ):
                if answer["type"] != "compliance_report":
                    raise ConfigError("accounts", f"the demo needs {account_id} as an installation: {answer}")
        for account_id, tonnes_emitted in VERIFIED_EMISSIONS.items():
            async with _compliance_session(host, port, account_id) as installation:
                (row,) = (await installation.compliance_position(COMPLIANCE_YEAR))["rows"]
                available = {b["asset"]: b["available"] for b in (await installation.balances())["balances"]}
                owed, credit_room = tonnes_emitted, row["credits_left"]
                for symbol in (*rules.credits, *rules.allowances):  # credits first: they are cheaper and capped
                    if not rules.counts_for(symbol, COMPLIANCE_YEAR):
                        continue  # (CERs and ERUs count for no year since 2013)
                    units = min(available.get(symbol, 0), owed, credit_room if symbol in rules.credits else owed)
                    if units > 0 and (await installation.surrender(COMPLIANCE_YEAR, symbol, units))["type"] == (
                        "compliance_report"
                    ):
                        owed -= units
                        credit_room -= units if symbol in rules.credits else 0
        closed = await authority.close_compliance_year(COMPLIANCE_YEAR)
        position = await authority.compliance_position(COMPLIANCE_YEAR)
    print(f"compliance {COMPLIANCE_YEAR}, closed by {AUTHORITY} over the wire: {report_line(closed)}", file=out)
    for line in position_lines(position):
        print("    " + line, file=out)
    print(file=out)


@asynccontextmanager
async def _compliance_session(host: str, port: int, account: str) -> AsyncIterator[ExchangeClient]:
    """A session of an account whose trading session has just logged out: the exchange may not have ended
    that one yet (703), so the logon is tried again for a second at most."""
    for attempt in range(50):
        manager = connect(host, port, account, DEMO_SECRET, cancel_on_disconnect=False)
        try:
            client = await manager.__aenter__()
            break
        except LogonRefused as refused:
            if refused.code != int(RejectCode.ALREADY_LOGGED_ON) or attempt == 49:
                raise
            await asyncio.sleep(0.02)
    try:
        yield client
    finally:
        await manager.__aexit__(None, None, None)


def _print_settlement(gateway: TradingGateway, out: TextIO, statements: Sequence[str]) -> None:
    engine = gateway.engine
    store = gateway.settlement.settlement.store
    report = reconcile(engine, store)
    where = store.path if isinstance(store, SqliteLedgerStore) else type(store).__name__
    print(f"settlement ledger ({where}):", file=out)
    for line in report.summary():
        print("    " + line, file=out)
    for account in statements:
        print(file=out)
        try:
            lines = format_statement(statement(engine, store, account))
        except UnknownAccount:
            lines = [
                f"statement: no account {account!r} (the accounts are those of config/accounts.toml, "
                f"{engine.fee_account_id!r} and {engine.compliance_config.penalty_account!r})"
            ]
        for line in lines:
            print(line, file=out)
