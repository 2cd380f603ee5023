"""Settlement: engine events into the durable ledger, exactly once, reconciled with the engine.

How it works
------------
A :class:`Venue` wraps a funded ``Engine(pre_trade_risk=True)`` and keeps
every command's events as one *delivery*, the unit the gateway submits to
settlement. Scenario tests settle small, hand-computed cases with
``Settlement.apply`` directly: delivery versus payment with exact cents,
units and fees (taker buying and taker selling), deposits and withdrawals,
the fee account, compliance surrenders and penalties, re-delivery,
restart from the same SQLite file, gaps, out-of-order deliveries, atomic
rollback, and reconciliation and statements (including that reconciliation
reports a tampered ledger).

The asyncio service is driven with ``asyncio.run`` (pytest-asyncio is not a
dependency). A seeded random trader (limits, markets, IOC and DAY orders,
cancels, replaces, deposits, withdrawals, ends of day) runs the engine while
the service settles; at a random point the consumer is stopped without
draining (the crash), matching goes on, the store is reopened from the same
file and everything is re-delivered from the start. The ledger must then
reconcile with the engine and equal a ledger built without a crash. A
store whose commits stall (a slow disk) shows that matching and the event
loop go on while the consumer is stuck, and that a full queue is refused
without losing a fill.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import random
import sqlite3
import threading
import time
from itertools import chain

import pytest

from exchange import (
    CancelOrder,
    Deposit,
    EndOfDay,
    Engine,
    MassCancel,
    NewOrder,
    OpenAccount,
    OrderType,
    ReplaceOrder,
    Side,
    TimeInForce,
    Trade,
    Withdraw,
)
from exchange.commands import ComplianceDeadline, RecordEmissions, RegisterInstallation, Surrender
from exchange.compliance import ComplianceConfig
from exchange.events import PenaltyCharged, UnitsSurrendered
from gateway.config import load_instruments
from gateway.settlement.ledger import BalanceChange, LedgerBatch, SettledTrade, SqliteLedgerStore, StaleBatch
from gateway.settlement.service import (
    EventsOutOfOrder,
    SequenceGap,
    Settlement,
    SettlementOverloaded,
    SettlementService,
    SettlementStopped,
    UnknownAccount,
    format_euros,
    format_statement,
    reconcile,
    statement,
)

INSTRUMENTS = load_instruments()
EUR = "EUR"
FEES = "carbonx-fees"
MAKER_FEE = INSTRUMENTS["EUA"].maker_fee  # cents per lot
TAKER_FEE = INSTRUMENTS["EUA"].taker_fee
LOT = INSTRUMENTS["EUA"].lot_units


class Venue:
    """An engine with risk checks on, and every command's events kept as one delivery."""

    def __init__(self, **engine_options) -> None:
        self.engine = Engine(INSTRUMENTS, pre_trade_risk=True, **engine_options)
        self.deliveries: list[list] = []
        self._ts = 0

    def ts(self) -> int:
        self._ts += 1_000_000
        return self._ts

    def send(self, command) -> list:
        events = self.engine.handle(command)
        self.deliveries.append(events)
        return events

    def open(self, account: str, **holdings: int) -> None:
        """Open and fund an account: ``EUR=cents``, ``EUA=units``..."""
        self.send(OpenAccount(ts=self.ts(), account=account))
        for asset, amount in holdings.items():
            if amount:
                self.send(Deposit(ts=self.ts(), account=account, asset=asset, amount=amount))

    def order(
        self, account: str, side: Side, lots: int, price: int | None = None, symbol: str = "EUA", **fields
    ) -> list:
        order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
        return self.send(
            NewOrder(
                ts=self.ts(),
                account=account,
                client_order_id=f"o{self._ts}",
                instrument=symbol,
                side=side,
                quantity=lots,
                price=price,
                order_type=order_type,
                **fields,
            )
        )

    def events(self) -> list:
        return list(chain.from_iterable(self.deliveries))


def open_store(path) -> SqliteLedgerStore:
    return SqliteLedgerStore(path)


def ledger_snapshot(store) -> tuple:
    """Everything the ledger holds, for comparing two ledgers."""
    return store.snapshot(), store.all_trades()


def trades_in(events) -> list[Trade]:
    return [event for event in events if isinstance(event, Trade)]


@pytest.fixture
def store(tmp_path):
    ledger = open_store(tmp_path / "ledger.db")
    yield ledger
    ledger.close()


