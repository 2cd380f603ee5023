"""Durability through the running exchange: restarts rebuild it exactly, resend, and a failed journal stops it.

Each test runs the whole exchange in this process (``exchange_on_port``) on a
data directory of its own, stops it, and starts it again on the same
directory, as an operator would. What the sessions saw before the stop is
compared with the state and the answers after it: state hash, outbound
sequence numbers, client order ids, the resend of numbered messages, the
settled ledger. A real ``kill -9`` is tests/gateway/persistence/test_crash.py's; the journal's
file format, torn tails and snapshots are tests/gateway/persistence/test_journal.py's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import shutil

import pytest
from gateway_helpers import TIMEOUT, Inbox, assert_fields, demo_configuration, eventually, exchange_on_port, session

from exchange import ConfigError, RejectCode, SelfTradePrevention
from gateway.client import RequestRefused
from gateway.persistence import journal as journal_module
from gateway.persistence import snapshots as snapshots_module
from gateway.persistence.errors import JournalFailure
from gateway.persistence.recovery import SNAPSHOT_DIR, journal_genesis_and_id, replay_journal, snapshot_files
from gateway.persistence.segments import FIRST_SEGMENT
from gateway.settlement.service import reconcile


async def reconciled(gateway) -> None:
    """The ledger settles everything and then agrees with the engine. (A session that just logged out may
    still have its cancel-on-disconnect on the way: the engine is given until TIMEOUT to be idle.)"""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        await eventually(
            lambda: gateway.intake.requests.empty() and not gateway.loop.in_hand and not gateway.loop.unsynced
        )
        await gateway.settlement.drain()
        report = reconcile(gateway.engine, gateway.settlement.settlement.store)
        if report.ok or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert report.ok, report.summary()


def offline_hash(data_dir) -> str:
    """The state hash of a replay of the whole journal from its first record (no snapshot)."""
    path = data_dir / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    genesis, _ = journal_genesis_and_id(path)
    core, _, _ = replay_journal(path, genesis)
    return core.engine.state_hash()


async def trade_a_little(bank, broker) -> None:
    """Orders, a partial fill, a replace, a cancel and a query: every kind of journal record."""
    await bank.new_order("EUA", "S", 5, 7000, client_order_id="s1")
    await bank.new_order("EUA", "S", 3, 7010, client_order_id="s2")
    await broker.new_order("EUA", "B", 2, 7000, client_order_id="b1")  # partly fills s1
    await bank.replace(client_order_id="s2", quantity=4, price=7005)
    await broker.new_order("CER", "B", 1, 5800, client_order_id="b2")
    await broker.cancel(client_order_id="b2")
    await bank.balances()  # numbered, journaled only as a number used


async def test_a_restart_rebuilds_the_same_state_from_snapshot_or_journal_alone(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with session(gateway, "bank") as bank, session(gateway, "broker", cancel_on_disconnect=False) as broker:
            await trade_a_little(bank, broker)
        await reconciled(gateway)
    before = gateway.engine.state_hash()
    counters = gateway.sequencer.counters()
    seqs = {account: gateway.sequencer.next_seq(account) for account in ("bank", "broker")}
    assert snapshot_files(tmp_path), "a graceful stop writes a snapshot"
    assert offline_hash(tmp_path) == before
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    assert replay_journal(path, journal_genesis_and_id(path)[0])[0].counters() == counters  # numbering too

    for from_snapshot in (True, False):
        if not from_snapshot:
            shutil.rmtree(tmp_path / SNAPSHOT_DIR)  # the journal alone
        async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
            assert gateway.engine.state_hash() == before
            assert {account: gateway.sequencer.next_seq(account) for account in seqs} == seqs
            await reconciled(gateway)
            async with session(gateway, "broker", cancel_on_disconnect=False) as broker:
                assert broker.logon["next_seq"] == seqs["broker"]
                status = await broker.order_status(client_order_id="b1")
                assert_fields(status, order_status="filled", cum_quantity=2, avg_price="70.0000")
                again = await broker.new_order("EUA", "B", 1, 6900, client_order_id="b1")
                assert_fields(again, exec_type="rejected", code=int(RejectCode.DUPLICATE_CLIENT_ORDER_ID))
                await broker.new_order("EUA", "B", 1, 6900, client_order_id="b3")
            await reconciled(gateway)
        before = gateway.engine.state_hash()
        seqs = {account: gateway.sequencer.next_seq(account) for account in seqs}
        assert offline_hash(tmp_path) == before


async def test_resend_gives_back_the_numbered_messages_as_first_sent_also_after_a_restart(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with (
            session(gateway, "bank", cancel_on_disconnect=False) as bank,
            session(gateway, "broker", cancel_on_disconnect=False) as broker,
        ):
            inbox = Inbox(bank)
            await trade_a_little(bank, broker)
            seen = await inbox.take(gateway.sequencer.next_seq("bank") - 1)
            begin, resent = await bank.resend(1)
            assert begin["unavailable"] == [] and resent == seen  # the same process keeps every answer
            assert (begin["from_seq"], begin["to_seq"], begin["messages"]) == (1, len(seen), len(seen))
            with pytest.raises(RequestRefused) as refused:
                await bank.resend(len(seen) + 2)
            assert refused.value.answer["code"] == int(RejectCode.INVALID_FIELD)
    balances_seq = next(m["seq"] for m in seen if m["type"] == "balances")

    refusal_seq = len(seen) + 1

    # The stop's snapshot holds the resend store: everything comes back, the refusal too.
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            assert bank.logon["next_seq"] == refusal_seq + 1  # the refused resend used a number too
            begin, resent = await bank.resend(1)
    assert begin["unavailable"] == [] and resent[:-1] == seen
    assert_fields(resent[-1], type="reject", seq=refusal_seq, code=int(RejectCode.INVALID_FIELD))

    # From the journal alone, every message its commands caused comes back byte for byte; answers to
    # queries and refusals are journaled as numbers used, not kept: listed as unavailable.
    shutil.rmtree(tmp_path / SNAPSHOT_DIR)
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            assert bank.logon["next_seq"] == refusal_seq + 1
            begin, resent = await bank.resend(1)
    assert resent == [m for m in seen if m["seq"] != balances_seq]
    assert balances_seq == refusal_seq - 1  # the last of trade_a_little: one range with the refusal
    assert begin["unavailable"] == [[balances_seq, refusal_seq]]


async def test_the_resend_window_keeps_the_latest_messages_of_each_account(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path), resend_window=3) as gateway, session(gateway, "bank") as bank:
        for number in range(6):
            await bank.new_order("EUA", "S", 1, 7100 + number)
        begin, resent = await bank.resend(2)
        assert [m["seq"] for m in resent] == [4, 5, 6]
        assert begin["unavailable"] == [[2, 3]]


async def test_a_session_live_at_a_stop_has_its_orders_cancelled_at_the_next_start(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        bank_manager = session(gateway, "bank")  # cancel-on-disconnect, the account's default
        bank = await bank_manager.__aenter__()
        async with session(gateway, "broker", cancel_on_disconnect=False) as broker:
            await bank.new_order("EUA", "S", 5, 7100, client_order_id="rest")
            await broker.new_order("EUA", "B", 5, 6900, client_order_id="stays")
            last_seen = bank.last_seq
    await bank_manager.__aexit__(None, None, None)  # the exchange logged it out (711) as it stopped
    assert bank.closed.code == int(RejectCode.SHUTTING_DOWN)
    assert "bank" in gateway.sequencer.cod_sessions  # the stop ended the session, but not through the engine

    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        assert not gateway.sequencer.cod_sessions
        async with session(gateway, "bank") as bank, session(gateway, "broker", cancel_on_disconnect=False) as broker:
            assert bank.logon["next_seq"] == last_seen + 2  # the cancel was numbered while nobody was logged on
            _, resent = await bank.resend(last_seen + 1)
            assert [(m["exec_type"], m["client_order_id"], m["reason"]) for m in resent] == [
                ("canceled", "rest", "DISCONNECT")
            ]
            assert_fields(await broker.order_status(client_order_id="stays"), order_status="new", leaves_quantity=5)
        await reconciled(gateway)


@pytest.mark.parametrize("failing", ["fdatasync", "write"])
async def test_a_failed_journal_write_or_sync_stops_the_exchange_and_acknowledges_nothing_more(
    tmp_path, monkeypatch, failing
):
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            inbox = Inbox(bank)
            await bank.new_order("EUA", "S", 1, 7100, client_order_id="acked")
            await inbox.expect(client_order_id="acked", exec_type="new")
            real = getattr(journal_module.os, failing)

            def broken(*args):
                if failing == "write" or args[0] == gateway.journal._fd:
                    raise OSError(errno.EIO, "Input/output error")
                return real(*args)

            monkeypatch.setattr(journal_module.os, failing, broken)
            bank.send(bank.new_order_message("EUA", "S", 1, 7101, client_order_id="never-acked"))
            await asyncio.wait_for(gateway.stopped.wait(), TIMEOUT)
            assert isinstance(gateway.failure, JournalFailure)
            assert await inbox.until_end() == []  # no answer for the batch the disk may not have
            monkeypatch.undo()
    # Whatever reached the file before the failure may be there after a restart, acknowledged or not:
    # a client that resends the unacknowledged order with its client order id learns which it is.
    async with (
        exchange_on_port(data_dir=str(tmp_path)) as gateway,
        session(gateway, "bank", cancel_on_disconnect=False) as bank,
    ):
        assert_fields(await bank.order_status(client_order_id="acked"), order_status="new")
        again = await bank.new_order("EUA", "S", 1, 7101, client_order_id="never-acked")
        assert again["exec_type"] == "new" or again.get("code") == int(RejectCode.DUPLICATE_CLIENT_ORDER_ID)
        await reconciled(gateway)


async def test_an_operator_can_have_a_snapshot_taken_now(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path), snapshot_every=0) as gateway:
        async with session(gateway, "bank") as bank, session(gateway, "market-ops") as operator:
            await bank.new_order("EUA", "S", 2, 7050, client_order_id="x")
            taken = await operator.snapshot()
            assert_fields(
                taken,
                type="snapshot_taken",
                event_seq=gateway.engine.counters.seq,
                path=str(tmp_path / SNAPSHOT_DIR / f"snapshot-{taken['record_seq']:012d}.cxs"),
            )
            assert (tmp_path / SNAPSHOT_DIR / taken["path"].rsplit("/", 1)[1]).is_file()
            refused = await bank.snapshot()
            assert_fields(refused, type="reject", code=int(RejectCode.NOT_AUTHORISED))
    assert len(snapshot_files(tmp_path)) == 2  # the operator's and the stop's


async def test_snapshots_are_taken_every_so_many_journal_records(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path), snapshot_every=10) as gateway:
        async with session(gateway, "bank", cancel_on_disconnect=False) as bank:
            # One snapshot is written at a time (a forked child); commands go on meanwhile, and the next is
            # taken once 10 more were journaled after the last one finished.
            number = 0
            while gateway.snapshots.taken < 3:
                assert number < 3_000, f"{gateway.snapshots.taken} snapshots after {number} orders"
                await bank.new_order("EUA", "S", 1, 7100 + number % 100)
                number += 1
    before = gateway.engine.state_hash()
    async with exchange_on_port(data_dir=str(tmp_path)) as gateway:
        assert gateway.engine.state_hash() == before == offline_hash(tmp_path)


async def test_one_exchange_per_data_directory(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)):
        with pytest.raises(ConfigError, match="in use by another running exchange"):
            async with exchange_on_port(data_dir=str(tmp_path)):
                pass


async def test_changed_instrument_terms_refuse_to_start_on_an_existing_journal(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)):
        pass
    instruments, _, _ = demo_configuration()
    changed = {**instruments, "EUA": dataclasses.replace(instruments["EUA"], taker_fee=400)}
    with pytest.raises(ConfigError, match=r"EUA.taker_fee: 350 -> 400"):
        async with exchange_on_port(data_dir=str(tmp_path), instruments=changed):
            pass


async def test_account_settings_changed_between_runs_are_applied_or_reported(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path)):
        pass
    _, accounts, _ = demo_configuration()
    bank = accounts["bank"]
    changed = {
        **accounts,
        "bank": dataclasses.replace(
            bank,
            self_trade_prevention=SelfTradePrevention.CANCEL_BOTH,
            order_value_limit=12_345_600,
            cash=bank.cash * 2,
        ),
        "newcomer": dataclasses.replace(accounts["broker"], account_id="newcomer"),
    }
    records: list[logging.LogRecord] = []
    listener = logging.Handler(logging.WARNING)
    listener.emit = records.append  # on the gateway's logger itself: another test may have configured logging
    logger = logging.getLogger("carbonx.gateway")
    logger.addHandler(listener)
    try:
        async with exchange_on_port(data_dir=str(tmp_path), accounts=changed) as gateway:
            state = gateway.engine.accounts["bank"]
            assert state.self_trade_prevention is SelfTradePrevention.CANCEL_BOTH  # applied, and journaled
            assert state.order_value_limit == bank.order_value_limit  # an open account keeps its limit
            assert state.cash == bank.cash  # opening amounts are history, not settings
            assert gateway.engine.accounts["newcomer"].cash == accounts["broker"].cash  # opened and funded
    finally:
        logger.removeHandler(listener)
    assert any(
        record.getMessage() == "account_setting_not_applied"
        and "bank.order_value_limit" in record.carbonx_fields["change"]
        for record in records
    )
    assert offline_hash(tmp_path) == gateway.engine.state_hash()


async def test_a_snapshot_that_cannot_be_written_is_refused_and_trading_goes_on(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path), snapshot_every=0) as gateway:
        blocker = tmp_path / SNAPSHOT_DIR
        blocker.write_text("a file where the snapshot directory should be")
        try:
            async with session(gateway, "market-ops") as operator, session(gateway, "bank") as bank:
                refused = await operator.snapshot()
                assert_fields(refused, type="reject", ref_type="snapshot", code=int(RejectCode.SNAPSHOT_FAILED))
                assert_fields(await bank.new_order("EUA", "S", 1, 7100), exec_type="new")
        finally:
            blocker.unlink()
    assert gateway.failure is None and gateway.snapshots.taken == 1  # the one at the stop


async def test_no_process_for_a_snapshot_is_refused_and_trading_goes_on(tmp_path, monkeypatch):
    def no_process(*args):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(snapshots_module, "fork_snapshot", no_process)
    async with exchange_on_port(data_dir=str(tmp_path), snapshot_every=0) as gateway:
        async with session(gateway, "market-ops") as operator, session(gateway, "bank") as bank:
            assert_fields(await operator.snapshot(), type="reject", code=int(RejectCode.SNAPSHOT_FAILED))
            assert_fields(await bank.new_order("EUA", "S", 1, 7100), exec_type="new")
    assert gateway.failure is None


async def test_a_stop_right_after_a_snapshot_request_finishes_both(tmp_path):
    async with exchange_on_port(data_dir=str(tmp_path), snapshot_every=0) as gateway:
        async with session(gateway, "market-ops", cancel_on_disconnect=False) as operator:
            operator.send({"type": "snapshot"})
            await eventually(lambda: gateway.snapshots.writer is not None)
            await asyncio.wait_for(gateway.stop(), TIMEOUT)  # the snapshot's answer is journaled and synced first
    assert gateway.failure is None and gateway.snapshots.taken == 2
