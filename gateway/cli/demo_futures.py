"""The demo's futures: a curve of three Decembers in contango traded each day, the end of day's variation
margin, and the expiry of the November month with delivery into the registry accounts.

How this works: the demo's exchange lists the EUA futures of config/futures.toml (docs/FUTURES.md). Each
demo day, in continuous trading, the participants below trade over their sessions like any client: the bank
makes a market in each December around the spot price carried forward (``CARRY_BPS`` a year: contango),
the utility buys Decembers to hedge its coming surrenders, the speculator sells them, and the CDM developer,
flush with the cash of the credits it sold, buys the November contract from the bank for delivery; all of them
DAY orders, gone at each close. On the second day the utility also hedges with a block of the second December
agreed with the bank off the book and reported by both. Nothing here is random: the same days give the same
futures trades. The end of day (the calendar's) settles each contract and pays variation margin; the last
demo day is the November contract's last trading day (the last Monday of the month), so its positions are
delivered: the developer receives allowances against cash at the final settlement price. What the day's report
(``days/YYYYMMDD/report.json``) says of it is printed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from exchange import Side
from exchange.instruments import cents_to_eur
from gateway.cli.display import eur
from gateway.client import ExchangeClient
from gateway.node import TradingGateway

CARRY_BPS = 250  # the curve's carry a year over spot, basis points: Decembers priced in contango
MAKER, HEDGER, SELLER, BUYER = "bank", "utility-north", "speculator", "cdm-developer"  # who trades the futures
DECEMBERS = 3  # the curve traded: the three nearest Decembers
HALF_SPREAD = 5  # cents: the bank's quotes either side of its price
BLOCK_LOTS = 50  # the utility's block with the bank (ICE Endex's minimum block)


def curve(gateway: TradingGateway) -> list[str]:
    """The Decembers traded (nearest first) and, before them, the nearest month if it is not a December."""
    contracts = gateway.engine.futures_contracts("EUA")
    decembers = [symbol for symbol in contracts if symbol[-3] == "Z"][:DECEMBERS]
    nearest = contracts[:1] if contracts and contracts[0] not in decembers else []
    return nearest + decembers


def fair_price(spot: int, months_ahead: int, tick: int) -> int:
    """Spot carried forward ``months_ahead`` at ``CARRY_BPS`` a year, on the tick (cents)."""
    price = spot + spot * CARRY_BPS * months_ahead // (12 * 10_000)
    return price - price % tick


async def trade_curve(
    gateway: TradingGateway, sessions: Mapping[str, ExchangeClient], day: int, today: tuple[int, int], out: TextIO
) -> None:
    """One demo day's futures trading: the bank's quotes, then the hedger, the seller and the buyer take them.
    ``day``: the demo day's number (client order ids); ``today``: (year, month)."""
    engine = gateway.engine
    spot = engine.last_price("EUA") or engine.reference_price("EUA")
    lines = []
    for symbol in curve(gateway):
        instrument = engine.instrument(symbol)
        if instrument is None:
            continue
        tick = instrument.tick_size
        year, month = 2000 + int(symbol[-2:]), "FGHJKMNQUVXZ".index(symbol[-3]) + 1
        price = fair_price(spot, (year - today[0]) * 12 + month - today[1], tick)
        bid, ask = price - HALF_SPREAD, price + HALF_SPREAD
        maker = sessions[MAKER]
        await maker.new_order(symbol, "B", 10, bid // tick, client_order_id=f"f{day}-{symbol}-bid", time_in_force="DAY")
        await maker.new_order(symbol, "S", 10, ask // tick, client_order_id=f"f{day}-{symbol}-ask", time_in_force="DAY")
        if symbol[-3] == "Z":
            await sessions[HEDGER].new_order(
                symbol, "B", 4, ask // tick, client_order_id=f"f{day}-{symbol}-hedge", time_in_force="DAY"
            )
            await sessions[SELLER].new_order(
                symbol, "S", 2, bid // tick, client_order_id=f"f{day}-{symbol}-sell", time_in_force="DAY"
            )
        else:  # the month about to expire: the developer buys it for delivery
            await sessions[BUYER].new_order(
                symbol, "B", 3, ask // tick, client_order_id=f"f{day}-{symbol}-buy", time_in_force="DAY"
            )
        lines.append(f"{symbol} bid {eur(bid)} ask {eur(ask)}")
    print(f"futures over spot EUR {eur(spot)}: " + "; ".join(lines), file=out)
    if day == 1:  # (days are numbered from 0: the second demo day)
        await block_trade(gateway, sessions, out)


async def block_trade(gateway: TradingGateway, sessions: Mapping[str, ExchangeClient], out: TextIO) -> None:
    """The utility's larger hedge, agreed with the bank off the book: a block of ``BLOCK_LOTS`` of the second
    December at the bank's mid, reported by both (docs/FUTURES.md section 6)."""
    decembers = [symbol for symbol in curve(gateway) if symbol[-3] == "Z"]
    if len(decembers) < 2:
        return
    symbol, engine = decembers[1], gateway.engine
    instrument, bids, asks = (
        engine.instrument(symbol),
        engine.depth(symbol, Side.BUY, 1),
        engine.depth(symbol, Side.SELL, 1),
    )
    if instrument is None or not bids or not asks:
        return
    tick = instrument.tick_size
    mid = (bids[0][0] + asks[0][0]) // 2
    price = (mid - mid % tick) // tick
    await sessions[HEDGER].report_block("demo-block-1", MAKER, symbol, "B", BLOCK_LOTS, price)
    answer = await sessions[MAKER].report_block("demo-block-1", HEDGER, symbol, "S", BLOCK_LOTS, price)
    if answer.get("status") == "traded":
        print(
            f"block {symbol}: {HEDGER} buys {BLOCK_LOTS} lots from {MAKER} at EUR {eur(price * tick)}, agreed off "
            f"the book and reported by both (trade #{answer['trade_id']})",
            file=out,
        )
    else:
        print(f"block {symbol} not registered: {answer}", file=out)


def print_day(folder: Path, out: TextIO) -> None:
    """The futures part of a day's report: settlement, variation margin, expiries and deliveries."""
    report = json.loads((folder / "report.json").read_text())
    if "futures" not in report:
        return
    settled = ", ".join(
        f"{symbol} EUR {figures['settlement_price'] or '-'} ({figures['settlement_method']})"
        for symbol, figures in report["futures"].items()
        if figures["settlement_price"] is not None
    )
    print(f"    futures settled: {settled}", file=out)
    paid: dict[str, int] = {}
    for margin in report["variation_margin"]:
        paid[margin["account"]] = paid.get(margin["account"], 0) + margin["amount_cents"]
    if paid:
        print(
            "    variation margin: "
            + ", ".join(f"{account} {_signed(cents)}" for account, cents in sorted(paid.items())),
            file=out,
        )
    for expired in report["expired_contracts"]:
        print(f"    {expired['instrument']} expired at its final price EUR {expired['final_price'] or '-'}", file=out)
    for delivery in report["deliveries"]:
        failed = f", {delivery['failed_units']:,} t failed" if delivery["failed_units"] else ""
        if delivery["unpaid_units"]:
            failed += f", {delivery['unpaid_units']:,} t unpaid (the buyer in default)"
        print(
            f"    delivered {delivery['instrument']}: {delivery['units']:,} t from {delivery['short']} to "
            f"{delivery['long']} for EUR {Decimal(delivery['cash']):,.2f}{failed}",
            file=out,
        )


def _signed(cents: int) -> str:
    return f"{'+' if cents >= 0 else '-'}EUR {cents_to_eur(abs(cents), thousands=True)}"