def two_traders() -> Venue:
    venue = Venue()
    venue.open("utility", EUR=100_000_000)  # EUR 1,000,000.00
    venue.open("mill", EUA=10_000)  # 10 lots
    return venue


# -- delivery versus payment ------------------------------------------------------------------------


def test_a_trade_settles_delivery_versus_payment_with_exact_fees(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)  # rests: mill is the maker
    fills = trades_in(venue.order("utility", Side.BUY, 3, 7050))  # crosses: utility takes at the maker's 70.00
    assert len(fills) == 1 and fills[0].price == 7000 and fills[0].quantity == 3

    settled = Settlement(store, INSTRUMENTS).apply(venue.events())

    assert settled == venue.engine.counters.seq == store.last_applied_seq()
    units = 3 * LOT
    notional = 7000 * units  # EUR 210,000.00
    buyer_fee, seller_fee = 3 * TAKER_FEE, 3 * MAKER_FEE  # 10.50 and 6.00
    assert (notional, buyer_fee, seller_fee) == (21_000_000, 1_050, 600)
    assert store.snapshot().balances == {
        "utility": {EUR: 100_000_000 - notional - buyer_fee, "EUA": units},
        "mill": {EUR: notional - seller_fee, "EUA": 10_000 - units},
        FEES: {EUR: buyer_fee + seller_fee},
    }
    [trade] = store.all_trades()
    assert trade == SettledTrade(
        fills[0].seq,
        fills[0].ts,
        fills[0].trade_id,
        "EUA",
        7000,
        3,
        units,
        "utility",
        "mill",
        buyer_fee,
        seller_fee,
        "B",
    )
    report = reconcile(venue.engine, store)
    assert report.ok, report.differences
    assert report.totals == {EUR: 100_000_000, "EUA": 10_000, "CER": 0, "ERU": 0}


def test_a_selling_taker_pays_the_taker_fee_and_the_resting_buyer_the_maker_fee(store):
    venue = two_traders()
    venue.order("utility", Side.BUY, 2, 7000)  # rests: the buyer is the maker
    [fill] = trades_in(venue.order("mill", Side.SELL, 2, 6990))
    assert fill.aggressor_side is Side.SELL and fill.price == 7000

    Settlement(store, INSTRUMENTS).apply(venue.events())

    balances = store.snapshot().balances
    assert balances["utility"] == {EUR: 100_000_000 - 2 * 7000 * LOT - 2 * MAKER_FEE, "EUA": 2 * LOT}
    assert balances["mill"] == {EUR: 2 * 7000 * LOT - 2 * TAKER_FEE, "EUA": 10_000 - 2 * LOT}
    assert balances[FEES] == {EUR: 2 * (MAKER_FEE + TAKER_FEE)}
    [trade] = store.all_trades()
    assert (trade.buyer, trade.buyer_fee, trade.seller, trade.seller_fee, trade.aggressor_side) == (
        "utility",
        2 * MAKER_FEE,
        "mill",
        2 * TAKER_FEE,
        "S",
    )
    assert reconcile(venue.engine, store).ok


def test_deposits_and_withdrawals_move_cash_and_units_in_and_out(store):
    venue = Venue()
    venue.open("broker", EUR=5_000_00, CER=3_000)
    venue.send(Withdraw(ts=venue.ts(), account="broker", asset=EUR, amount=1_234_56))
    venue.send(Withdraw(ts=venue.ts(), account="broker", asset="CER", amount=1_000))
    refused = venue.send(Withdraw(ts=venue.ts(), account="broker", asset="CER", amount=2_001))  # only 2,000 left
    assert type(refused[0]).__name__ == "RequestRejected"
    venue.send(Deposit(ts=venue.ts(), account="broker", asset="CER", amount=500))

    Settlement(store, INSTRUMENTS).apply(venue.events())

    assert store.snapshot().balances["broker"] == {EUR: 5_000_00 - 1_234_56, "CER": 3_000 - 1_000 + 500}
    assert store.snapshot().net_movements == {EUR: 5_000_00 - 1_234_56, "CER": 2_500}
    assert store.accounts() == ["broker", FEES]
    assert store.last_applied_seq() == venue.engine.counters.seq  # the refusal was passed over, but counted
    assert reconcile(venue.engine, store).ok


