"""Trade at settlement through the whole exchange (docs/FUTURES.md section 7): the TAS book listed after a
contract's first settlement is offered at logon and traded at an offset over the wire; the next end of day
prices the fill and tells both sides; the ledger reconciles; a replay of the journal rebuilds it exactly."""

from __future__ import annotations

import datetime as dt

from gateway_helpers import Inbox, exchange_on_port, session
from test_futures_settlement import assert_ledger_reconciles, replayed, shipped_futures

from exchange import ContractListed, EndOfDay, TASPriced


def trading_date(days_ahead: int) -> int:
    return int((dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days_ahead)).strftime("%Y%m%d"))


async def trade_at_settlement(gateway) -> str:
    """bank and broker quote the farthest December at 72.20-72.40 and the day closes (settlement 72.30): its
    TAS book opens; bank sells 5 TAS lots at -2 ticks to utility-north; the next close (the same quotes) prices
    them at 72.28. Returns the TAS book."""
    symbol = gateway.engine.futures_contracts("EUA")[-1]
    tas = symbol + "TAS"
    async with session(gateway, "bank") as bank, session(gateway, "broker") as broker:
        await bank.new_order(symbol, "S", 1, "72.40", client_order_id="q1")
        await broker.new_order(symbol, "B", 1, "72.20", client_order_id="q2")
        events = await gateway.run_operator_commands([EndOfDay(ts=1, trading_date=trading_date(0))])
        assert [e.instrument for e in events if isinstance(e, ContractListed)] == [tas]
    async with session(gateway, "bank") as bank, session(gateway, "utility-north") as util:
        assert tas in [entry["symbol"] for entry in util.logon["instruments"]]  # offered at logon
        sold = await bank.new_order(tas, "S", 5, -2, client_order_id="t1")
        assert (sold["exec_type"], sold["price"]) == ("new", -2)
        inbox = Inbox(util)
        await util.new_order(tas, "B", 5, 0, client_order_id="t2", time_in_force="IOC")
        await inbox.expect(exec_type="new")
        fill = await inbox.expect(exec_type="trade")
        assert (fill["last_price"], fill["last_quantity"]) == (-2, 5)
        assert [(p["instrument"], p["lots"]) for p in (await util.positions())["positions"]] == [(symbol, 5)]
        await bank.new_order(symbol, "S", 1, "72.40", client_order_id="q3")
        events = await gateway.run_operator_commands([EndOfDay(ts=2, trading_date=trading_date(1))])
        (priced,) = [e for e in events if isinstance(e, TASPriced)]
        assert (priced.price, priced.buyer, priced.seller) == (72_28, "utility-north", "bank")
        while (report := await inbox.next())["type"] != "tas_priced":
            pass
        assert (report["contract"], report["client_order_id"], report["side"], report["price"]) == (
            symbol,
            "t2",
            "B",
            7228,
        )
    return tas


async def test_a_tas_fill_over_the_wire_is_priced_and_reconciles(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    async with exchange_on_port(ledger=ledger, futures=shipped_futures()) as gateway:
        await trade_at_settlement(gateway)
        engine = gateway.engine
    assert_ledger_reconciles(engine, ledger)


async def test_a_replay_rebuilds_the_tas_state_exactly(tmp_path):
    data_dir = tmp_path / "data"
    futures = shipped_futures()
    async with exchange_on_port(futures=futures, data_dir=str(data_dir)) as gateway:
        tas = await trade_at_settlement(gateway)
        engine = gateway.engine
    again = replayed(data_dir, futures)
    assert again.state_hash() == engine.state_hash()
    assert again.has_instrument(tas)
