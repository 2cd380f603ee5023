"""Turning engine integers into text a trader reads: prices in euros, quantities in lots and tonnes."""
from __future__ import annotations

from exchange import Instrument, OrderBook, Side
from exchange.instruments import cents_to_eur


def eur(cents: int | None) -> str:
    """Integer cents as a euro amount with two decimals ("70.05"); "-" for no price."""
    return "-" if cents is None else cents_to_eur(cents)


def tonnes(lots: int, instrument: Instrument) -> str:
    return f"{lots * instrument.lot_units:,} t"


def ladder(book: OrderBook, levels: int = 5) -> list[str]:
    """The book as a price ladder: asks above (best at the bottom), bids below (best at the top)."""
    asks = book.depth(Side.SELL, levels)
    bids = book.depth(Side.BUY, levels)
    lines = [f"{'orders':>8} {'lots':>8} {'bid':>9} | {'ask':<9} {'lots':<8} {'orders':<8}"]
    for price, lots, orders in reversed(asks):
        lines.append(f"{'':>8} {'':>8} {'':>9} | {eur(price):<9} {lots:<8} {orders:<8}")
    for price, lots, orders in bids:
        lines.append(f"{orders:>8} {lots:>8} {eur(price):>9} | {'':<9} {'':<8} {'':<8}")
    if not asks and not bids:
        lines.append(f"{'(empty book)':^49}")
    return lines
