"""Block trades and EFPs through the whole exchange (docs/FUTURES.md, PROTOCOL.md 7.25): both sides report over
the wire, each is told (reported, alleged, traded), the trade is published flagged on the trades channel, the
ledger settles the fees and an EFP's units and cash and reconciles with the engine, and a replay of the journal
rebuilds it exactly."""

from __future__ import annotations

import asyncio

from gateway_helpers import TIMEOUT, Inbox, exchange_on_port, session
from test_futures_settlement import assert_ledger_reconciles, replayed, shipped_futures


async def next_trade(watcher) -> dict:
    async def first() -> dict:
        async for message in watcher.market_data():
            if message["type"] == "trade":
                return message
        raise AssertionError("the market-data stream ended")

    return await asyncio.wait_for(first(), TIMEOUT)


async def block_and_efp(gateway) -> str:
    """utility-north buys 50 lots of the farthest December from bank as a block at 72.30, then 60 lots from broker
    as an EFP at 72.50 against 60,000 EUA at 71.90 (the utility delivers them). Returns the contract."""
    symbol = gateway.engine.futures_contracts("EUA")[-1]
    async with (
        session(gateway, "utility-north") as util,
        session(gateway, "bank") as bank,
        session(gateway, "broker") as broker,
        session(gateway, "cement-works") as watcher,
    ):
        await broker.new_order(symbol, "S", 1, "72.00", client_order_id="s1")  # the contract's first price: a
        await watcher.new_order(symbol, "B", 1, "72.00", client_order_id="b1")  # block needs one (513 before)
        await watcher.subscribe([symbol], ["trades"])
        util_inbox, bank_inbox = Inbox(util), Inbox(bank)
        first = await util.report_block("B-1", "bank", symbol, "B", 50, "72.30")
        assert (first["type"], first["status"], first["side"], first["price"]) == (
            "block_report",
            "reported",
            "B",
            7230,
        )
        await util_inbox.expect(type="block_report", status="reported")
        alleged = await bank_inbox.expect(type="block_report", status="alleged")
        assert (alleged["counterparty"], alleged["side"], alleged["quantity"]) == ("utility-north", "S", 50)
        wrong = await bank.report_block("B-1", "utility-north", symbol, "S", 50, "72.31")
        assert (wrong["type"], wrong["code"], wrong["request"]) == ("request_rejected", 409, "report_block")
        await bank_inbox.expect(type="request_rejected")
        traded = await bank.report_block("B-1", "utility-north", symbol, "S", 50, "72.30")
        assert (traded["status"], traded["side"], traded["fee"]) == ("traded", "S", 50 * 3_50)
        assert (await util_inbox.expect(type="block_report", status="traded"))["trade_id"] == traded["trade_id"]
        published = await next_trade(watcher)
        assert (published["block"], published["price"], published["quantity"], published["aggressor_side"]) == (
            "block",
            7230,
            50,
            None,
        )
        small = await bank.report_block("B-2", "utility-north", symbol, "S", 49, "72.30")
        assert small["code"] == 130
        await util.report_block("E-1", "broker", symbol, "B", 60, "72.50", physical_price="71.90")
        efp = await broker.report_block("E-1", "utility-north", symbol, "S", 60, "72.50", physical_price="71.90")
        assert (efp["status"], efp["kind"], efp["physical_price"], efp["physical_units"]) == (
            "traded",
            "efp",
            7190,
            60_000,
        )
        assert (await next_trade(watcher))["block"] == "efp"
        positions = await util.positions()
        assert [(p["instrument"], p["lots"]) for p in positions["positions"]] == [(symbol, 110)]
    return symbol


async def test_blocks_over_the_wire_settle_in_the_ledger_and_reconcile(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    async with exchange_on_port(ledger=ledger, futures=shipped_futures()) as gateway:
        units_before = gateway.engine.balances("utility-north").units["EUA"]
        await block_and_efp(gateway)
        engine = gateway.engine
        assert engine.balances("utility-north").units["EUA"] == units_before - 60_000
    assert_ledger_reconciles(engine, ledger)


async def test_a_replay_rebuilds_the_blocks_exactly(tmp_path):
    data_dir = tmp_path / "data"
    futures = shipped_futures()
    async with exchange_on_port(futures=futures, data_dir=str(data_dir)) as gateway:
        symbol = await block_and_efp(gateway)
        engine = gateway.engine
    again = replayed(data_dir, futures)
    assert again.state_hash() == engine.state_hash()
    assert again.futures.house.position("utility-north", symbol) == 110
