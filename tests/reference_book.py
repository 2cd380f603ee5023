"""A deliberately simple reference order book: the yardstick the engine is compared against.

How it works
------------
Each side of the book is one plain Python list of resting orders, kept in
matching priority: best price first and, at one price, earliest arrival first.
Putting an order in the book scans the list for the first order with a worse
price and inserts in front of it, which is behind every order at the same
price (time priority). The best maker is always ``side[0]``. Cancel scans for
the order. There is no index, no sorted container and no cached best price:
every answer is a linear scan anyone can check by eye. It is independent of
``exchange/`` and uses plain strings ("B", "GTC", "CANCEL_RESTING"), which
compare equal to the engine's string enums.

Rules, the same as the engine's documented ones:

1. Price-time priority; a trade prints at the resting (maker) order's price.
2. A limit order trades while the best opposite price reaches its limit; a
   market order (price None) trades at any price. What is left: a GTC limit
   order rests, an IOC limit order is cancelled (IOC_REMAINDER), a market
   order is dropped (MARKET_REMAINDER).
3. FOK is all or nothing: the match is first played out on copies of the
   taker and the opposite side (iceberg refills and self-trade prevention
   included); if the copy does not fill in full, nothing trades and the order
   is killed (FOK_UNFILLED, market or limit); otherwise it is matched for real.
4. An iceberg shows at most ``display`` lots. A taker fills at most the
   shown part of a maker at a time; when the shown part is used up and a
   reserve remains, the next slice is shown and the order goes to the back of
   its level.
5. Self-trade prevention (the taker's mode), checked maker by maker before
   each fill, a self trade being two orders of one account: CANCEL_RESTING
   cancels the maker and matching goes on; CANCEL_TAKING stops the taker
   (its rest is cancelled, reason SELF_TRADE); CANCEL_BOTH does both.
6. A post-only order that would trade on entry is refused, and so is a
   replace that would move it to such a price; nothing happens.
7. Replace: a lower total quantity at the same price keeps the order's place;
   any other change takes it out and enters it again as a new arrival, which
   may trade.

Everything that happens is appended to ``log`` as a :class:`Fill` or a
:class:`Cancel`, in the order it happens.
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass

BUY, SELL = "B", "S"
GTC, IOC, FOK = "GTC", "IOC", "FOK"
NO_STP, CANCEL_RESTING, CANCEL_TAKING, CANCEL_BOTH = "NONE", "CANCEL_RESTING", "CANCEL_TAKING", "CANCEL_BOTH"


@dataclass(eq=False)  # orders are compared by identity: list.remove must find this very order
class RestingOrder:
    """An order in the book, or on its way in (a taker is one of these until it rests or is done)."""

    order_id: object  # whatever the caller names its orders by
    account: str
    side: str
    price: int
    quantity: int  # total ordered, filled part included
    leaves: int  # still open, shown and hidden
    shown: int  # the part visible in the book
    display: int | None  # iceberg slice size; None: everything is shown
    stp: str
    post_only: bool = False


@dataclass(frozen=True)
class Fill:
    """One trade, at the maker's price; the leaves are what each side has open after it."""

    taker: object
    maker: object
    price: int
    quantity: int
    taker_leaves: int
    maker_leaves: int


@dataclass(frozen=True)
class Cancel:
    """Open quantity taken off an order, with the engine's reason word (USER, SELF_TRADE, ...)."""

    order_id: object
    quantity: int
    reason: str


