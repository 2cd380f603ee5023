"""EU ETS primary auctions end to end: the auctioneer, sealed bids, the clearing timer, reports and market data.

How it works
------------
The whole exchange runs on a free port with the demo configuration; the demo
auctioneer ``de-auctioneer`` opens auctions with a one-second window, demo
accounts bid through the client library, and a third session subscribes to
the ``auctions`` market-data channel. Every report is checked field by field;
holdings are checked through ``balances`` and the settlement ledger is
reconciled against the engine at the end. The engine's rules one by one are
tests/exchange/test_primary_auction.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from gateway_helpers import TIMEOUT, Inbox, assert_fields, eventually, exchange_on_port, session

from gateway.settlement.ledger import SqliteLedgerStore
from gateway.settlement.service import reconcile

SYMBOL = "EUA"
WINDOW = 1  # seconds


async def next_auction_message(stream) -> dict:
    async def find() -> dict:
        async for message in stream:
            if message["type"] == "auction_report":
                return message
        raise AssertionError("the market-data stream ended")

    return await asyncio.wait_for(find(), TIMEOUT + WINDOW)


FEE = 141  # cents per lot of 500 won (config/exchange.toml auction_fee_cents)


def holding(balances: dict, asset: str) -> tuple[int, int]:
    entry = next(item for item in balances["balances"] if item["asset"] == asset)
    return entry["holding"], entry["held"]


async def test_an_auction_from_opening_to_delivery(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    async with (
        exchange_on_port(ledger) as gateway,
        session(gateway, "de-auctioneer") as state,
        session(gateway, "bank") as bank,
        session(gateway, "gov-fund") as fund,
        session(gateway, "paper-mill") as watcher,
    ):
        assert (await watcher.subscribe([SYMBOL], ["auctions"]))["type"] == "subscribed"
        feed = watcher.market_data()
        auctioneer, bank_inbox, fund_inbox = Inbox(state), Inbox(bank), Inbox(fund)
        bank_cash = holding(await bank.balances(), "EUR")[0]
        fund_cash = holding(await fund.balances(), "EUR")[0]
        await bank_inbox.next()
        await fund_inbox.next()

        opened = await state.open_auction("DE-1", SYMBOL, 10_000, WINDOW)
        assert_fields(
            opened,
            type="auction_report",
            status="open",
            auction_id="DE-1",
            instrument=SYMBOL,
            auctioneer="de-auctioneer",
            volume=10_000,
            carried_in=0,
            reserve_discount_bps=2000,
        )
        await auctioneer.next()
        public = await next_auction_message(feed)
        assert {key: public[key] for key in ("status", "volume", "seed_hash", "closes_at")} == {
            key: opened[key] for key in ("status", "volume", "seed_hash", "closes_at")
        }

        # Both are admitted bidders (config/accounts.toml); a bid holds its price and the fee on each lot of 500
        # (EUR 1.41, config/exchange.toml), which a winner pays on the lots it wins.
        refused = await watcher.submit_bid("DE-1", "w-1", 7050, 500)
        assert_fields(refused, type="request_rejected", code=814)  # the paper mill is not admitted
        placed = await bank.submit_bid("DE-1", "b-1", 7050, 6_000)
        assert_fields(
            placed, type="bid_report", status="placed", price=7050, volume=6_000, held=7050 * 6_000 + FEE * 12
        )
        assert_fields(await fund.submit_bid("DE-1", 1, "69.90", 6_000), status="placed", price=6990)
        assert_fields(await fund.submit_bid("DE-1", 2, 6900, 1_000), status="placed")
        assert_fields(
            await fund.modify_bid("DE-1", 2, volume=500), status="modified", volume=500, held=6900 * 500 + FEE
        )
        assert_fields(await fund.withdraw_bid("DE-1", 2), status="withdrawn", released=6900 * 500 + FEE)
        assert_fields(await fund.submit_bid("DE-1", 3, 7000, 700), type="request_rejected", code=803)
        assert_fields(await state.submit_bid("DE-1", "own", 7000, 500), type="request_rejected", code=811)
        assert_fields(await bank.open_auction("X-1", SYMBOL, 500, WINDOW), type="reject", code=712)
        # Sealed: the auctioneer learns how many bids are in, a bidder sees only its own.
        status = await state.auction_status("DE-1")
        assert_fields(status, status="open", bids=2, own_bids=[], result=None)
        status = await fund.auction_status("DE-1")
        assert status["bids"] is None and [bid["bid_id"] for bid in status["own_bids"]] == [1]
        assert holding(await bank.balances(), "EUR") == (bank_cash, 7050 * 6_000 + FEE * 12)
        for inbox, count in ((bank_inbox, 3), (fund_inbox, 6), (auctioneer, 2)):  # the answers above
            for _ in range(count):
                await inbox.next()

        # The window closes; the exchange clears: 6,000 to the bank at 69.90, the rest (4,000) to the fund.
        result = await next_auction_message(feed)
        assert_fields(
            result,
            status="cleared",
            auction_id="DE-1",
            clearing_price=6990,
            volume=10_000,
            total_bid_volume=12_000,
            cover_ratio="1.20",
            bidders=2,
            successful_bidders=2,
            proceeds=6990 * 10_000,
            reserve_price=5600,
        )
        assert hashlib.sha256(result["seed"].encode()).hexdigest() == opened["seed_hash"]
        assert "bids" not in result and "bid_id" not in result  # no bid is ever published
        won = await bank_inbox.next(TIMEOUT + WINDOW)
        assert_fields(
            won,
            type="bid_report",
            bid_id="b-1",
            status="allocated",
            allocated=6_000,
            clearing_price=6990,
            amount=6990 * 6_000,
            fee=FEE * 12,
        )
        assert_fields(
            await fund_inbox.next(), bid_id=1, status="allocated", allocated=4_000, amount=6990 * 4_000, fee=FEE * 8
        )
        assert_fields(
            await auctioneer.next(TIMEOUT + WINDOW), type="auction_report", status="cleared", proceeds=6990 * 10_000
        )
        assert holding(await bank.balances(), "EUR") == (bank_cash - 6990 * 6_000 - FEE * 12, 0)
        assert holding(await fund.balances(), "EUR") == (fund_cash - 6990 * 4_000 - FEE * 8, 0)
        assert holding(await fund.balances(), SYMBOL)[0] == 4_000
        assert_fields((await fund.auction_status("DE-1"))["result"], status="cleared", clearing_price=6990)
    # The exchange has stopped and its settlement drained: the ledger has the deliveries, as the engine.
    store = SqliteLedgerStore(ledger)
    try:
        report = reconcile(gateway.engine, store)
        assert report.differences == [] and report.ok
        assert store.holdings_of("gov-fund")[SYMBOL] == 4_000
    finally:
        store.close()


async def test_an_undersubscribed_auction_is_cancelled_and_its_volume_carried_over():
    async with (
        exchange_on_port() as gateway,
        session(gateway, "de-auctioneer") as state,
        session(gateway, "bank") as bank,
    ):
        auctioneer = Inbox(state)
        await state.open_auction("DE-2", SYMBOL, 10_500, WINDOW)
        await auctioneer.next()
        await bank.submit_bid("DE-2", "b", 7000, 500)
        cancelled = await auctioneer.next(TIMEOUT + WINDOW)
        assert_fields(
            cancelled,
            type="auction_report",
            status="cancelled",
            reason="undersubscribed",
            clearing_price=None,
            total_bid_volume=500,
            cover_ratio="0.05",
            bidders=1,
            carried_over=[3000, 2500, 2500, 2500],
        )
        next_one = await state.open_auction("DE-3", SYMBOL, 500, 60)
        assert_fields(next_one, status="open", volume=3_500, carried_in=3_000)
        assert_fields(await bank.auction_status("DE-2"), status="cancelled")


async def test_a_clearing_refused_because_the_clock_stepped_back_is_tried_again(monkeypatch, caplog):
    async with (
        exchange_on_port() as gateway,
        session(gateway, "de-auctioneer") as state,
        session(gateway, "bank") as bank,
    ):
        await state.open_auction("DE-4", SYMBOL, 1_000, WINDOW)
        await bank.submit_bid("DE-4", "b", "70.00", 1_000)
        behind = 600_000_000  # this host's clock steps back 0.6 s during the window

        def stepped() -> int:
            return time.time_ns() - behind

        # The clock that stamps the commands and the one the timers wait by are the same clock.
        monkeypatch.setattr(gateway.loop, "wall_clock", stepped)
        monkeypatch.setattr(gateway.timers, "wall_clock", stepped)
        with caplog.at_level(logging.WARNING, logger="carbonx.gateway"):
            # The first try comes too early by the stepped clock (refused, 808), the next one clears.
            await eventually(lambda: gateway.engine.primary_auction("DE-4").outcome is not None, TIMEOUT + WINDOW)
        assert gateway.engine.primary_auction("DE-4").outcome == "cleared"
        early = [record for record in caplog.records if record.getMessage() == "auction_clearing_early"]
        assert len(early) == 1  # the retry waited for the stepped clock to pass the window's end
        assert not gateway.timers.clearings
        assert holding(await bank.balances(), SYMBOL)[0] >= 1_000


async def test_one_reopening_timer_per_interruption():
    async with exchange_on_port() as gateway:
        gateway.timers.schedule_reopening(SYMBOL)
        first = gateway.timers.reopenings[SYMBOL]
        gateway.timers.schedule_reopening(SYMBOL)  # the start-up and a batch's release may both ask
        assert gateway.timers.reopenings[SYMBOL] is first and len(gateway.timers.reopenings) == 1


async def test_an_operator_admits_a_bidder_and_withdraws_its_admission():
    async with (
        exchange_on_port() as gateway,
        session(gateway, "de-auctioneer") as state,
        session(gateway, "market-ops") as ops,
        session(gateway, "paper-mill") as mill,
    ):
        mill_inbox = Inbox(mill)
        await state.open_auction("DE-A", SYMBOL, 1_000, WINDOW)
        assert_fields(await mill.submit_bid("DE-A", "m-1", 7000, 500), type="request_rejected", code=814)
        admitted = await ops.admit_bidder("paper-mill")
        assert_fields(admitted, type="bidder_admission", account="paper-mill", admitted=True)
        await mill_inbox.next()  # the refusal
        assert_fields(await mill_inbox.next(), type="bidder_admission", admitted=True)
        assert_fields(await mill.submit_bid("DE-A", "m-1", 7000, 500), status="placed", held=7000 * 500 + FEE)
        assert_fields(await ops.admit_bidder("paper-mill", admitted=False), admitted=False)
        assert_fields(await mill.submit_bid("DE-A", "m-2", 7000, 500), type="request_rejected", code=814)
        assert_fields(await mill.withdraw_bid("DE-A", "m-1"), status="withdrawn", released=7000 * 500 + FEE)
        assert_fields(await mill.admit_bidder("paper-mill"), type="reject", code=712)  # operators only
        assert_fields(await ops.admit_bidder("nobody"), type="request_rejected", code=201)