def test_the_fee_account_collects_every_fee_and_its_statement_says_so(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 4, 7000)
    venue.order("utility", Side.BUY, 1, 7000)  # utility takes 1 lot
    venue.order("utility", Side.BUY, 2, 7000)  # and 2 more
    venue.order("utility", Side.SELL, 1, 6999)  # sells 1 back to nobody: it rests
    venue.order("mill", Side.BUY, 1, 6999)  # mill takes it
    fills = trades_in(venue.events())
    expected_fees = sum(fill.maker_fee + fill.taker_fee for fill in fills)
    assert len(fills) == 3 and expected_fees == 4 * (MAKER_FEE + TAKER_FEE)  # fees are per lot: 4 lots in 3 trades

    Settlement(store, INSTRUMENTS).apply(venue.events())

    assert store.snapshot().balances[FEES] == {EUR: expected_fees}
    assert venue.engine.fee_account.cash == expected_fees
    fee_statement = statement(venue.engine, store, FEES)
    assert fee_statement.fees_received == expected_fees and fee_statement.trades == []
    assert f"fees received: EUR {format_euros(expected_fees)}" in format_statement(fee_statement)
    assert reconcile(venue.engine, store).ok


def test_compliance_surrenders_retire_units_and_penalties_pay_the_penalty_account(store):
    # (penalties taken from cash, a venue's option: the authority-levied default moves nothing to settle)
    venue = Venue(compliance=ComplianceConfig(allowances=("EUA",), credits=("CER", "ERU"), penalty_collection="cash"))
    venue.open("cement", EUR=10_000_000, EUA=3_000)  # EUR 100,000.00, 3,000 t
    venue.send(RegisterInstallation(ts=venue.ts(), account="cement", credit_limit_bps=2200))
    venue.send(RecordEmissions(ts=venue.ts(), account="cement", year=2008, tonnes=5_000))
    [surrendered] = venue.send(Surrender(ts=venue.ts(), account="cement", year=2008, instrument="EUA", units=3_000))
    deadline = venue.send(ComplianceDeadline(ts=venue.ts(), year=2008, date=20090430))
    [penalty] = [event for event in deadline if isinstance(event, PenaltyCharged)]
    assert isinstance(surrendered, UnitsSurrendered)
    assert (penalty.penalty, penalty.paid) == (2_000 * 100_00, 10_000_000)  # EUR 100/t short; only the cash is paid

    Settlement(store, INSTRUMENTS).apply(venue.events())

    penalty_account = venue.engine.compliance.config.penalty_account
    balances = store.snapshot().balances
    assert "cement" not in balances  # nothing left (no row: holds 0): all the cash went, the rest is owed
    assert balances[penalty_account] == {EUR: 10_000_000}
    assert store.snapshot().net_movements == {EUR: 10_000_000, "EUA": 0}  # 3,000 in, 3,000 retired
    assert penalty_account in store.accounts()
    report = reconcile(venue.engine, store)
    assert report.ok, report.differences


# -- exactly once -----------------------------------------------------------------------------------


def test_re_delivering_events_is_a_no_op(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)
    settlement = Settlement(store, INSTRUMENTS)
    assert settlement.apply(venue.events()) > 0
    settled = ledger_snapshot(store)

    assert settlement.apply(venue.events()) == 0  # all of it again
    assert settlement.apply(venue.deliveries[-1]) == 0  # the last delivery again
    assert settlement.apply([]) == 0
    assert ledger_snapshot(store) == settled

    venue.order("utility", Side.BUY, 1, 7000)  # one more trade, delivered with everything before it
    assert settlement.apply(venue.events()) == len(venue.deliveries[-1])
    assert store.holdings_of("utility")["EUA"] == 4 * LOT
    assert reconcile(venue.engine, store).ok


def test_a_restart_from_the_same_file_resumes_where_it_stopped(tmp_path):
    venue = two_traders()
    for price in (7000, 7001, 7002, 7003):
        venue.order("mill", Side.SELL, 1, price)
        venue.order("utility", Side.BUY, 1, price)
    half = len(venue.deliveries) // 2
    first = open_store(tmp_path / "ledger.db")
    Settlement(first, INSTRUMENTS).apply(chain.from_iterable(venue.deliveries[:half]))
    stopped_at = first.last_applied_seq()
    first.close()

    reopened = open_store(tmp_path / "ledger.db")
    assert reopened.last_applied_seq() == stopped_at == venue.deliveries[half - 1][-1].seq
    assert Settlement(reopened, INSTRUMENTS).apply(venue.events()) == venue.engine.counters.seq - stopped_at

    clean = open_store(tmp_path / "clean.db")
    Settlement(clean, INSTRUMENTS).apply(venue.events())
    assert ledger_snapshot(reopened) == ledger_snapshot(clean)
    assert reconcile(venue.engine, reopened).ok
    reopened.close()
    clean.close()


