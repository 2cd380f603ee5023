"""What the order-book runners share: the workload's lines read before the clock starts, the timed loop, the
result as one JSON line. Standard library only: each runner runs in its own book's environment.

A runner's ``handle(line)`` parses one workload line (``A,id,B|S,price,qty``, ``M,id,B|S,0,qty`` or
``C,id,,,``), builds the book's order or cancel, hands it to the book and returns the trades it made as
(taker id, maker id, price, quantity) tuples, workload ids. Timed: that, for every line, with the garbage
collector on (as a program using the book runs). The tape (every trade, one ``taker,maker,price,qty`` line
each) is hashed after the clock stops.
"""

from __future__ import annotations

import gc
import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path


def run(name: str, handle: Callable[[str], list], workload: Path) -> None:
    """Time ``handle`` over the workload's lines and print the result as a JSON line."""
    lines = workload.read_text().splitlines()
    gc.collect()
    tape: list = []
    extend = tape.extend
    started = time.perf_counter()
    for line in lines:
        trades = handle(line)
        if trades:
            extend(trades)
    seconds = time.perf_counter() - started
    text = "".join(f"{taker},{maker},{price},{qty}\n" for taker, maker, price, qty in tape).encode()
    print(
        json.dumps(
            {
                "book": name,
                "python": platform.python_version(),
                "orders": len(lines),
                "seconds": seconds,
                "orders_per_s": len(lines) / seconds,
                "trades": len(tape),
                "tape_sha256": hashlib.sha256(text).hexdigest(),
            }
        )
    )


def workload_argument() -> Path:
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} WORKLOAD_FILE")
    return Path(sys.argv[1])
