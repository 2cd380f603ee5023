"""The workload through carbonx's engine, line by line, as a program using it as a library would:
``python carbonx_lines.py WORKLOAD [--no-risk] [--futures] [--root DIR]``.

Each line becomes a ``NewOrder`` (limit, or market IOC) or ``CancelOrder`` of one of 100 accounts (id
modulo 100, opened and funded before the clock starts, as benchmarks/engine_bench.py does), with its
timestamp, handed to ``Engine.handle`` one at a time with pre-trade risk on (``--no-risk``: off; ``--futures``: on
an EUA futures contract, margin held and fills cleared, instead of spot EUA); its
``Trade`` events are the trades. The engine is this checkout's, or the one under ``--root DIR`` (library_bench's
compiled copy, benchmarks/.peers/carbonx-compiled).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

ROOT = Path(sys.argv[sys.argv.index("--root") + 1]) if "--root" in sys.argv else Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(ROOT))

# (the engine first: engine_bench puts this checkout first on the path, and its imports then find it loaded)
from exchange import CancelOrder, Engine, NewOrder, OrderType, Side, TimeInForce, Trade  # noqa: E402, I001

from engine_bench import ACCOUNT_IDS, ACCOUNTS, FUTURES_SYMBOL, SYMBOL, benchmark_engine  # noqa: E402
from lines import run  # noqa: E402


def main() -> None:
    arguments = sys.argv[1:]
    if "--root" in arguments:
        del arguments[arguments.index("--root") : arguments.index("--root") + 2]
    risk = "--no-risk" not in arguments
    futures = "--futures" in arguments
    paths = [argument for argument in arguments if argument not in ("--no-risk", "--futures")]
    if len(paths) != 1 or (futures and not risk):
        raise SystemExit(f"usage: {sys.argv[0]} WORKLOAD_FILE [--no-risk | --futures] [--root DIR]")
    engine = benchmark_engine(pre_trade_risk=risk, futures=futures)
    symbol = FUTURES_SYMBOL if futures else SYMBOL
    handle_command = engine.handle
    sides = {"B": Side.BUY, "S": Side.SELL}
    limit_order, market, gtc, ioc = OrderType.LIMIT, OrderType.MARKET, TimeInForce.GTC, TimeInForce.IOC
    accounts = ACCOUNT_IDS
    clock = iter(range(1, 1 << 62))

    def handle(line: str) -> list:
        kind, order_id, side, price, qty = line.split(",")
        number = int(order_id)
        account = accounts[number % ACCOUNTS]
        if kind == "C":
            command = CancelOrder(ts=next(clock), account=account, client_order_id=number)
        else:
            limit = kind == "A"
            command = NewOrder(
                ts=next(clock),
                account=account,
                client_order_id=number,
                instrument=symbol,
                side=sides[side],
                quantity=int(qty),
                price=int(price) if limit else None,
                order_type=limit_order if limit else market,
                time_in_force=gtc if limit else ioc,
            )
        return [
            (event.taker_client_order_id, event.maker_client_order_id, event.price, event.quantity)
            for event in handle_command(command)
            if type(event) is Trade
        ]

    compiled = Path(inspect.getfile(Engine)).suffix == ".so"
    name = "carbonx futures" if futures else "carbonx" if risk else "carbonx (risk off)"
    run(name + (" compiled" if compiled else ""), handle, Path(paths[0]))


if __name__ == "__main__":
    main()
