"""The workload through matching-engine (PyPI), line by line: ``python matching_engine_lines.py WORKLOAD``,
run with the Python of an environment where ``pip install matching-engine`` was done (it needs 3.12).

Each line becomes the library's ``NewOrder`` or ``CancelOrder`` (order ids are the workload's; accounts
id modulo 100, as carbonx's runner; self-trade prevention off, as the workload's semantics), stamped with
a sequence number and a timestamp by a ``SequencedCommand`` as its engine takes them, and processed; its
``Trade`` events are the trades.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lines import run, workload_argument  # noqa: E402
from matching_engine.domain import (  # noqa: E402
    CancelOrder,
    NewOrder,
    OrderType,
    SelfTradePrevention,
    SequencedCommand,
    Side,
    TimeInForce,
)
from matching_engine.engine import MatchingEngine  # noqa: E402
from matching_engine.events import Trade  # noqa: E402

ACCOUNTS = 100


def main() -> None:
    engine = MatchingEngine()
    process = engine.process
    sides = {"B": Side.BUY, "S": Side.SELL}
    stp_off = SelfTradePrevention.NONE
    market, ioc = OrderType.MARKET, TimeInForce.IOC
    counter = iter(range(1, 1 << 62))

    def handle(line: str) -> list:
        kind, order_id, side, price, qty = line.split(",")
        number = int(order_id)
        if kind == "C":
            command = CancelOrder(number, number % ACCOUNTS + 1)
        elif kind == "A":
            command = NewOrder(number, number % ACCOUNTS + 1, sides[side], int(price), int(qty), stp=stp_off)
        else:
            command = NewOrder(number, number % ACCOUNTS + 1, sides[side], 0, int(qty), market, ioc, stp=stp_off)
        seq = next(counter)
        return [
            (event.taker_order_id, event.maker_order_id, event.price, event.qty)
            for event in process(SequencedCommand(seq, seq, command))
            if type(event) is Trade
        ]

    run("matching-engine", handle, workload_argument())


if __name__ == "__main__":
    main()
