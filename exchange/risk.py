"""Pre-trade risk: what an order holds back, what a fill moves, what a cancelled lot gives back.

How this works
--------------
With pre-trade risk (the exchange's way, ``Engine(pre_trade_risk=True)``)
every account's holdings live in the engine (``exchange.accounts``): cash in
euro cents and units per instrument, each with the part open orders hold
back. Three moments touch them, and each has its function here:

1. :func:`reserve`, before an order is accepted or amended: the order's
   worst case is held back, or the order is refused (2xx) with nothing
   changed. What one lot holds is kept on the order (``reserve_per_lot``).
2. :func:`settle_fill`, at every fill: the buyer pays, the seller delivers,
   both pay their fee to the fee account, and the filled lots' holds go.
3. :func:`release`, when open lots go without a fill (cancelled, expired,
   amended away): their holds come back.

So for every account and at every moment, the reserved cash is the sum of
``leaves * reserve_per_lot`` over its open buy orders (plus its primary
auction bids, ``exchange.primary_auction``) and the reserved units the same
over its open sell orders (plus what it auctions). Without pre-trade risk
none of this runs: the engine only matches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .codes import RejectCode
from .enums import Side

if TYPE_CHECKING:
    from .accounts import Account
    from .book import OrderBook
    from .orders import Order

BUY: Final = Side.BUY


def reserve(
    account: Account,
    book: OrderBook,
    side: Side,
    price: int | None,
    stop_price: int | None,
    lots: int,
    held: int,
    price_changed: bool = True,
) -> int:
    """Hold back what an order may cost or deliver; return what each lot holds (more than 0), or minus the code of
    the rule it breaks (:func:`refusal` reads it).

    (A number either way, not the RejectCode itself: the code is an int, so "an int or a RejectCode" is an int
    to a type checker, and compiled by mypyc it would come back a plain number.)

    A buy holds its worst-case cost: the price times the lot, plus the
    larger of the two fees; a sell holds the lot's units. A market order is
    valued at its collar price (without a collar: a buy at the instrument's
    highest price, a sell at the reference price). ``held`` is what the order holds already (a replace): it
    counts as available, and the new hold replaces it. The band applies
    to a new price only (``price_changed``): an order keeping its price is not
    refused because the market moved away from it; one-sided (the default), it
    refuses only a buy above it and a sell below it. Nothing changes when a
    rule is broken.
    """
    if price is None:
        collar = book.market_collar
        if side is BUY:
            price = book.max_price if collar is None else book.reference_price() + collar
        else:  # a sell holds units; its price only values it against the account's limit
            price = book.reference_price() if collar is None else max(book.reference_price() - collar, book.min_price)
    elif book.price_band_bps and stop_price is None and price_changed:
        reference = book.reference_price()
        through = price - reference if side is BUY else reference - price  # how far it reaches into the market
        if (through if book.price_band_one_sided else abs(through)) * 10_000 > reference * book.price_band_bps:
            return -RejectCode.PRICE_OUTSIDE_BAND
    lot_units = book.lot_units
    limit = account.order_value_limit
    if limit is not None and price * lots * lot_units > limit:
        return -RejectCode.ORDER_VALUE_OVER_LIMIT
    margin = book.margin_per_lot
    if margin:  # a futures contract: either side holds initial margin in cash, no units
        per_lot = margin + book.max_fee
        hold = per_lot * lots - held
        if hold > 0:  # (an order holding no more, a replace that lowers it, is taken even from a called account)
            if account.margin_called:
                return -RejectCode.MARGIN_CALL
            if hold > account.cash - account.reserved_cash:
                return -RejectCode.INSUFFICIENT_CASH
        account.reserved_cash += hold
        return per_lot
    if side is BUY:
        per_lot = price * lot_units + book.max_fee
        hold = per_lot * lots - held
        if hold > account.cash - account.reserved_cash:
            return -RejectCode.INSUFFICIENT_CASH
        account.reserved_cash += hold
        return per_lot
    symbol = book.symbol
    hold = lot_units * lots - held
    if hold > account.units[symbol] - account.reserved_units[symbol]:
        return -RejectCode.INSUFFICIENT_UNITS
    account.reserved_units[symbol] += hold
    return lot_units


def refusal(reserved: int) -> RejectCode:
    """The rule a negative answer of :func:`reserve` names."""
    return _CODES[-reserved]


_CODES: Final = {int(code): code for code in RejectCode}


def settle_fill(
    book: OrderBook,
    fee_account: Account,
    taker: Order,
    maker: Order,
    price: int,
    fill: int,
    maker_fee: int,
    taker_fee: int,
) -> None:
    """Move one fill's units, cash and fees in the engine's view of holdings.

    The buyer pays the price and its fee and frees what its order held
    back for these lots (at its limit, so any price improvement returns
    to its available cash); the seller delivers the units it held back
    and receives the price less its fee; the fee account gets both fees
    (``maker_fee`` and ``taker_fee`` are this fill's, in cents).
    """
    clearing = book.clearing
    if clearing is not None:  # a futures contract: the position changes, fees are paid, nothing is delivered
        clearing.settle_fill(book, fee_account, taker, maker, price, fill, maker_fee, taker_fee)
        return
    symbol = book.symbol
    units = fill * book.lot_units
    notional = price * units
    if taker.side is BUY:
        buyer, buyer_fee, seller, seller_fee = taker.account, taker_fee, maker.account, maker_fee
        buyer_frees = fill * taker.reserve_per_lot
    else:
        buyer, buyer_fee, seller, seller_fee = maker.account, maker_fee, taker.account, taker_fee
        buyer_frees = fill * maker.reserve_per_lot
    buyer.cash -= notional + buyer_fee
    buyer.reserved_cash -= buyer_frees
    buyer.units[symbol] += units
    seller.units[symbol] -= units
    seller.reserved_units[symbol] -= units  # a sell holds exactly its lots' units
    seller.cash += notional - seller_fee
    fee_account.cash += maker_fee + taker_fee


def release(order: Order, lots: int) -> None:
    """Give back what ``lots`` open lots of the order held (they were cancelled, expired or amended away)."""
    if order.side is BUY or order.book.margin_per_lot:  # (a futures order holds cash on either side)
        order.account.reserved_cash -= lots * order.reserve_per_lot
    else:
        order.account.reserved_units[order.book.symbol] -= lots * order.reserve_per_lot