class ReferenceBook:
    """One instrument's book: two lists in priority order and the log of what happened."""

    def __init__(self) -> None:
        self.bids: list[RestingOrder] = []
        self.asks: list[RestingOrder] = []
        self.log: list[Fill | Cancel] = []

    # -- commands ---------------------------------------------------------------------------

    def submit(
        self,
        order_id: object,
        account: str,
        side: str,
        quantity: int,
        price: int | None = None,
        tif: str = GTC,
        display: int | None = None,
        stp: str = NO_STP,
        post_only: bool = False,
    ) -> bool:
        """A new order; ``price=None`` makes it a market order. False if refused (post-only that would trade)."""
        order = RestingOrder(order_id, account, side, price, quantity, quantity, 0, display, stp, post_only)
        if post_only and self._would_trade(order, price):
            return False
        self._match_and_place(order, is_market=price is None, tif=tif)
        return True

    def cancel(self, order_id: object) -> bool:
        """Cancel a resting order; False if no such order rests."""
        order = self._find(order_id)
        if order is None:
            return False
        self._own_side(order).remove(order)
        self.log.append(Cancel(order_id, order.leaves, "USER"))
        return True

    def replace(self, order_id: object, quantity: int, price: int) -> bool:
        """Change a resting order's total quantity and/or price; False if refused."""
        order = self._find(order_id)
        if order is None:
            return False
        filled = order.quantity - order.leaves
        if quantity <= filled or (quantity == order.quantity and price == order.price):
            return False
        if order.post_only and price != order.price and self._would_trade(order, price):
            return False
        if price == order.price and quantity < order.quantity:
            order.quantity = quantity
            order.leaves = quantity - filled
            order.shown = min(order.shown, order.leaves)
            return True
        self._own_side(order).remove(order)
        order.price = price
        order.quantity = quantity
        order.leaves = quantity - filled
        self._match_and_place(order, is_market=False, tif=GTC)
        return True

    # -- queries ----------------------------------------------------------------------------

    def listing(self) -> list[tuple[str, int, object, int]]:
        """(side, price, order id, leaves): bids best first, then asks best first, in time priority."""
        return [(order.side, order.price, order.order_id, order.leaves) for order in self.bids + self.asks]

    def shown(self) -> dict[object, int]:
        """Shown quantity of every resting order, by order id."""
        return {order.order_id: order.shown for order in self.bids + self.asks}

    def trades(self) -> list[tuple[object, object, int, int]]:
        """The trade tape: (taker id, maker id, price, quantity)."""
        return [(f.taker, f.maker, f.price, f.quantity) for f in self.log if isinstance(f, Fill)]

    # -- matching ---------------------------------------------------------------------------

    def _match_and_place(self, taker: RestingOrder, is_market: bool, tif: str) -> None:
        opposite = self.asks if taker.side == BUY else self.bids
        if tif == FOK and not self._fills_in_full(taker, opposite, is_market):
            self.log.append(Cancel(taker.order_id, taker.leaves, "FOK_UNFILLED"))
            return
        taker_stopped = self._sweep(taker, opposite, is_market, self.log)
        if taker.leaves == 0:
            return
        if taker_stopped:
            self.log.append(Cancel(taker.order_id, taker.leaves, "SELF_TRADE"))
        elif is_market:
            self.log.append(Cancel(taker.order_id, taker.leaves, "MARKET_REMAINDER"))
        elif tif in (IOC, FOK):
            self.log.append(Cancel(taker.order_id, taker.leaves, "IOC_REMAINDER"))
        else:
            self._insert(self._own_side(taker), taker)

    def _fills_in_full(self, taker: RestingOrder, opposite: list[RestingOrder], is_market: bool) -> bool:
        """Would this order fill completely now? Plays the match out on copies, logging nothing."""
        trial_taker = copy(taker)
        self._sweep(trial_taker, [copy(maker) for maker in opposite], is_market, log=[])
        return trial_taker.leaves == 0

    def _sweep(self, taker: RestingOrder, opposite: list[RestingOrder], is_market: bool, log: list) -> bool:
        """Trade the taker against ``opposite`` best first; True if self-trade prevention stopped it."""
        while taker.leaves > 0 and opposite:
            maker = opposite[0]
            if not is_market and not self._reaches(taker, maker.price):
                break
            if taker.stp != NO_STP and maker.account == taker.account:
                if taker.stp in (CANCEL_RESTING, CANCEL_BOTH):
                    opposite.pop(0)
                    log.append(Cancel(maker.order_id, maker.leaves, "SELF_TRADE"))
                if taker.stp in (CANCEL_TAKING, CANCEL_BOTH):
                    return True
                continue
            fill = min(maker.shown, taker.leaves)
            taker.leaves -= fill
            maker.leaves -= fill
            maker.shown -= fill
            log.append(Fill(taker.order_id, maker.order_id, maker.price, fill, taker.leaves, maker.leaves))
            if maker.shown == 0:
                opposite.pop(0)
                if maker.leaves > 0:  # iceberg: the next slice goes to the back of its level
                    self._insert(opposite, maker)
        return False

    def _would_trade(self, order: RestingOrder, price: int) -> bool:
        """True if a limit order of this side at this price would meet the opposite side's best."""
        opposite = self.asks if order.side == BUY else self.bids
        if not opposite:
            return False
        return opposite[0].price <= price if order.side == BUY else opposite[0].price >= price

    @staticmethod
    def _reaches(taker: RestingOrder, maker_price: int) -> bool:
        """True if a limit taker may trade at this maker's price."""
        return maker_price <= taker.price if taker.side == BUY else maker_price >= taker.price

    @staticmethod
    def _insert(side: list[RestingOrder], order: RestingOrder) -> None:
        """Rest an order on ``side`` behind every order at its price or better, showing its next slice."""
        order.shown = order.leaves if order.display is None else min(order.display, order.leaves)
        for position, other in enumerate(side):
            worse = other.price < order.price if order.side == BUY else other.price > order.price
            if worse:
                side.insert(position, order)
                return
        side.append(order)

    def _own_side(self, order: RestingOrder) -> list[RestingOrder]:
        return self.bids if order.side == BUY else self.asks

    def _find(self, order_id: object) -> RestingOrder | None:
        for order in self.bids + self.asks:
            if order.order_id == order_id:
                return order
        return None