def test_a_gap_is_refused_and_changes_nothing(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)
    settlement = Settlement(store, INSTRUMENTS)
    settlement.apply(venue.deliveries[0])
    before = ledger_snapshot(store)
    with pytest.raises(SequenceGap) as gap:
        settlement.apply(chain.from_iterable(venue.deliveries[2:]))  # delivery 1 went missing
    assert gap.value.expected == venue.deliveries[1][0].seq
    assert ledger_snapshot(store) == before


def test_events_out_of_order_are_refused(store):
    venue = two_traders()
    first, second = venue.events()[:2]
    with pytest.raises(EventsOutOfOrder):
        Settlement(store, INSTRUMENTS).apply([first, second, first])
    assert store.last_applied_seq() == 0 and store.snapshot().balances == {}


def test_a_seq_repeated_straight_after_itself_in_one_delivery_is_refused_and_applies_nothing(store):
    # Within a delivery seqs must rise strictly: a seq twice in a row is a producer bug (EventsOutOfOrder),
    # not a re-delivery, whether the ledger has applied that seq already or not. Nothing of the delivery is
    # applied, not even the events before the repeat.
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    [fill] = trades_in(venue.order("utility", Side.BUY, 3, 7050))
    events = venue.events()
    at = events.index(fill)
    settlement = Settlement(store, INSTRUMENTS)
    empty = ledger_snapshot(store)

    with pytest.raises(EventsOutOfOrder):  # a new seq (the trade, not yet applied) twice in a row
        settlement.apply(events[: at + 1] + [fill] + events[at + 1 :])
    assert store.last_applied_seq() == 0 and ledger_snapshot(store) == empty
    assert store.snapshot().balances == {} and store.all_trades() == []

    settlement.apply(events)
    settled = ledger_snapshot(store)
    last = events[-1]
    with pytest.raises(EventsOutOfOrder):  # a seq the ledger applied already, twice in a row
        settlement.apply([last, last])
    with pytest.raises(EventsOutOfOrder):  # the whole history with the trade doubled
        settlement.apply(events[: at + 1] + [fill] + events[at + 1 :])
    assert ledger_snapshot(store) == settled
    assert store.holdings_of("utility")["EUA"] == 3 * LOT  # the trade settled once
    assert reconcile(venue.engine, store).ok


def test_the_last_event_re_delivered_straight_after_it_was_applied_is_a_no_op(store):
    # Across deliveries a seq at or below the cursor is a re-delivery: passed over, the ledger unchanged.
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)
    [fill] = trades_in(venue.events())
    settlement = Settlement(store, INSTRUMENTS)
    up_to_the_trade = [event for event in venue.events() if event.seq <= fill.seq]
    assert settlement.apply(up_to_the_trade) == fill.seq == store.last_applied_seq()
    settled = ledger_snapshot(store)

    assert settlement.apply([fill]) == 0  # the trade again, on its own, right after it was applied
    assert ledger_snapshot(store) == settled and store.last_applied_seq() == fill.seq
    assert store.holdings_of("utility")["EUA"] == 3 * LOT and len(store.all_trades()) == 1

    rest = [event for event in venue.events() if event.seq > fill.seq]
    assert rest  # the trade's level change follows it
    assert settlement.apply([fill, *rest]) == len(rest)  # the repeat, then what follows it: only that is new
    assert store.holdings_of("utility")["EUA"] == 3 * LOT and len(store.all_trades()) == 1
    assert reconcile(venue.engine, store).ok


