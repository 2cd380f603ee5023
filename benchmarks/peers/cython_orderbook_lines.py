"""The workload through cython-orderbook (PyPI), line by line: ``python cython_orderbook_lines.py WORKLOAD``,
run with the Python of an environment where ``pip install cython-orderbook`` was done.

Each limit or market line becomes the library's ``Order`` (integer ticks as prices), added with
``add_limit_order`` or ``add_market_order``; the library numbers orders itself, 1, 2, 3 ... from the
process's start, which are the workload's ids (every limit and market line takes the next one, cancels
none: were it otherwise, the tape would show it). A cancel names that number. The trades are what its
trade log gained.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cython_orderbook import Order, OrderBook, OrderSide  # noqa: E402
from lines import run, workload_argument  # noqa: E402


def main() -> None:
    book = OrderBook()
    log = book.trade_log
    sides = {"B": OrderSide.BID, "S": OrderSide.ASK}
    add_limit, add_market, cancel = book.add_limit_order, book.add_market_order, book.cancel_order
    seen = 0

    def handle(line: str) -> list:
        nonlocal seen
        kind, order_id, side, price, qty = line.split(",")
        if kind == "C":
            cancel(order_id)
            return []
        if kind == "A":
            order = Order(side=sides[side], price=int(price), original_quantity=int(qty))
            add_limit(order)
        else:
            order = Order(side=sides[side], original_quantity=int(qty))
            add_market(order)
        if len(log) == seen:
            return []
        made = [(int(t.aggressor_id), int(t.filler_id), t.price, t.quantity_filled) for t in log[seen:]]
        seen = len(log)
        return made

    run("cython-orderbook", handle, workload_argument())


if __name__ == "__main__":
    main()
