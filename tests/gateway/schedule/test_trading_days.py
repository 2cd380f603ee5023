"""Trading days that run by themselves: the whole exchange on a free port with its calendar, on a clock the
test moves (so each schedule point is met exactly when the test says), clients trading over the socket.

Checked: a day's phases in order (closed before the opening, the opening call, continuous trading after the
opening auction, the settlement window, the closing call, the close); the end of day (a DAY order expires, a
GTC order stays, the settlement price is the window's VWAP, the day's client order ids come free, the
report and statements are written); holidays; a restart across schedule points and across a whole day
(each point done exactly once, the day closed before the next opens); the operator's halt, extension and skip.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil

import pytest
from calendar_helpers import CLOSED, CONTINUOUS, TestClock, calendar_of, exchange, phases, quiet, reached
from gateway_helpers import eventually, session

from exchange import TradingPhase
from gateway.logs import FIELDS


async def test_a_trading_day_runs_by_itself_from_the_opening_to_the_end_of_day(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="carbonx.gateway")
    clock = TestClock(calendar_of(), "2026-01-05 07:30")
    async with exchange(tmp_path, clock) as gateway:
        await eventually(lambda: set(phases(gateway).values()) == {CLOSED})  # before the opening: closed
        await quiet(gateway)
        async with session(gateway, "utility-north") as seller, session(gateway, "bank") as buyer:
            refused = await seller.new_order("EUA", "S", 5, 7000)
            assert (refused["exec_type"], refused["code"]) == ("rejected", 126), refused
            clock.set("2026-01-05 07:45")
            await reached(gateway, 20260105, "opening_call:EUA", "opening_call:CER", "opening_call:ERU")
            assert set(phases(gateway).values()) == {TradingPhase.OPENING_CALL}
            day_order = await seller.new_order("EUA", "S", 2, 7300, client_order_id="day-1", time_in_force="DAY")
            assert day_order["exec_type"] == "new", (day_order["code"], day_order["text"])
            gtc = await buyer.new_order("EUA", "B", 1, 6700, client_order_id="gtc-1")  # rests across the night
            assert gtc["exec_type"] == "new", gtc
            await seller.new_order("EUA", "S", 3, 7000)
            await buyer.new_order("EUA", "B", 3, 7000)
            assert gateway.engine.last_price("EUA") is None  # a call collects, nothing trades
            clock.set("2026-01-05 08:00")
            await reached(gateway, 20260105, "continuous:EUA")
            assert gateway.engine.phase("EUA") is CONTINUOUS
            assert gateway.engine.last_price("EUA") == 7000  # the opening auction: 3 lots at 70.00
            # before the settlement window: a trade at 71.00 that must not count towards the settlement price
            await buyer.new_order("EUA", "B", 1, 7100)
            await seller.new_order("EUA", "S", 1, 7100)
            clock.set("2026-01-05 17:50")
            await reached(gateway, 20260105, "settlement_window:EUA")
            await seller.new_order("EUA", "S", 1, 7010)
            await buyer.new_order("EUA", "B", 1, 7010)
            await seller.new_order("EUA", "S", 2, 7020)
            await buyer.new_order("EUA", "B", 2, 7020)
            clock.set("2026-01-05 17:55")
            await reached(gateway, 20260105, "closing_call:EUA")
            assert gateway.engine.phase("EUA") is TradingPhase.CLOSING_CALL
            clock.set("2026-01-05 18:00")
            await eventually(lambda: gateway.engine.last_closed_date == 20260105)
            assert set(phases(gateway).values()) == {CLOSED}
            # (1 x 70.10 + 2 x 70.20) / 3 = 70.1667 -> 70.17; the 71.00 before the window is not in it
            assert gateway.engine.settlement_price("EUA") == 7017
            assert gateway.engine.settlement_price("CER") is None  # never traded
            open_orders = await seller.open_orders("EUA")
            assert "day-1" not in [order.get("client_order_id") for order in open_orders]  # expired
            assert "gtc-1" in [order.get("client_order_id") for order in await buyer.open_orders("EUA")]
            # the files of the day
            folder = tmp_path / "days" / "20260105"
            await eventually(lambda: (folder / "report.json").exists())
            report = json.loads((folder / "report.json").read_text())
            assert report["instruments"]["EUA"]["settlement_price"] == "70.17"
            assert report["instruments"]["EUA"]["settlement_method"] == "window"
            assert report["expired_orders"] >= 1
            statement = json.loads((folder / "statements" / "bank.json").read_text())
            balances = gateway.engine.balances("bank")
            assert balances is not None and statement["cash_cents"] == balances.cash
            assert statement["units"]["EUA"] == balances.units["EUA"]
            # the operator's log: every scheduled point, phase change, settlement price and close
            logged = [(record.getMessage(), getattr(record, FIELDS, {})) for record in caplog.records]
            points = [fields["action"] for event, fields in logged if event == "schedule_point"]
            assert points.count("close") == 3 and points.count("end_of_day") == 1, points
            eua_phases = [
                (fields["previous"], fields["phase"])
                for event, fields in logged
                if event == "phase_changed" and fields["instrument"] == "EUA"
            ]
            assert eua_phases == [
                ("continuous", "closed"),  # the first start on the calendar, before the opening
                ("closed", "opening_call"),
                ("opening_call", "continuous"),
                ("continuous", "closing_call"),
                ("closing_call", "closed"),
            ]
            assert (
                "settlement_price",
                {"instrument": "EUA", "trading_date": 20260105, "price": 7017, "method": "window", "window_lots": 3},
            ) in logged
            assert ("trading_day_closed", {"trading_date": 20260105, "expired_orders": 1}) in [
                (event, fields) for event, fields in logged if event == "trading_day_closed"
            ]
            # the next day: the DAY order's client order id is free again
            clock.set("2026-01-06 07:45")
            await reached(gateway, 20260106, "opening_call:EUA")
            again = await seller.new_order("EUA", "S", 1, 7050, client_order_id="day-1", time_in_force="DAY")
            assert again["exec_type"] == "new", again


async def test_a_holiday_does_not_trade_and_its_points_never_run(tmp_path):
    clock = TestClock(calendar_of(), "2026-01-01 09:00")
    async with exchange(tmp_path, clock) as gateway:
        await eventually(lambda: set(phases(gateway).values()) == {CLOSED})
        assert gateway.calendar is not None and gateway.calendar.open_day() == dt.date(2026, 1, 2)
        await quiet(gateway)
        assert gateway.engine.schedule_done(20260101) == frozenset()
        clock.set("2026-01-02 08:00")
        await reached(gateway, 20260102, "continuous:EUA")


async def test_a_shortened_day_closes_early(tmp_path):
    clock = TestClock(calendar_of(), "2026-01-09 07:50")
    async with exchange(tmp_path, clock) as gateway:
        await reached(gateway, 20260109, "opening_call:EUA")
        clock.set("2026-01-09 13:59")
        await reached(gateway, 20260109, "settlement_window:EUA", "closing_call:EUA")
        assert gateway.engine.last_closed_date is None
        clock.set("2026-01-09 14:00")
        await eventually(lambda: gateway.engine.last_closed_date == 20260109)


async def test_a_restart_catches_up_each_point_once_and_closes_a_missed_day_before_the_next(tmp_path):
    calendar = calendar_of()
    clock = TestClock(calendar, "2026-01-05 07:50")
    async with exchange(tmp_path, clock) as gateway:
        await reached(gateway, 20260105, "opening_call:EUA", "opening_call:CER", "opening_call:ERU")
        assert gateway.calendar is not None and gateway.calendar.points_done == 3
    # down from 07:50 to 12:00: continuous trading is caught up, the opening call is not run again
    clock.set("2026-01-05 12:00")
    async with exchange(tmp_path, clock) as gateway:
        await reached(gateway, 20260105, "continuous:EUA", "continuous:CER", "continuous:ERU")
        await quiet(gateway)
        assert gateway.calendar is not None and gateway.calendar.points_done == 3
        assert set(phases(gateway).values()) == {CONTINUOUS}
    # down from Monday noon to Tuesday 09:00: Monday's close and end of day first, then Tuesday's opening
    clock.set("2026-01-06 09:00")
    async with exchange(tmp_path, clock) as gateway:
        await reached(gateway, 20260106, "continuous:EUA", "continuous:CER", "continuous:ERU")
        assert gateway.engine.last_closed_date == 20260105
        runner = gateway.calendar
        assert runner is not None
        # Monday's closing points, its end, Tuesday's (the count moves once the batch is back: it may lag the marks)
        await eventually(lambda: runner.points_done == 3 * 3 + 1 + 2 * 3)
        assert (tmp_path / "days" / "20260105" / "report.json").exists()
        hash_before = gateway.engine.state_hash()
    # a stop between Monday's close and its files (here: the files lost) has them written at the next start
    shutil.rmtree(tmp_path / "days" / "20260105")
    async with exchange(tmp_path, clock) as gateway:  # nothing due: nothing runs, the same state
        await eventually(lambda: (tmp_path / "days" / "20260105" / "report.json").exists())
        await quiet(gateway)
        assert gateway.engine.state_hash() == hash_before
    assert (tmp_path / "days" / "20260106").exists() is False  # Tuesday has not closed
    report = json.loads((tmp_path / "days" / "20260105" / "report.json").read_text())
    assert report["written_at_start"] is True and report["trading_date"] == 20260105


async def test_the_operator_halts_extends_and_skips(tmp_path):
    clock = TestClock(calendar_of(), "2026-01-05 07:50")
    async with exchange(tmp_path, clock) as gateway:
        runner = gateway.calendar
        assert runner is not None
        await reached(gateway, 20260105, "opening_call:EUA", "opening_call:CER", "opening_call:ERU")
        async with session(gateway, "market-ops") as operator:
            answer = await operator.set_trading_phase("EUA", "halted")
            assert answer.get("phase") == "halted", answer
        clock.set("2026-01-05 08:00")
        await reached(gateway, 20260105, "continuous:EUA", "continuous:CER")
        assert gateway.engine.phase("EUA") is TradingPhase.HALTED  # the schedule does not lift a halt
        assert gateway.engine.phase("CER") is CONTINUOUS
        async with session(gateway, "market-ops") as operator:  # the day's close moves from 18:00 to 19:00
            answer = await operator.extend_trading_day(30)
            assert (answer["type"], answer["trading_date"], answer["extension_seconds"]) == (
                "schedule_report",
                20260105,
                1800,
            ), answer
            answer = await operator.extend_trading_day(30)  # extensions add up
            assert answer["extension_seconds"] == 3600, answer
            refused = await operator.extend_trading_day(0)
            assert refused["code"] == 507, refused
        clock.set("2026-01-05 18:30")  # past the close it had; the window now opens at 18:50
        await quiet(gateway)
        assert "settlement_window:CER" not in gateway.engine.schedule_done(20260105)
        assert gateway.engine.phase("CER") is CONTINUOUS and gateway.engine.last_closed_date is None
        clock.set("2026-01-05 18:50")
        await reached(gateway, 20260105, "settlement_window:CER")
        clock.set("2026-01-05 19:00")
        await eventually(lambda: gateway.engine.last_closed_date == 20260105)
        assert set(phases(gateway).values()) == {CLOSED}  # the halted instrument closes with the day
        # the next day: the operator passes over CER's opening call; the end of day is never passed over
        clock.set("2026-01-06 07:00")
        async with session(gateway, "market-ops") as operator:
            answer = await operator.skip_schedule_point()
            assert (answer["type"], answer["skipped"]) == ("schedule_report", "opening_call:CER"), answer
        async with session(gateway, "bank") as trader:  # a trader may not
            refused = await trader.skip_schedule_point()
            assert refused["type"] == "reject" and refused["code"] == 712, refused
        clock.set("2026-01-06 07:45")
        await reached(gateway, 20260106, "opening_call:ERU", "opening_call:EUA")
        assert gateway.engine.phase("CER") is CLOSED and gateway.engine.phase("EUA") is TradingPhase.OPENING_CALL
        async with session(gateway, "market-ops") as operator:  # pass over everything up to the end of day
            for _ in range(20):
                answer = await operator.skip_schedule_point()
                if answer["type"] != "schedule_report":
                    break
            assert (answer["type"], answer["code"]) == ("request_rejected", 510), answer
        with pytest.raises(ValueError, match="end_of_day"):  # the runner's own check says the same
            runner.point_to_skip(None)


async def test_without_a_calendar_the_operator_is_told_so():
    from gateway_helpers import exchange_on_port

    async with exchange_on_port() as gateway, session(gateway, "market-ops") as operator:
        for answer in (await operator.extend_trading_day(10), await operator.skip_schedule_point()):
            assert answer["code"] == 509, answer


async def test_a_start_after_the_days_end_closes_it_without_trading_through_it(tmp_path):
    """Catching up a day whose end has passed runs only its closes and end of day: no session can trade in a
    past day's opening call or continuous trading."""
    clock = TestClock(calendar_of(), "2026-01-05 20:00")  # a first start, after Monday's close
    async with exchange(tmp_path, clock) as gateway:
        await eventually(lambda: gateway.engine.last_closed_date == 20260105)
        assert gateway.calendar is not None and gateway.calendar.open_day() == dt.date(2026, 1, 6)
        assert set(phases(gateway).values()) == {CLOSED}
    clock.set("2026-01-08 09:00")  # down from Monday night to Thursday morning
    async with exchange(tmp_path, clock) as gateway:
        await reached(gateway, 20260108, "continuous:EUA")
        assert gateway.engine.last_closed_date == 20260107
        assert gateway.engine.phase("EUA") is CONTINUOUS
        for day in ("20260106", "20260107"):  # each missed day closed, with its files
            assert (tmp_path / "days" / day / "report.json").exists()


