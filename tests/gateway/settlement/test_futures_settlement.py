"""Futures through the whole exchange (docs/FUTURES.md): contracts listed at start and offered at logon, orders
over the wire, the end of day's variation margin in the ledger, which reconciles with the engine; a restart
replays the futures state exactly."""

from __future__ import annotations

import datetime as dt

from gateway_helpers import Inbox, demo_configuration, exchange_on_port, session

from exchange import EndOfDay, SettlementPriceFixed, VariationMarginPaid
from gateway.config import load_futures, load_server_config
from gateway.persistence.journal import Genesis
from gateway.persistence.recovery import recover
from gateway.settlement.ledger import SqliteLedgerStore
from gateway.settlement.service import reconcile


def shipped_futures():
    instruments, _, _ = demo_configuration()
    return load_futures(instruments)


def assert_ledger_reconciles(engine, ledger) -> None:
    """The ledger at ``ledger`` (SQLite) agrees with the engine, account by account and asset by asset."""
    store = SqliteLedgerStore(ledger)
    try:
        report = reconcile(engine, store)
        assert report.differences == [] and report.ok
    finally:
        store.close()


def replayed(data_dir, futures):
    """The engine rebuilt from the journal in ``data_dir`` alone (no snapshot taken: every command replayed)."""
    instruments, _, compliance = demo_configuration()
    config = load_server_config()
    recovered = recover(
        data_dir, Genesis(dict(instruments), compliance, config.md_levels, config.resend_window, futures)
    )
    recovered.journal.close()
    return recovered.core.engine


async def trade_a_future(gateway) -> tuple[str, list]:
    """bank sells 5 lots of the farthest December to utility-north at 72.00 and leaves quotes of 72.20-72.40;
    the end of day settles at their mid. (symbol, the end of day's events)"""
    symbol = gateway.engine.futures_contracts("EUA")[-1]
    async with session(gateway, "bank") as bank, session(gateway, "utility-north") as util:
        assert symbol in [entry["symbol"] for entry in bank.logon["instruments"]]
        answer = await bank.new_order(symbol, "S", 5, "72.00", client_order_id="fs1")
        assert (answer["exec_type"], answer["instrument"]) == ("new", symbol)
        answer = await util.new_order(symbol, "B", 5, 7200, client_order_id="fb1")
        inbox = Inbox(util)
        await inbox.expect(exec_type="new")
        trade = await inbox.expect(exec_type="trade")
        assert (trade["last_price"], trade["last_quantity"]) == (7200, 5)
        await bank.new_order(symbol, "S", 1, "72.40", client_order_id="fs2")
        await util.new_order(symbol, "B", 1, "72.20", client_order_id="fb2")
        answer = await util.positions()
        assert [(p["instrument"], p["lots"], p["settlement_price"]) for p in answer["positions"]] == [(symbol, 5, None)]
        assert (answer["initial_margin"], answer["margin_call"]) == (5 * 1_000 * 8_00, False)
        assert answer["orders_hold"] == 1 * (1_000 * (8_00 + 1_50) + 3_50)  # the open bid: one lot's margin and fee
        # (while the sessions last: cancel-on-disconnect would take the quotes with them)
        today = dt.datetime.now(dt.UTC).date()
        events = await gateway.run_operator_commands([EndOfDay(ts=1, trading_date=int(today.strftime("%Y%m%d")))])
    return symbol, events


async def test_a_futures_day_through_the_gateway_settles_in_the_ledger(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    async with exchange_on_port(ledger=ledger, futures=shipped_futures()) as gateway:
        symbol, events = await trade_a_future(gateway)
        (fixed,) = [e for e in events if isinstance(e, SettlementPriceFixed) and e.instrument == symbol]
        assert (fixed.price, fixed.method) == (72_30, "quotes")
        margins = {e.account: e.amount for e in events if isinstance(e, VariationMarginPaid) and e.instrument == symbol}
        assert margins == {"utility-north": 5 * 1_000 * 30, "bank": -5 * 1_000 * 30}  # EUR 1,500 each way
        engine = gateway.engine
    assert_ledger_reconciles(engine, ledger)
    engine.futures.house.positions[symbol]["bank"].lots += 1  # a lot from nowhere: caught
    store = SqliteLedgerStore(ledger)
    try:
        report = reconcile(engine, store)
        assert report.differences == [f"{symbol}: positions net to +1 lots across the accounts, not zero"]
    finally:
        store.close()


async def test_a_replay_of_the_journal_rebuilds_the_futures_state_exactly(tmp_path):
    data_dir = tmp_path / "data"
    futures = shipped_futures()
    async with exchange_on_port(futures=futures, data_dir=str(data_dir)) as gateway:
        symbol, _ = await trade_a_future(gateway)
        engine = gateway.engine
    position = engine.futures.house.position("utility-north", symbol)
    again = replayed(data_dir, futures)
    assert again.state_hash() == engine.state_hash()
    assert again.futures.house.position("utility-north", symbol) == position == 5
    assert again.settlement_price(symbol) == 72_30
