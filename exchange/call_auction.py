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
``tests/exchange/test_call_auction.py`` checks it against a search over every tick.

Quantities are whole orders' open lots, iceberg reserves included: the
whole order takes part in an auction, as at EEX.

Running it on a book
--------------------
:func:`indicative_price` is the auction's outcome if the call ended now
(announced during the call by :func:`announce_indicative` after every batch
that changed the book); :func:`uncross` ends the call: bids by price then
time meet asks by price then time, every fill at the auction price, and each
side pays the maker fee (nobody takes liquidity in an auction). A resting
order's shown part refills in place: the whole order took part, so it keeps
its time priority. The engine calls both when a phase changes
(``Engine._set_trading_phase``) and when a batch ends in a call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from .book_side import EMPTY, BookSide, Level, drop_dead_entries
from .enums import CALL_PHASES, Side
from .events import AuctionCompleted, AuctionIndicative, Trade
from .risk import settle_fill

if TYPE_CHECKING:
    from .book import OrderBook
    from .orders import Order

BUY: Final = Side.BUY


class AuctionPrice(NamedTuple):
    price: int  # cents
    quantity: int  # lots that execute
    demand: int  # lots bid at the price or higher
    supply: int  # lots offered at the price or lower


def auction_price(
    bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference: int, tick: int
) -> AuctionPrice | None:
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


# -- running the auction on a book ---------------------------------------------------------------


def indicative_price(book: OrderBook) -> AuctionPrice | None:
    """The auction's price and quantity if the call ended now; None if nothing would execute."""
    bids, asks = book.bids, book.asks
    if bids.best == EMPTY or asks.best == EMPTY or -bids.best < asks.best:
        return None
    # Only levels where the sides overlap can execute: bids at or above the best ask, asks at or below
    # the best bid.
    return auction_price(
        _open_lots(bids, -asks.best), _open_lots(asks, -bids.best), book.reference_price(), book.instrument.tick_size
    )


def announce_indicative(book: OrderBook, events: list, ts: int) -> None:
    """During a call, after a batch that changed the book: the indicative auction price and quantity."""
    found = indicative_price(book)
    seq = book.counters.next_seq()
    if found is None:
        events.append(AuctionIndicative(seq, ts, book.symbol, book.phase, None, 0, 0, 0))
    else:
        events.append(
            AuctionIndicative(seq, ts, book.symbol, book.phase, found.price, found.quantity, found.demand, found.supply)
        )


def uncross(book: OrderBook, events: list, ts: int) -> None:
    """End a call: the auction. Every order that can trade at the auction price does, bids by price then
    time against asks by price then time; then an AuctionCompleted event (also when nothing traded)."""
    counters = book.counters
    found = indicative_price(book)
    trades = 0
    if found is not None:
        price = found.price
        remaining = found.quantity
        buys = _auction_queue(book.bids, -price, remaining)
        sells = _auction_queue(book.asks, price, remaining)
        fee_account = book.fee_account
        fee_per_lot = book.instrument.maker_fee  # nobody takes liquidity in an auction
        touched: dict[int, tuple[BookSide, Level]] = {}
        buy_index = sell_index = 0
        while remaining:
            buy, sell = buys[buy_index], sells[sell_index]
            fill = min(buy.leaves, sell.leaves, remaining)
            remaining -= fill
            fee = fee_per_lot * fill
            _auction_fill(book, buy, fill, touched)
            _auction_fill(book, sell, fill, touched)
            seq = counters.next_seq()
            trade_id = counters.next_trade_id()
            events.append(
                Trade(
                    seq,
                    ts,
                    book.symbol,
                    trade_id,
                    price,
                    fill,
                    None,
                    buy.order_id,
                    buy.account.account_id,
                    buy.client_order_id,
                    buy.leaves,
                    sell.order_id,
                    sell.account.account_id,
                    sell.client_order_id,
                    sell.leaves,
                    fee,
                    fee,
                )
            )
            if fee_account is not None:
                settle_fill(book, fee_account, buy, sell, price, fill, fee, fee)
            trades += 1
            if not buy.leaves:
                buy_index += 1
            if not sell.leaves:
                sell_index += 1
        for own, level in touched.values():
            if not level.count:
                own.remove_level(own.sign * level.price)
            else:
                drop_dead_entries(level, level.count)
        book.last_price = price
        if book.settling:  # a closing auction inside the settlement window counts towards its price
            book.window_value += price * found.quantity
            book.window_lots += found.quantity
    if trades or book.phase in CALL_PHASES:  # (a halt entered from continuous trading has no auction)
        events.append(
            AuctionCompleted(
                counters.next_seq(),
                ts,
                book.symbol,
                book.phase,
                None if found is None else found.price,
                0 if found is None else found.quantity,
                trades,
            )
        )


def _open_lots(own: BookSide, reach_key: int) -> list[tuple[int, int]]:
    """(price, open lots with icebergs' reserves) per level of a side, in priority, up to a key."""
    out = []
    for key in own.keys:
        if key > reach_key:
            break
        level = own.levels[key]
        out.append((level.price, sum(order.leaves for order in level.live_orders())))
    return out


def _auction_queue(own: BookSide, reach_key: int, quantity: int) -> list[Order]:
    """The side's orders in priority, at prices up to ``reach_key``, until they hold ``quantity`` lots."""
    queue = []
    for key in own.keys:
        if key > reach_key or quantity <= 0:
            break
        for order in own.levels[key].live_orders():
            queue.append(order)
            quantity -= order.leaves
            if quantity <= 0:
                break
    return queue


def _auction_fill(book: OrderBook, order: Order, fill: int, touched: dict[int, tuple[BookSide, Level]]) -> None:
    """Take an auction fill off a resting order: its shown part refills in place (no new time priority:
    the whole order took part); a filled order leaves its level and is retired."""
    own = book.bids if order.side is BUY else book.asks
    price = order.price
    assert price is not None  # a resting order has a limit
    level = own.levels[own.sign * price]
    leaves = order.leaves = order.leaves - fill
    if leaves:
        display = order.display_quantity
        shown = leaves if display is None or display > leaves else display
        level.quantity += shown - order.visible
        order.visible = shown
    else:
        level.quantity -= order.visible
        order.visible = 0
        level.count -= 1
        book.retire(order)
    own.changed[level.price] = level
    touched[id(level)] = (own, level)