async def test_the_operator_passes_over_a_named_point_but_not_one_that_is_due(tmp_path):
    clock = TestClock(calendar_of(), "2026-01-05 07:00")
    async with exchange(tmp_path, clock) as gateway, session(gateway, "market-ops") as operator:
        await eventually(lambda: set(phases(gateway).values()) == {CLOSED})
        answer = await operator.skip_schedule_point("opening_call:EUA")
        assert (answer["type"], answer["skipped"]) == ("schedule_report", "opening_call:EUA"), answer
        again = await operator.skip_schedule_point("opening_call:EUA")  # done: no longer to come
        assert (again["type"], again["code"]) == ("request_rejected", 707), again
        unknown = await operator.skip_schedule_point("lunch:EUA")
        assert unknown["code"] == 707, unknown
        clock.set("2026-01-05 07:45")
        await reached(gateway, 20260105, "opening_call:CER", "opening_call:ERU")
        assert gateway.engine.phase("EUA") is CLOSED and gateway.engine.phase("CER") is TradingPhase.OPENING_CALL
        clock.set("2026-01-05 07:59")
        clock.value += 59 * 10**9
        due = await operator.skip_schedule_point("continuous:EUA")  # not yet due: 08:00
        assert due["type"] == "schedule_report", due
        clock.set("2026-01-05 08:01")
        await reached(gateway, 20260105, "continuous:CER")
        later = await operator.skip_schedule_point("settlement_window:CER")  # CER settles on its last trade
        assert later["type"] == "schedule_report", later


async def test_a_calendar_auction_takes_admitted_bidders_only_and_charges_the_fee(tmp_path):
    # The calendar's auctions take the exchange's admission and fee as an auctioneer's do (found by review: they
    # took neither).
    auctions = [{"date": "2026-01-08", "auctioneer": "de-auctioneer", "instrument": "EUA", "volume": 500_000}]
    clock = TestClock(calendar_of(auctions=auctions), "2026-01-08 08:59")
    async with exchange(tmp_path, clock) as gateway:
        clock.set("2026-01-08 09:01")
        await eventually(lambda: gateway.engine.primary_auction_instrument("de-auctioneer-20260108") == "EUA")
        async with session(gateway, "paper-mill") as mill, session(gateway, "bank") as bank:
            refused = await mill.submit_bid("de-auctioneer-20260108", "m", 7000, 500)
            assert (refused["type"], refused["code"]) == ("request_rejected", 814)
            placed = await bank.submit_bid("de-auctioneer-20260108", "b", 7000, 500)
            assert (placed["status"], placed["held"]) == ("placed", 7000 * 500 + 141)
