"""Engine throughput on the standard workload, against a bare loop in the same process.

usage: python benchmarks/engine_bench.py --workload FILE [--tape FILE] [--book FILE] [--runs N]

How this works
--------------
The workload file (``benchmarks/workload.py``) is parsed into engine
commands before any timing: every order on EUA, spread over 100 accounts
(workload id modulo 100), the workload id as the client order id. Market
orders sweep with no collar, no price band and no volatility band; self-trade prevention is off;
cancels of orders already gone are answered by the engine with a reject
event, which leaves the book as it was (the workload's "ignored").

The engine runs with pre-trade risk on, as the exchange does: the 100
accounts are opened and funded generously first (untimed), every order
holds back cash or units and every fill moves holdings and fees.
``--risk-cost`` also times the engine without it, in the same process.

Timed, best of ``--runs`` (default 3), alternating with each other:
- the engine: ``Engine.handle_all`` on batches of ``--batch`` commands (256 by
  default: what the gateway hands over at once under load; price levels are
  announced once per batch), keeping every event;
- the bare loop: the same matching on plain tuples with the same
  sortedcontainers structure, dict levels and no objects or events.
Both run with the garbage collector paused, as ``timeit`` does, so neither
pays for the other's garbage (``--gc`` leaves it running).

The engine's trade tape (``taker_id,maker_id,price,qty`` a line, workload
ids) must equal the bare loop's; the run fails otherwise. Memory per resting
order is the traced allocation (tracemalloc) of a fresh engine holding
exactly the final book, divided by the number of resting orders.

The last line printed is:
trades=N volume=Q tape_sha256=H ops_per_s=R resting=K bytes_per_resting_order=B
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from sortedcontainers import SortedList

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exchange import (
    CASH_ASSET,
    CancelOrder,
    Deposit,
    Engine,
    ListFutures,
    NewOrder,
    OpenAccount,
    OrderType,
    Side,  # noqa: E402
    TimeInForce,
    Trade,
)
from gateway.config import load_instruments  # noqa: E402

SYMBOL = "EUA"
# The futures path: the same workload on a December contract, listed on this date (docs/FUTURES.md).
FUTURES_SYMBOL = "EUAZ27"
FUTURES_LISTED_ON = 20261207
GENEROUS_CASH = 10**15  # cents per account: far more than the workload can spend
GENEROUS_UNITS = 10**12  # units per account
DEFAULT_BATCH = 256  # commands per handle_all call: a gateway batch (one journal write) under load
ACCOUNTS = 100
ACCOUNT_IDS = [f"acct{n:02d}" for n in range(ACCOUNTS)]
ADD, MARKET, CANCEL = 0, 1, 2


def read_workload(path: Path) -> list[tuple[int, int, bool, int, int]]:
    """Workload lines as tuples (kind, id, is_buy, price, qty)."""
    kinds = {"A": ADD, "M": MARKET, "C": CANCEL}
    rows = []
    with open(path) as stream:
        for line in stream:
            kind, order_id, side, price, qty = line.rstrip("\n").split(",")
            if kind == "C":
                rows.append((CANCEL, int(order_id), False, 0, 0))
            else:
                rows.append((kinds[kind], int(order_id), side == "B", int(price), int(qty)))
    return rows


def benchmark_engine(pre_trade_risk: bool = True, futures: bool = False) -> Engine:
    """An engine with the configured instruments, EUA without collar or band (the workload's semantics).

    With pre-trade risk (the exchange's way) the 100 accounts are opened and
    funded generously, before any timing, so that no order is refused for
    want of cash or units and the tape stays the workload's. With ``futures``
    the EUA December contracts are listed too (``FUTURES_SYMBOL`` among them:
    the same terms, margin held instead of cash and units, fills cleared).
    """
    instruments = load_instruments()
    instruments[SYMBOL] = dataclasses.replace(
        instruments[SYMBOL], market_collar=None, price_band_bps=0, volatility_band_bps=0
    )
    terms = None
    if futures:
        from exchange.clearing import ContractSeries, FuturesConfig, MarginTerms

        series = ContractSeries(SYMBOL, decembers=2, quarterlies=0, monthlies=0)
        terms = FuturesConfig((series,), {SYMBOL: MarginTerms(scanning_range=8_00, spread_charge=1_50)})
    engine = Engine(instruments, pre_trade_risk=pre_trade_risk, futures=terms)
    if futures:
        engine.handle(ListFutures(ts=0, trading_date=FUTURES_LISTED_ON))
    if pre_trade_risk:
        funding: list[object] = []
        for account in ACCOUNT_IDS:
            funding.append(OpenAccount(ts=0, account=account))
            funding.append(Deposit(ts=0, account=account, asset=CASH_ASSET, amount=GENEROUS_CASH))
            funding.append(Deposit(ts=0, account=account, asset=SYMBOL, amount=GENEROUS_UNITS))
        engine.handle_all(funding)
    return engine


def build_commands(rows: list[tuple[int, int, bool, int, int]]) -> list[object]:
    accounts = ACCOUNT_IDS
    commands: list[object] = []
    for ts, (kind, order_id, is_buy, price, qty) in enumerate(rows, 1):
        account = accounts[order_id % ACCOUNTS]
        if kind == CANCEL:
            commands.append(CancelOrder(ts=ts, account=account, client_order_id=order_id))
        elif kind == ADD:
            commands.append(
                NewOrder(
                    ts=ts,
                    account=account,
                    client_order_id=order_id,
                    instrument=SYMBOL,
                    side=Side.BUY if is_buy else Side.SELL,
                    quantity=qty,
                    price=price,
                )
            )
        else:
            commands.append(
                NewOrder(
                    ts=ts,
                    account=account,
                    client_order_id=order_id,
                    instrument=SYMBOL,
                    side=Side.BUY if is_buy else Side.SELL,
                    quantity=qty,
                    order_type=OrderType.MARKET,
                    time_in_force=TimeInForce.IOC,
                )
            )
    return commands


def run_engine(commands: list[object], batch: int, pre_trade_risk: bool = True) -> tuple[float, Engine, list]:
    engine = benchmark_engine(pre_trade_risk)
    handle_all = engine.handle_all
    events: list = []
    start = time.perf_counter()
    for first in range(0, len(commands), batch):
        events += handle_all(commands[first : first + batch])
    elapsed = time.perf_counter() - start
    return elapsed, engine, events


def run_bare(rows: list[tuple[int, int, bool, int, int]]) -> tuple[float, list, int]:
    """Price-time matching on tuples: SortedList of prices and dict levels per side, nothing else."""
    start = time.perf_counter()
    bid_prices, ask_prices = SortedList(), SortedList()
    bid_levels: dict[int, dict[int, int]] = {}
    ask_levels: dict[int, dict[int, int]] = {}
    where: dict[int, tuple[bool, int]] = {}
    tape: list[tuple[int, int, int, int]] = []
    record = tape.append
    for kind, order_id, is_buy, price, qty in rows:
        if kind == CANCEL:
            found = where.pop(order_id, None)
            if found is not None:
                on_bid, at = found
                levels = bid_levels if on_bid else ask_levels
                level = levels[at]
                del level[order_id]
                if not level:
                    del levels[at]
                    (bid_prices if on_bid else ask_prices).remove(at)
            continue
        prices, levels = (ask_prices, ask_levels) if is_buy else (bid_prices, bid_levels)
        while qty and prices:
            best = prices[0] if is_buy else prices[-1]
            if kind == ADD and (best > price if is_buy else best < price):
                break
            level = levels[best]
            while qty and level:
                maker = next(iter(level))
                maker_qty = level[maker]
                fill = maker_qty if maker_qty < qty else qty
                record((order_id, maker, best, fill))
                qty -= fill
                if fill == maker_qty:
                    del level[maker]
                    del where[maker]
                else:
                    level[maker] = maker_qty - fill
            if not level:
                del levels[best]
                prices.remove(best)
        if qty and kind == ADD:
            own_prices, own_levels = (bid_prices, bid_levels) if is_buy else (ask_prices, ask_levels)
            level = own_levels.get(price)
            if level is None:
                level = own_levels[price] = {}
                own_prices.add(price)
            level[order_id] = qty
            where[order_id] = (is_buy, price)
    elapsed = time.perf_counter() - start
    return elapsed, tape, len(where)


def engine_tape(events: list) -> list[tuple[int, int, int, int]]:
    return [
        (event.taker_client_order_id, event.maker_client_order_id, event.price, event.quantity)
        for event in events
        if type(event) is Trade
    ]


def tape_bytes(tape: list[tuple[int, int, int, int]]) -> bytes:
    return "".join(f"{taker},{maker},{price},{qty}\n" for taker, maker, price, qty in tape).encode()


def book_lines(engine: Engine) -> list[str]:
    book = engine.books[SYMBOL]
    return [
        f"{order.side},{order.price},{order.client_order_id},{order.leaves}"
        for side in (Side.BUY, Side.SELL)
        for order in book.resting_orders(side)
    ]


def bytes_per_resting_order(engine: Engine) -> tuple[int, float]:
    """Traced memory of a fresh engine rebuilt with exactly the final book, per resting order."""
    book = engine.books[SYMBOL]
    resting = [order for side in (Side.BUY, Side.SELL) for order in book.resting_orders(side)]
    commands = [
        NewOrder(
            ts=n,
            account=order.account.account_id,
            client_order_id=order.client_order_id,
            instrument=SYMBOL,
            side=order.side,
            quantity=order.leaves,
            price=order.price,
        )
        for n, order in enumerate(resting, 1)
    ]
    fresh = benchmark_engine()  # accounts exist before the orders, as they would in production
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for command in commands:
        fresh.handle(command)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert book_lines(fresh) == book_lines(engine), "rebuilt book differs"
    return len(resting), (after - before) / max(1, len(resting))


@dataclass
class Timings:
    """Runs of the engine and the bare loop on one workload, alternating (see timed_runs)."""

    engine_times: list[float]
    bare_times: list[float]
    unchecked_times: list[float]  # the engine without pre-trade risk, when asked for
    tape: list
    bare_tape: list
    bare_resting: int
    engine: Engine  # the last run's, holding the final book


def timed_runs(
    rows: list, commands: list, runs: int, batch: int = DEFAULT_BATCH, *, risk_cost: bool = False, keep_gc: bool = False
) -> Timings:
    """``runs`` runs each of the engine and the bare loop (and, with ``risk_cost``, the engine without risk
    checks), alternating, the collector paused unless ``keep_gc``. Raises ValueError if the engine without
    risk checks trades differently; comparing the engine's tape with the bare loop's is the caller's."""
    timings = Timings([], [], [], [], [], 0, None)
    gc.collect()
    if not keep_gc:
        gc.disable()
    try:
        for _ in range(runs):
            elapsed, timings.engine, outputs = run_engine(commands, batch)
            timings.engine_times.append(elapsed)
            timings.tape = engine_tape(outputs)
            del outputs
            elapsed, timings.bare_tape, timings.bare_resting = run_bare(rows)
            timings.bare_times.append(elapsed)
            gc.collect()
            if risk_cost:
                elapsed, _, outputs = run_engine(commands, batch, pre_trade_risk=False)
                timings.unchecked_times.append(elapsed)
                if engine_tape(outputs) != timings.tape:
                    raise ValueError("the engine without pre-trade risk traded differently")
                del outputs
                gc.collect()
    finally:
        gc.enable()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="file written by benchmarks/workload.py")
    parser.add_argument("--tape", type=Path, help="write the trade tape here")
    parser.add_argument("--book", type=Path, help="write the final book here")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each loop; the best counts")
    parser.add_argument(
        "--gc",
        action="store_true",
        help="leave the garbage collector running while timing (default: paused, as timeit does)",
    )
    parser.add_argument(
        "--risk-cost",
        action="store_true",
        help="also time the engine without pre-trade risk and print what the risk path costs",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help="commands per Engine.handle_all call, as the gateway hands them over (default %(default)s)",
    )
    args = parser.parse_args()

    rows = read_workload(args.workload)
    commands = build_commands(rows)
    try:
        timings = timed_runs(rows, commands, args.runs, args.batch, risk_cost=args.risk_cost, keep_gc=args.gc)
    except ValueError as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    engine_times, bare_times, unchecked_times = timings.engine_times, timings.bare_times, timings.unchecked_times
    tape, bare_tape, bare_resting, engine = timings.tape, timings.bare_tape, timings.bare_resting, timings.engine

    if tape != bare_tape:
        first = (
            next(n for n, (a, b) in enumerate(zip(tape, bare_tape, strict=False)) if a != b)
            if tape[: len(bare_tape)] != bare_tape[: len(tape)]
            else min(len(tape), len(bare_tape))
        )
        print(f"FAIL: the engine's tape differs from the bare loop's at trade {first}", file=sys.stderr)
        return 1
    resting, per_order = bytes_per_resting_order(engine)
    if resting != bare_resting:
        print(f"FAIL: {resting} resting orders, the bare loop has {bare_resting}", file=sys.stderr)
        return 1
    data = tape_bytes(tape)
    if args.tape:
        args.tape.write_bytes(data)
    if args.book:
        args.book.write_text("".join(line + "\n" for line in book_lines(engine)))
    engine_rate = len(commands) / min(engine_times)
    bare_rate = len(rows) / min(bare_times)
    print(
        f"commands={len(commands)} batch={args.batch} engine_best_s={min(engine_times):.3f} "
        f"bare_best_s={min(bare_times):.3f}"
    )
    print(
        f"engine_ops_per_s={engine_rate:.0f} bare_ops_per_s={bare_rate:.0f} engine/bare={engine_rate / bare_rate:.3f}"
    )
    if unchecked_times:
        unchecked_rate = len(commands) / min(unchecked_times)
        print(
            f"without_risk_ops_per_s={unchecked_rate:.0f} without_risk/bare={unchecked_rate / bare_rate:.3f} "
            f"with_risk/without_risk={engine_rate / unchecked_rate:.3f}"
        )
    print(
        f"trades={len(tape)} volume={sum(t[3] for t in tape)} tape_sha256={hashlib.sha256(data).hexdigest()} "
        f"ops_per_s={engine_rate:.0f} resting={resting} bytes_per_resting_order={per_order:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