def test_a_batch_that_fails_half_way_leaves_the_ledger_untouched(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)
    Settlement(store, INSTRUMENTS).apply(venue.events())
    before = ledger_snapshot(store)
    [trade] = store.all_trades()
    cursor = store.last_applied_seq()
    # Balance changes are written first; the repeated trade id then fails: all of it must roll back.
    broken = LedgerBatch(
        previous_seq=cursor,
        last_seq=cursor + 1,
        changes=[BalanceChange("mill", EUR, 1), BalanceChange("utility", EUR, -1)],
        trades=[dataclasses.replace(trade, seq=cursor + 1)],
    )
    with pytest.raises(sqlite3.IntegrityError):
        store.commit(broken)
    assert ledger_snapshot(store) == before
    with pytest.raises(StaleBatch):  # built against an old cursor
        store.commit(LedgerBatch(previous_seq=cursor - 1, last_seq=cursor + 1, changes=[BalanceChange("mill", EUR, 1)]))
    assert ledger_snapshot(store) == before


def test_the_store_is_wal_fully_synced_and_stores_integers_only(store):
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 2  # FULL
    with pytest.raises(sqlite3.IntegrityError):
        store.commit(LedgerBatch(previous_seq=0, last_seq=1, changes=[BalanceChange("x", EUR, 1.5)]))
    assert store.snapshot().balances == {} and store.last_applied_seq() == 0


# -- reconciliation and statements ---------------------------------------------------------------------


def test_reconcile_reports_a_ledger_behind_the_engine(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)
    Settlement(store, INSTRUMENTS).apply(chain.from_iterable(venue.deliveries[:-1]))  # the trade not yet settled
    report = reconcile(venue.engine, store)
    assert not report.ok
    assert any("drain the settlement queue" in line for line in report.differences)
    assert any(line.startswith("utility EUA: ledger 0 EUA, engine 3,000 EUA") for line in report.differences)


def test_reconcile_reports_a_tampered_ledger(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)
    Settlement(store, INSTRUMENTS).apply(venue.events())
    assert reconcile(venue.engine, store).ok
    cursor = store.last_applied_seq()
    # One cent moved between accounts: the totals still add up, the holdings do not.
    store.commit(
        LedgerBatch(
            previous_seq=cursor,
            last_seq=cursor,
            changes=[BalanceChange("mill", EUR, -1), BalanceChange("utility", EUR, 1)],
        )
    )
    moved = reconcile(venue.engine, store)
    assert not moved.ok and len(moved.differences) == 2
    assert moved.differences[0] == "mill EUR: ledger EUR 209,993.99, engine EUR 209,994.00"
    # A unit out of nowhere: conservation breaks too.
    store.commit(LedgerBatch(previous_seq=cursor, last_seq=cursor, changes=[BalanceChange("utility", "CER", 1)]))
    created = reconcile(venue.engine, store)
    assert any("CER is not conserved in the ledger" in line for line in created.differences)


def test_statement_shows_holdings_reservations_trades_and_fees(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)  # takes 3 at 70.00; mill's 2 lots stay on offer
    venue.order("utility", Side.BUY, 1, 6900)  # rests: holds back 69.00 x 1,000 + the larger fee
    Settlement(store, INSTRUMENTS).apply(venue.events())

    utility = statement(venue.engine, store, "utility")
    cash = utility.holdings[0]
    assert (cash.asset, cash.holding, cash.reserved) == (EUR, 78_998_950, 6900 * LOT + TAKER_FEE)
    assert cash.available == 78_998_950 - 6_900_350
    assert [(h.asset, h.holding, h.reserved) for h in utility.holdings[1:]] == [
        ("EUA", 3_000, 0),
        ("CER", 0, 0),
        ("ERU", 0, 0),
    ]
    [line] = utility.trades
    assert (line.side, line.instrument, line.quantity, line.price, line.fee, line.liquidity, line.cash) == (
        Side.BUY,
        "EUA",
        3,
        7000,
        1_050,
        "taker",
        -21_001_050,
    )
    assert utility.fees_paid == 1_050 and utility.fees_paid_by_instrument == {"EUA": 1_050}

    mill = statement(venue.engine, store, "mill")
    assert [(h.asset, h.holding, h.reserved, h.available) for h in mill.holdings[:2]] == [
        (EUR, 20_999_400, 0, 20_999_400),
        ("EUA", 7_000, 2_000, 5_000),
    ]
    assert mill.trades[0].side is Side.SELL and mill.trades[0].liquidity == "maker" and mill.fees_paid == 600

    text = format_statement(utility)
    assert text[0] == "Statement of account utility"
    assert any(row.split() == ["EUR", "789,989.50", "69,003.50", "720,986.00"] for row in text)
    assert any(row.split()[2:] == ["BUY", "EUA", "3", "70.00", "10.50", "taker", "-210,010.50"] for row in text)
    assert "fees paid: EUR 10.50 (EUA 10.50)" in text
    with pytest.raises(UnknownAccount):
        statement(venue.engine, store, "nobody")


