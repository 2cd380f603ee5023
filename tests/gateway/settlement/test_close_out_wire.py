"""The operator's close-out of a defaulter through the whole exchange (docs/FUTURES.md section 4, PROTOCOL.md
7.26): an account called at the end of day is closed out over the wire; the operator, the account and the
receiver are told; the ledger reconciles; a replay of the journal rebuilds it exactly."""

from __future__ import annotations

import datetime as dt

from gateway_helpers import Inbox, exchange_on_port, session
from test_futures_settlement import assert_ledger_reconciles, replayed, shipped_futures

from exchange import EndOfDay, MarginCalled


async def default_and_close_out(gateway) -> str:
    """cdm-developer (EUR 1m of cash) buys 60 lots of the farthest December from bank at 72.00; the close at
    61.00 (the mid of bank's and broker's quotes) costs it EUR 660,000 of variation margin, leaving it under its
    maintenance margin (EUR 384,000), and calls it; the operator passes its position to broker. Returns the
    contract."""
    symbol = gateway.engine.futures_contracts("EUA")[-1]
    async with (
        session(gateway, "cdm-developer") as fund,
        session(gateway, "bank") as bank,
        session(gateway, "broker") as broker,
        session(gateway, "market-ops") as ops,
    ):
        await bank.new_order(symbol, "S", 60, "72.00", client_order_id="s1")
        bought = await fund.new_order(symbol, "B", 60, "72.00", client_order_id="b1", time_in_force="IOC")
        assert bought["exec_type"] == "new"
        await bank.new_order(symbol, "S", 1, "61.10", client_order_id="s2")
        await broker.new_order(symbol, "B", 1, "60.90", client_order_id="b2")
        refused = await ops.close_out("cdm-developer", "broker")
        assert (refused["type"], refused["code"], refused["request"]) == ("request_rejected", 208, "close_out")
        today = int(dt.datetime.now(dt.UTC).strftime("%Y%m%d"))
        events = await gateway.run_operator_commands([EndOfDay(ts=1, trading_date=today)])
        assert [e.account for e in events if isinstance(e, MarginCalled)] == ["cdm-developer"]
        fund_inbox, broker_inbox = Inbox(fund), Inbox(broker)
        answer = await ops.close_out("cdm-developer", "broker")
        assert (answer["type"], answer["account"], answer["to_account"]) == (
            "close_out_report",
            "cdm-developer",
            "broker",
        )
        assert answer["transfers"] == [{"instrument": symbol, "lots": 60, "price": 6100}]
        while (message := await fund_inbox.next())["type"] != "kill_switch_report":
            pass
        assert (message["blocked"], message["canceled_orders"]) == (True, 0)
        assert (await fund_inbox.expect(type="close_out_report"))["to_account"] == "broker"
        while (message := await broker_inbox.next())["type"] != "close_out_report":
            pass
        assert message["transfers"][0]["lots"] == 60
        assert [(p["instrument"], p["lots"]) for p in (await broker.positions())["positions"]] == [(symbol, 60)]
        assert (await fund.positions())["positions"] == []
    return symbol


async def test_a_close_out_over_the_wire_reconciles(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    async with exchange_on_port(ledger=ledger, futures=shipped_futures()) as gateway:
        await default_and_close_out(gateway)
        engine = gateway.engine
        assert engine.balances("cdm-developer").blocked
    assert_ledger_reconciles(engine, ledger)


async def test_a_replay_rebuilds_the_close_out_exactly(tmp_path):
    data_dir = tmp_path / "data"
    futures = shipped_futures()
    async with exchange_on_port(futures=futures, data_dir=str(data_dir)) as gateway:
        symbol = await default_and_close_out(gateway)
        engine = gateway.engine
    again = replayed(data_dir, futures)
    assert again.state_hash() == engine.state_hash()
    assert again.futures.house.position("broker", symbol) == 60
