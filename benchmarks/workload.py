#!/usr/bin/env python3
"""The standard workload: a deterministic stream of order-book commands, for benchmarks and tests.

usage: python3 benchmarks/workload.py [--orders N] [--seed S] [--mid TICKS] [--depth D] > orders.csv

One command a line, comma separated:

    A,<id>,<B|S>,<price_ticks>,<qty>   add a limit order (good till cancelled)
    M,<id>,<B|S>,0,<qty>               a market order: fill what it can, drop the rest
    C,<id>,,,                          cancel order <id> (it may have filled already)

Prices are integer ticks (EUA at EUR 70.00 with a 0.01 tick is 7000), quantities lots. Ids count from 1
and only adds and market orders take one; a cancel names an earlier add. The same arguments always give
the same bytes, so any two engines with price-time priority print the same trade tape for a file. Every
engine figure of benchmarks/RESULTS.md was measured on this stream: tests/test_workload.py holds it
byte for byte against the reference generator (``shared/bench/workload.py``) when that is at hand.

How it is drawn
---------------
One ``random.Random(seed)``. The order of the draws is part of the format: a change to it changes every
file, so each command draws, in this order:

1. r, uniform in [0, 1), which decides the kind; then the mid price's drift takes a Gaussian step
   (sigma 0.05 ticks), and the centre is ``mid`` plus the drift's whole ticks (truncated towards zero);
2. a cancel if r < 0.45 while more than ``depth`` adds may still rest (else r < 0.20), and there is one:
   the add to cancel is drawn uniformly among those not cancelled yet, which keeps the book near
   ``depth`` orders however long the run; a cancel takes no id and draws nothing more;
3. otherwise the side (even odds) and the quantity (one of 1, 1, 2, 5, 10, 10, 25, 50, 100 lots);
   r below the cancel share plus 0.04 makes it a market order (so does a cancel drawn with nothing left
   to cancel, since its r is below the share too);
4. otherwise a limit order, |Gaussian(sigma 8)| truncated plus one tick away from the centre on its own
   side (below for a buy), except that about one in six (p 0.17) is placed 0-3 ticks through the centre
   instead, and so usually crosses. It may rest: it joins the adds a cancel may name.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator
from typing import TextIO

DEFAULT_ORDERS = 1_000_000
DEFAULT_SEED = 42
DEFAULT_MID = 7000  # ticks: EUR 70.00
DEFAULT_DEPTH = 10_000  # adds that may rest before cancels become likelier
QUANTITIES = (1, 1, 2, 5, 10, 10, 25, 50, 100)  # lots, one drawn uniformly: small orders most often
CANCEL_SHARE, CANCEL_SHARE_DEEP = 0.20, 0.45  # of the commands, while at most / more than ``depth`` may rest
MARKET_SHARE = 0.04  # of the commands, drawn just above the cancel share
DRIFT_SIGMA = 0.05  # ticks per command
OFFSET_SIGMA = 8.0  # ticks from the centre, for an order that stays on its own side
THROUGH_P = 0.17  # chance that a limit order is placed through the centre
THROUGH_MAX = 3  # ticks through the centre, at most


def commands(
    orders: int = DEFAULT_ORDERS, seed: int = DEFAULT_SEED, mid: int = DEFAULT_MID, depth: int = DEFAULT_DEPTH
) -> Iterator[str]:
    """The workload's ``orders`` lines, each ending in a newline. O(1) a line."""
    rng = random.Random(seed)
    # bound methods cached: a lookup each saved on every one of millions of draws
    uniform, gauss, randrange, randint, choice = rng.random, rng.gauss, rng.randrange, rng.randint, rng.choice
    may_rest: list[int] = []  # ids of adds not cancelled yet (filled ones too: cancelling one is a no-op)
    next_id = 1
    drift = 0.0
    for _ in range(orders):
        r = uniform()
        drift += gauss(0.0, DRIFT_SIGMA)
        centre = mid + int(drift)
        cancel_share = CANCEL_SHARE_DEEP if len(may_rest) > depth else CANCEL_SHARE
        if r < cancel_share and may_rest:
            # swap the drawn id to the end and pop it: O(1), and the list's order is part of the stream
            pick = randrange(len(may_rest))
            may_rest[pick], may_rest[-1] = may_rest[-1], may_rest[pick]
            yield f"C,{may_rest.pop()},,,\n"
            continue
        side = "B" if uniform() < 0.5 else "S"
        quantity = choice(QUANTITIES)
        if r < cancel_share + MARKET_SHARE:
            yield f"M,{next_id},{side},0,{quantity}\n"
        else:
            offset = int(abs(gauss(0.0, OFFSET_SIGMA))) + 1
            if uniform() < THROUGH_P:
                offset = -randint(0, THROUGH_MAX)
            price = centre - offset if side == "B" else centre + offset
            yield f"A,{next_id},{side},{price},{quantity}\n"
            may_rest.append(next_id)
        next_id += 1


def write(
    out: TextIO,
    orders: int = DEFAULT_ORDERS,
    seed: int = DEFAULT_SEED,
    mid: int = DEFAULT_MID,
    depth: int = DEFAULT_DEPTH,
) -> None:
    """Write the workload to ``out`` (a text stream; open files with ``newline="\\n"`` for the same bytes
    everywhere)."""
    out.writelines(commands(orders, seed, mid, depth))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS, help="commands to write (%(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the same seed, the same file (%(default)s)")
    parser.add_argument("--mid", type=int, default=DEFAULT_MID, help="starting mid price, ticks (%(default)s)")
    parser.add_argument(
        "--depth", type=int, default=DEFAULT_DEPTH, help="resting orders the cancels keep the book near (%(default)s)"
    )
    args = parser.parse_args(argv)
    write(sys.stdout, args.orders, args.seed, args.mid, args.depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