def test_a_self_trade_shows_both_sides_on_the_statement(store):
    venue = Venue()
    venue.open("bank", EUR=10_000_000, EUA=2_000)
    venue.order("bank", Side.SELL, 1, 7000)
    venue.order("bank", Side.BUY, 1, 7000)  # self-trade prevention is off by default
    Settlement(store, INSTRUMENTS).apply(venue.events())
    bank = statement(venue.engine, store, "bank")
    assert [(line.side, line.liquidity, line.fee) for line in bank.trades] == [
        (Side.BUY, "taker", TAKER_FEE),
        (Side.SELL, "maker", MAKER_FEE),
    ]
    assert store.holdings_of("bank") == {EUR: 10_000_000 - TAKER_FEE - MAKER_FEE, "EUA": 2_000}
    assert reconcile(venue.engine, store).ok


def test_euros_print_with_two_decimals_from_cents():
    assert [format_euros(c) for c in (0, 5, 100, 123_456_789, -1_050)] == [
        "0.00",
        "0.05",
        "1.00",
        "1,234,567.89",
        "-10.50",
    ]


# -- the asyncio service -----------------------------------------------------------------------------


class GatedStore:
    """A store whose commits wait for a gate: a stalled disk. Everything else goes to the real store."""

    STALL_LIMIT_S = 3.0  # a broken test fails after this instead of hanging

    def __init__(self, store: SqliteLedgerStore) -> None:
        self.store = store
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.commits_done = 0

    def commit(self, batch: LedgerBatch) -> None:
        self.entered.set()
        if not self.gate.wait(self.STALL_LIMIT_S):
            self.gate.set()  # stalled too long: the test is failing, so do not stall again
        self.store.commit(batch)
        self.commits_done += 1

    def __getattr__(self, name: str):
        return getattr(self.store, name)


async def redeliver(service: SettlementService, deliveries: list[list]) -> None:
    """Recovery: hand every delivery over again, from the start, waiting for room (this is not matching)."""
    for events in deliveries:
        if not service.has_room:
            await service.drain()
        service.submit(events)
    await service.drain()


