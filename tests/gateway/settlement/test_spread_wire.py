"""Calendar spreads through the whole exchange (docs/FUTURES.md section 8): once two consecutive Decembers have
settled, their spread book is listed, offered at logon and traded at a negative price over the wire; the fill is
two positions priced off the far leg's settlement; the ledger reconciles; a replay rebuilds it exactly."""

from __future__ import annotations

import datetime as dt

from gateway_helpers import Inbox, exchange_on_port, session
from test_futures_settlement import assert_ledger_reconciles, replayed, shipped_futures

from exchange import ContractListed, EndOfDay


def trading_date(days_ahead: int) -> int:
    return int((dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days_ahead)).strftime("%Y%m%d"))


async def trade_a_spread(gateway) -> str:
    """The two farthest Decembers trade at 71.80 and 73.00 and settle there; their spread is listed; bank sells
    5 of it at -1.20 to utility-north, who so buys the near month at 71.80 and sells the far one at 73.00.
    Returns the spread."""
    near, far = gateway.engine.futures_contracts("EUA")[-2:]
    spread = near + far[3:]
    async with session(gateway, "bank") as bank, session(gateway, "broker") as broker:
        for symbol, price in ((near, "71.80"), (far, "73.00")):
            await bank.new_order(symbol, "S", 1, price, client_order_id=f"s-{symbol}")
            await broker.new_order(symbol, "B", 1, price, client_order_id=f"b-{symbol}")
        events = await gateway.run_operator_commands([EndOfDay(ts=1, trading_date=trading_date(0))])
        assert spread in [e.instrument for e in events if isinstance(e, ContractListed)]
    async with session(gateway, "bank") as bank, session(gateway, "utility-north") as util:
        assert spread in [entry["symbol"] for entry in util.logon["instruments"]]  # offered at logon
        sold = await bank.new_order(spread, "S", 5, -120, client_order_id="s1")
        assert (sold["exec_type"], sold["price"]) == ("new", -120)
        inbox = Inbox(util)
        await util.new_order(spread, "B", 5, -110, client_order_id="b1", time_in_force="IOC")
        await inbox.expect(exec_type="new")
        fill = await inbox.expect(exec_type="trade")
        assert (fill["last_price"], fill["last_quantity"]) == (-120, 5)
        positions = {p["instrument"]: p["lots"] for p in (await util.positions())["positions"]}
        assert positions == {near: 5, far: -5}
        house = gateway.engine.futures.house
        assert house.positions[near]["utility-north"].day_value == 5 * 71_80  # 73.00 - 1.20
        assert house.positions[far]["utility-north"].day_value == -5 * 73_00
    return spread


async def test_a_spread_over_the_wire_reconciles(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    async with exchange_on_port(ledger=ledger, futures=shipped_futures()) as gateway:
        await trade_a_spread(gateway)
        engine = gateway.engine
    assert_ledger_reconciles(engine, ledger)


async def test_a_replay_rebuilds_the_spread_exactly(tmp_path):
    data_dir = tmp_path / "data"
    futures = shipped_futures()
    async with exchange_on_port(futures=futures, data_dir=str(data_dir)) as gateway:
        spread = await trade_a_spread(gateway)
        engine = gateway.engine
    again = replayed(data_dir, futures)
    assert again.state_hash() == engine.state_hash()
    assert again.has_instrument(spread)
