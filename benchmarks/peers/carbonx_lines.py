"""The workload through carbonx's engine, line by line, as a program using it as a library would:
``python carbonx_lines.py WORKLOAD [--no-risk]``.

Each line becomes a ``NewOrder`` (limit, or market IOC) or ``CancelOrder`` of one of 100 accounts (id
modulo 100, opened and funded before the clock starts, as benchmarks/engine_bench.py does), with its
timestamp, handed to ``Engine.handle`` one at a time with pre-trade risk on (``--no-risk``: off); its
``Trade`` events are the trades.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine_bench import ACCOUNT_IDS, ACCOUNTS, SYMBOL, benchmark_engine  # noqa: E402
from lines import run  # noqa: E402

from exchange import CancelOrder, NewOrder, OrderType, Side, TimeInForce, Trade  # noqa: E402


def main() -> None:
    risk = "--no-risk" not in sys.argv[1:]
    paths = [argument for argument in sys.argv[1:] if argument != "--no-risk"]
    if len(paths) != 1:
        raise SystemExit(f"usage: {sys.argv[0]} WORKLOAD_FILE [--no-risk]")
    engine = benchmark_engine(pre_trade_risk=risk)
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
                instrument=SYMBOL,
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

    run("carbonx" if risk else "carbonx (risk off)", handle, Path(paths[0]))


if __name__ == "__main__":
    main()