def test_the_service_settles_what_is_submitted_with_a_named_consumer(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    venue.order("utility", Side.BUY, 3, 7050)

    async def scenario() -> set[str]:
        async with SettlementService(Settlement(store, INSTRUMENTS), max_pending_batches=64) as service:
            for events in venue.deliveries:
                service.submit(events)
            names = {task.get_name() for task in asyncio.all_tasks()}
            await service.drain()
            assert service.pending_batches == 0 and service.committed_takes >= 1
        with pytest.raises(SettlementStopped, match="closed"):
            service.submit(venue.deliveries[0])
        return names

    assert SettlementService.CONSUMER_TASK_NAME in asyncio.run(scenario())
    assert reconcile(venue.engine, store).ok


def test_a_task_group_owns_the_consumer_and_a_closed_service_cannot_drain(store):
    venue = two_traders()

    async def scenario() -> None:
        service = SettlementService(Settlement(store, INSTRUMENTS), max_pending_batches=64)
        async with asyncio.TaskGroup() as group:
            service.start(group)
            for events in venue.deliveries:
                service.submit(events)
            await service.close()  # drains; the group then ends without error
        with pytest.raises(SettlementStopped, match="stopped"):
            await service.drain()

    asyncio.run(scenario())
    assert store.last_applied_seq() == venue.engine.counters.seq


def test_a_consumer_failure_surfaces_on_drain_and_stops_the_service(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)

    async def scenario() -> None:
        service = SettlementService(Settlement(store, INSTRUMENTS), max_pending_batches=64)
        service.start()
        service.submit(venue.deliveries[0])
        await service.drain()
        service.submit(venue.deliveries[2])  # delivery 1 lost on the way
        with pytest.raises(SettlementStopped) as stopped:
            await service.drain()
        assert isinstance(stopped.value.__cause__, SequenceGap)
        with pytest.raises(SettlementStopped):
            service.submit(venue.deliveries[3])
        await service.close(drain=False)

    asyncio.run(scenario())
    assert store.last_applied_seq() == venue.deliveries[0][-1].seq


def test_a_full_queue_is_refused_without_waiting_and_without_losing_a_fill(store):
    venue = two_traders()
    venue.order("mill", Side.SELL, 5, 7000)
    for _ in range(4):
        venue.order("utility", Side.BUY, 1, 7000)
    gated = GatedStore(store)

    async def scenario() -> None:
        service = SettlementService(Settlement(gated, INSTRUMENTS), max_pending_batches=2)
        service.start()
        taken = 0
        while service.has_room:
            service.submit(venue.deliveries[taken])
            taken += 1
            await asyncio.sleep(0)  # the consumer picks up the first delivery and stalls in its commit
        assert gated.entered.wait(1)
        started = time.perf_counter()
        with pytest.raises(SettlementOverloaded):
            service.submit(venue.deliveries[taken])
        assert time.perf_counter() - started < 0.1  # refused at once, not after waiting for room
        with pytest.raises(SettlementStopped, match="overflowed"):  # nothing later may step over the gap
            service.submit(venue.deliveries[taken + 1])
        gated.gate.set()
        await service.close()  # what was taken is applied
        assert store.last_applied_seq() == venue.deliveries[taken - 1][-1].seq

        # Recovery: a new service over the same store, everything re-delivered from the start.
        async with SettlementService(Settlement(store, INSTRUMENTS), max_pending_batches=4) as recovered:
            await redeliver(recovered, venue.deliveries)

    asyncio.run(scenario())
    assert len(store.all_trades()) == 4
    assert reconcile(venue.engine, store).ok


# -- random trading, a crash, and a stalled consumer -----------------------------------------------------

TRADERS = ("utility", "mill", "cement", "broker", "fund")


class RandomTrader:
    """Seeded random commands for a funded venue: limits around the last price, markets, IOC and DAY
    orders, cancels, replaces, deposits, withdrawals and ends of day. Many are refused (not enough cash
    or units, out of the band, already closed): refusals must settle as nothing."""

    def __init__(self, venue: Venue, rng: random.Random) -> None:
        self.venue = venue
        self.rng = rng
        self.day = datetime.date(2008, 1, 2)
        for account in TRADERS:
            venue.open(
                account,
                EUR=rng.choice((200_000_000, 2_000_000_000)),
                **{symbol: rng.choice((0, 20_000, 200_000)) for symbol in INSTRUMENTS},
            )

    def command(self):
        rng, venue = self.rng, self.venue
        engine = venue.engine
        account = rng.choice(TRADERS)
        symbol = rng.choice(("EUA", "EUA", "CER", "ERU"))
        side = rng.choice((Side.BUY, Side.SELL))
        ts = venue.ts()
        roll = rng.random()
        if roll < 0.50:
            price = engine.books[symbol].reference_price() + rng.randint(-25, 25)
            tif = rng.choice((TimeInForce.GTC, TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC))
            return NewOrder(
                ts=ts,
                account=account,
                client_order_id=f"c{ts}",
                instrument=symbol,
                side=side,
                quantity=rng.randint(1, 20),
                price=price,
                time_in_force=tif,
            )
        if roll < 0.62:
            return NewOrder(
                ts=ts,
                account=account,
                client_order_id=f"c{ts}",
                instrument=symbol,
                side=side,
                quantity=rng.randint(1, 10),
                order_type=OrderType.MARKET,
            )
        own = [order for order in engine.open_orders.values() if order.account.account_id == account]
        if roll < 0.82 and own:
            return CancelOrder(ts=ts, account=account, order_id=rng.choice(own).order_id)
        if roll < 0.88 and own:
            order = rng.choice(own)
            return ReplaceOrder(
                ts=ts,
                account=account,
                order_id=order.order_id,
                price=order.price + rng.randint(-10, 10),
                quantity=order.quantity + rng.randint(0, 3),
            )
        if roll < 0.93:
            asset = rng.choice((EUR, symbol))
            amount = rng.randint(1, 5_000_000) if asset == EUR else rng.randint(1, 20) * 1_000
            kind = Deposit if rng.random() < 0.5 else Withdraw
            return kind(ts=ts, account=account, asset=asset, amount=amount)
        if roll < 0.95:
            self.day += datetime.timedelta(days=1)
            return EndOfDay(ts=ts, trading_date=int(self.day.strftime("%Y%m%d")))
        return CancelOrder(ts=ts, account=account, client_order_id=f"c{ts - rng.randint(1, 50) * 1_000_000}")

    def run(self, commands: int) -> None:
        for _ in range(commands):
            self.venue.send(self.command())

    def close_out(self) -> None:
        """Cancel every open order, so that nothing is left reserved."""
        for account in TRADERS:
            self.venue.send(MassCancel(ts=self.venue.ts(), account=account))


COMMANDS = 3_000


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_trading_settles_exactly_once_across_a_crash(tmp_path, seed):
    rng = random.Random(seed)
    venue = Venue()
    trader = RandomTrader(venue, rng)
    setup = len(venue.deliveries)
    crash_at = rng.randrange(COMMANDS // 4, 3 * COMMANDS // 4)
    path = tmp_path / "ledger.db"

    async def until_crash() -> tuple[int, int]:
        store = open_store(path)
        service = SettlementService(Settlement(store, INSTRUMENTS), max_pending_batches=COMMANDS + setup)
        service.start()
        for events in venue.deliveries:
            service.submit(events)
        drained_to = 0
        for step in range(COMMANDS):
            events = venue.send(trader.command())
            if step < crash_at:
                service.submit(events)
            if step % 32 == 0:
                await asyncio.sleep(0)  # the producer yields between batches of commands, as the gateway does
            if step == crash_at // 2:
                await service.drain()
                drained_to = store.last_applied_seq()
            if step == crash_at:
                await service.close(drain=False)  # the crash: whatever is still queued is gone
        cursor = store.last_applied_seq()
        store.close()
        return drained_to, cursor

    drained_to, crash_cursor = asyncio.run(until_crash())
    trader.close_out()
    final_seq = venue.engine.counters.seq
    assert 0 < drained_to <= crash_cursor < final_seq  # the crash left work for the restart
    assert sum(len(trades_in(events)) for events in venue.deliveries) > 100  # the market really traded

    async def restart() -> SqliteLedgerStore:
        store = open_store(path)
        assert store.last_applied_seq() == crash_cursor
        async with SettlementService(Settlement(store, INSTRUMENTS), max_pending_batches=256) as service:
            await redeliver(service, venue.deliveries)
        return store

    recovered = asyncio.run(restart())
    report = reconcile(venue.engine, recovered)
    assert report.ok, report.summary()
    for account in TRADERS:
        account_statement = statement(venue.engine, recovered, account)
        assert all(
            holding.reserved == 0 and holding.available == holding.holding >= 0
            for holding in account_statement.holdings
        )

    clean = open_store(tmp_path / "clean.db")
    Settlement(clean, INSTRUMENTS).apply(venue.events())
    assert ledger_snapshot(recovered) == ledger_snapshot(clean)
    recovered.close()
    clean.close()


def test_a_stalled_consumer_never_blocks_the_engine_loop(tmp_path):
    venue = Venue()
    trader = RandomTrader(venue, random.Random(7))
    gated = GatedStore(open_store(tmp_path / "ledger.db"))

    async def scenario() -> None:
        service = SettlementService(Settlement(gated, INSTRUMENTS), max_pending_batches=4_096)
        service.start()
        for events in venue.deliveries:
            service.submit(events)
        await asyncio.sleep(0)
        assert await asyncio.to_thread(gated.entered.wait, 1), "the consumer never started a commit"

        longest_pause = 0.0  # the longest the event loop went without running a waiting task
        stop_ticking = asyncio.Event()

        async def ticker() -> None:
            nonlocal longest_pause
            last = time.perf_counter()
            while not stop_ticking.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                longest_pause = max(longest_pause, now - last)
                last = now

        ticking = asyncio.create_task(ticker(), name="test-loop-ticker")
        trades_before = venue.engine.counters.trade_id
        for step in range(1_000):  # the engine loop goes on matching while the ledger is stuck
            service.submit(venue.send(trader.command()))
            if step % 16 == 0:
                await asyncio.sleep(0)
        stop_ticking.set()
        await ticking
        assert gated.commits_done == 0, "the producer waited for settlement"
        assert venue.engine.counters.trade_id > trades_before
        assert longest_pause < GatedStore.STALL_LIMIT_S / 2, "the event loop was blocked by settlement"

        gated.gate.set()  # the disk comes back: everything queued settles
        await service.close()

    asyncio.run(scenario())
    report = reconcile(venue.engine, gated.store)
    assert report.ok, report.summary()
    gated.store.close()
