"""Trading phases end to end: the volatility interruption and the operator's phase changes through the gateway.

How it works
------------
The whole exchange runs on a free port with the shipped instruments (EUA: a
3% volatility band around the last price, 70.00 EUR to start) and a one
second interruption. Client-library sessions send orders; a third session
subscribes to EUA's status and trades on the trading socket, and the market
operator (``market-ops``) changes phases with ``set_trading_phase``. Every
answer, report and market-data message of the story is checked field by
field. (The engine's side, with every rule, is tests/exchange/test_call_auction.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from gateway_helpers import TIMEOUT, Inbox, assert_fields, eventually, exchange_on_port, session

from gateway.config import load_instruments

SYMBOL = "EUA"
CALL_SECONDS = 1  # the interruption's call: short, so the test sees the gateway's timer end it


def instruments_with_a_short_call():
    return {
        symbol: dataclasses.replace(instrument, volatility_call_seconds=CALL_SECONDS)
        for symbol, instrument in load_instruments().items()
    }


async def next_status(stream, timeout: float = TIMEOUT) -> dict:
    """The next ``status`` market-data message (other channels' messages are skipped)."""

    async def find() -> dict:
        async for message in stream:
            if message["type"] == "status":
                return message
        raise AssertionError("the market-data stream ended")

    return await asyncio.wait_for(find(), timeout)


async def test_a_sweep_beyond_the_band_interrupts_then_the_call_reopens_through_an_auction():
    async with (
        exchange_on_port(instruments=instruments_with_a_short_call()) as gateway,
        session(gateway, "broker") as seller,
        session(gateway, "bank") as buyer,
        session(gateway, "paper-mill") as watcher,
    ):
        assert (await watcher.subscribe([SYMBOL], ["status", "trades"]))["type"] == "subscribed"
        feed = watcher.market_data()
        first = await next_status(feed)
        assert_fields(first, phase="continuous", status="open", reason=None)
        band = next(item for item in buyer.logon["instruments"] if item["symbol"] == SYMBOL)
        assert (band["volatility_band_bps"], band["volatility_call_seconds"]) == (300, CALL_SECONDS)

        sells, buys = Inbox(seller), Inbox(buyer)
        seller.send(seller.new_order_message(SYMBOL, "S", 5, 7000, client_order_id="s-inside"))
        seller.send(seller.new_order_message(SYMBOL, "S", 5, 7300, client_order_id="s-beyond"))
        await sells.expect(exec_type="new", client_order_id="s-inside")
        await sells.expect(exec_type="new", client_order_id="s-beyond")

        # 3% of 70.00 is 2.10: the buy trades at 70.00, then would trade at 73.00, beyond 72.10.
        buyer.send(buyer.new_order_message(SYMBOL, "B", 10, 7300, client_order_id="b-sweep"))
        await buys.expect(exec_type="new", client_order_id="b-sweep")
        await buys.expect(exec_type="trade", last_price=7000, last_quantity=5, liquidity="taker", leaves_quantity=5)
        await sells.expect(exec_type="trade", client_order_id="s-inside", liquidity="maker")
        interrupted = await next_status(feed)
        assert_fields(
            interrupted,
            phase="volatility_interruption",
            status="open",
            reason="volatility",
            trigger_price=7300,
            reference_price=7000,
        )
        indicative = await next_status(feed)  # the crossed book of the call: 5 lots at 73.00
        assert_fields(indicative, phase="volatility_interruption", indicative_price=7300, indicative_quantity=5)
        await buys.nothing_more(0.1)  # the rest of the GTC buy rests in the call: no cancel

        # In the call: an IOC is refused, a limit order joins the auction.
        refused = await buyer.new_order(SYMBOL, "B", 1, 7300, time_in_force="IOC", client_order_id="b-ioc")
        assert_fields(refused, exec_type="rejected", code=302)
        await buys.expect(exec_type="rejected", client_order_id="b-ioc")

        # The gateway ends the call after CALL_SECONDS: the auction, then continuous trading.
        started = time.monotonic()
        buy_fill = await buys.expect(
            timeout=CALL_SECONDS + TIMEOUT,
            exec_type="trade",
            client_order_id="b-sweep",
            last_price=7300,
            last_quantity=5,
            liquidity="auction",
            aggressor_side=None,
            order_status="filled",
        )
        assert time.monotonic() - started >= CALL_SECONDS - 0.5
        assert buy_fill["fee"] == 5 * 200  # nobody takes in an auction: both sides pay the maker fee
        await sells.expect(exec_type="trade", client_order_id="s-beyond", liquidity="auction", fee=5 * 200)
        reopened = await next_status(feed)
        assert_fields(
            reopened,
            phase="continuous",
            status="open",
            reason="operator",
            auction_price=7300,
            auction_quantity=5,
            indicative_price=None,
        )

        # The band now centres on the auction price: 73.00 +- 2.19.
        await eventually(lambda: gateway.engine.books[SYMBOL].last_price == 730_0)


async def test_the_operator_halts_and_reopens_and_runs_an_opening_call():
    async with (
        exchange_on_port() as gateway,
        session(gateway, "market-ops") as ops,
        session(gateway, "broker") as seller,
        session(gateway, "bank") as buyer,
    ):
        sells, buys = Inbox(seller), Inbox(buyer)
        halted = await ops.set_trading_phase(SYMBOL, "halted")
        assert_fields(
            halted,
            type="trading_phase_report",
            instrument=SYMBOL,
            phase="halted",
            previous="continuous",
            auction_price=None,
            auction_quantity=0,
        )
        assert_fields(await buyer.new_order(SYMBOL, "B", 1, 7000), exec_type="rejected", code=127)
        await buys.expect(exec_type="rejected", code=127)
        refused = await ops.set_trading_phase(SYMBOL, "closing_call")
        assert_fields(refused, type="request_rejected", request="set_trading_phase", code=505)
        assert_fields(await ops.set_trading_phase(SYMBOL, "lunch"), type="request_rejected", code=128)
        assert_fields(await ops.set_trading_phase(SYMBOL, "opening_call"), phase="opening_call", previous="halted")

        # The opening call: an ask and two bids that cross, and a market order, refused in a call.
        seller.send(seller.new_order_message(SYMBOL, "S", 4, 6990, client_order_id="o-ask"))
        buyer.send(buyer.new_order_message(SYMBOL, "B", 3, 7010, client_order_id="o-bid-1"))
        buyer.send(buyer.new_order_message(SYMBOL, "B", 3, 7000, client_order_id="o-bid-2"))
        buyer.send(buyer.new_order_message(SYMBOL, "B", 1, None, order_type="MARKET", client_order_id="o-mkt"))
        await sells.expect(exec_type="new", client_order_id="o-ask")
        await buys.expect(exec_type="new", client_order_id="o-bid-1")
        await buys.expect(exec_type="new", client_order_id="o-bid-2")
        await buys.expect(exec_type="rejected", client_order_id="o-mkt", code=302)
        opened = await ops.set_trading_phase(SYMBOL, "continuous", from_phase="opening_call")
        # From 69.90 to 70.00, 6 lots are bid and 4 offered: 4 execute, 2 are left over, at every price of the
        # stretch; above 70.00 only 3 would execute. The reference price, 70.00, decides.
        assert_fields(
            opened,
            phase="continuous",
            previous="opening_call",
            auction_price=7000,
            auction_quantity=4,
            auction_trades=2,
        )
        fills = [await buys.next(), await buys.next()]
        assert [
            (fill["client_order_id"], fill["last_quantity"], fill["last_price"], fill["liquidity"]) for fill in fills
        ] == [("o-bid-1", 3, 7000, "auction"), ("o-bid-2", 1, 7000, "auction")]
        sold = await sells.expect(exec_type="trade", client_order_id="o-ask", last_quantity=3)
        assert sold["liquidity"] == "auction"
        await sells.expect(exec_type="trade", client_order_id="o-ask", last_quantity=1, order_status="filled")
        assert (await ops.set_trading_phase(SYMBOL, "continuous"))["code"] == 505  # already continuous


async def test_set_trading_phase_is_for_operators_only():
    async with exchange_on_port() as gateway, session(gateway, "bank") as client:
        answer = await client.set_trading_phase(SYMBOL, "halted")
        assert_fields(answer, type="reject", code=712)
        assert gateway.engine.books[SYMBOL].phase == "continuous"
