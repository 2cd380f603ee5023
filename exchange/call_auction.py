"""The price of a call auction: one uniform price for every crossing order.

How this works
--------------
During a call phase (opening, closing, volatility interruption) orders rest
without matching, so the book may cross. When the call ends, every order
that can trade does, all at one price. For a price ``p`` the demand is the
quantity bid at ``p`` or higher, the supply the quantity offered at ``p`` or
lower, and ``min(demand, supply)`` would execute. The auction price is
chosen by these rules, each breaking the ties of the one before:

1. the largest executable quantity;
2. the smallest surplus (``|demand - supply|``, what stays unexecuted on the
   heavier side at that price);
3. the price nearest the reference price (the last trade or auction price,
   else the instrument's configured reference);
4. the lower price (two prices equally near the reference lie on either
   side of it).

Every price on the tick is a candidate, not only the prices orders carry.
Between two neighbouring order prices demand and supply do not change, so
such a stretch is represented by its price nearest the reference; the
search looks at each order price and each stretch, never at every tick.
``tests/test_call_auction.py`` checks it against a search over every tick.

Quantities are whole orders' open lots, iceberg reserves included: the
whole order takes part in an auction, as at EEX.
"""
from __future__ import annotations

from typing import NamedTuple


class AuctionPrice(NamedTuple):
    price: int  # cents
    quantity: int  # lots that execute
    demand: int  # lots bid at the price or higher
    supply: int  # lots offered at the price or lower


def auction_price(bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference: int,
                  tick: int) -> AuctionPrice | None:
    """The auction price of a book, or None if nothing would execute.

    ``bids``: (price, open lots) per bid price, highest first; ``asks``: per
    ask price, lowest first; ``reference`` on the tick. Only the prices where
    bids and asks overlap matter; the others may be left out.
    """
    if not bids or not asks or bids[0][0] < asks[0][0]:
        return None
    prices = sorted({price for price, _ in bids} | {price for price, _ in asks})
    # demand[i]: lots bid at prices[i] or higher; supply[i]: lots offered at prices[i] or lower.
    count = len(prices)
    bid_at = dict(bids)
    ask_at = dict(asks)
    demand = [0] * count
    total = 0
    for index in range(count - 1, -1, -1):
        total += bid_at.get(prices[index], 0)
        demand[index] = total
    supply = [0] * count
    total = 0
    for index in range(count):
        total += ask_at.get(prices[index], 0)
        supply[index] = total
    best: tuple | None = None
    for index in range(count):
        price = prices[index]
        candidates = [(price, demand[index], supply[index])]
        if index + 1 < count and prices[index + 1] - price > tick:
            # Strictly between two order prices: the demand of the next price up, the supply of this one.
            low, high = price + tick, prices[index + 1] - tick
            inside = min(max(reference, low), high)
            candidates.append((inside, demand[index + 1], supply[index]))
        for candidate, bid, offered in candidates:
            executed = min(bid, offered)
            if not executed:
                continue
            key = (-executed, abs(bid - offered), abs(candidate - reference), candidate)
            if best is None or key < best[0]:
                best = (key, AuctionPrice(candidate, executed, bid, offered))
    return None if best is None else best[1]
