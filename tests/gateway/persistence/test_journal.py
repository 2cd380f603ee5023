"""The journal and start-up recovery: what is written reads back, and a restart rebuilds exactly what ran.

How it works
------------
``Live`` drives a :class:`gateway.pipeline.sequencer.Sequencer` and a
:class:`gateway.persistence.journal.JournalWriter` through the calls the gateway makes
per batch (``gateway.node``: ``_execute``, ``_operator_commands``,
``_answer``, ``_accept_logon``, ``_commit``): each group of session commands
is journaled as an ``execute`` record and then run, operator commands as an
``operator`` record, an answer that changes nothing as a ``skip`` record,
a logon with cancel-on-disconnect as a ``session`` record; then the commit
record, one write and one fdatasync. The standard workload (conftest) is
turned into orders and cancels of a few generously funded demo accounts, a
few requests to a batch, so the journals are realistic without sockets.
After every commit ``Live`` notes what an observer could check later: the
commit's seq and offset, the engine's state hash, the outbound numbering.

Covered:

- command encoding: every command type round-trips through MessagePack
  (NewOrder over its whole valid range, by hypothesis);
- reading: the batches read back are the records appended, seqs 1..N with
  no gap, nothing torn; reading from an offset;
- recovery: the state after ``recover`` equals the live state and a replay
  from scratch, from the whole journal or from a snapshot taken midway,
  including outbound seq numbering, resend contents and what the next batch
  produces;
- torn tails: a cut at every byte of the last batch is cut back to the
  previous commit, and appending and recovering again continues the seqs;
  (hypothesis) a cut anywhere after what was acknowledged plus garbage
  never loses an acknowledged batch, twice in a row; a batch written twice
  at the tail is not applied twice;
- damage in the middle is refused (``JournalCorrupt`` naming the record) and
  the file is left as it is, also when a whole zeroed 4 KiB block holds more
  records than the reader searches past;
- snapshots that are damaged, from another journal or past the ledger are
  passed over (one past the journal's end refuses the start: see
  tests/gateway/persistence/test_startup_integrity.py, with the rest of the start-up checks);
  events after the ledger's cursor are settled exactly once, whatever the
  cursor;
- a genesis that differs is refused with the difference named; a journal
  that never got past its header is created afresh; a file that is not a
  journal is refused, not replaced.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from conftest import generate_workload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange import (
    CASH_ASSET,
    AdmitBidder,
    BlockAccount,
    CancelOrder,
    ClearPrimaryAuction,
    CloseOutAccount,
    ComplianceDeadline,
    Deposit,
    EndOfDay,
    ListFutures,
    MassCancel,
    ModifyBid,
    NewOrder,
    OpenAccount,
    OpenPrimaryAuction,
    OpenSettlementWindow,
    OrderType,
    RecordAllocation,
    RecordEmissions,
    RegisterInstallation,
    ReplaceOrder,
    ReportBlockTrade,
    ScheduleReached,
    SelfTradePrevention,
    SetSelfTradePrevention,
    SetTradingPhase,
    ShiftSchedule,
    Side,
    SubmitBid,
    Surrender,
    TimeInForce,
    TradingPhase,
    UnblockAccount,
    Withdraw,
    WithdrawBid,
)
from exchange.commands import MAX_INT
from gateway.config import DEFAULT_ACCOUNTS, load_accounts, load_compliance, load_instruments
from gateway.opening import opening_commands
from gateway.persistence.errors import JournalCorrupt, JournalError
from gateway.persistence.journal import (
    COMMAND_TYPES,
    GENESIS,
    HEADER,
    MAGIC,
    Genesis,
    JournalReader,
    JournalWriter,
    commit_record,
    decode_command,
    encode_command,
    execute_record,
    operator_record,
    read_genesis,
    session_record,
    skip_record,
)
from gateway.persistence.recovery import (
    SNAPSHOT_DIR,
    new_sequencer,
    read_snapshot,
    recover,
    replay_journal,
    snapshot_bytes,
    write_snapshot,
)
from gateway.persistence.segments import FIRST_SEGMENT
from gateway.wire.messages import BalancesAnswer

# Demo accounts the order flow alternates between. Their order value limits (EUR 5-10 million) refuse the
# workload's largest orders, and bank and broker have self-trade prevention: refusals and STP cancels are
# deterministic, so they belong in a journal as much as fills do.
ACCOUNTS = ("bank", "broker", "gov-fund", "carbon-fund")
TS0 = 1_700_000_000_000_000_000  # the "clock" Live reads: Sequencer.now makes it increase by one each time


@functools.cache
def standard_genesis() -> Genesis:
    # A resend window larger than any account's message count here: nothing is evicted, so what a
    # recovered resend store holds can be compared exactly with the live one (see resend_frames).
    return Genesis(load_instruments(), load_compliance(), md_levels=10, resend_window=100_000)


@dataclass(frozen=True)
class Committed:
    """What was true just after one commit record was synced."""

    last_seq: int  # the commit record's seq
    end: int  # journal offset just after it
    bodies: list | None  # the records appended in the batch (None: the state Live started from)
    state_hash: str
    next_seqs: dict
    cod_sessions: frozenset


class Live:
    """A Sequencer and its JournalWriter, driven batch by batch exactly as the gateway drives them."""

    def __init__(self, core, journal: JournalWriter) -> None:
        self.core = core
        self.journal = journal
        self.request_id = 0
        self.committed: list[Committed] = []
        # (index in committed of the batch, account, seq) of answers journaled only as a number used
        self.skipped: list[tuple[int, str, int]] = []
        self._note(None)  # where we start: after the genesis batch, or the state recovered

    @classmethod
    def create(cls, data_dir: Path, genesis: Genesis | None = None) -> Live:
        genesis = genesis or standard_genesis()
        return cls(new_sequencer(genesis), JournalWriter.create(Path(data_dir) / FIRST_SEGMENT, genesis))

    @classmethod
    def resume(cls, recovered) -> Live:
        return cls(recovered.core, recovered.journal)

    def now(self) -> int:
        return self.core.now(TS0)

    def _note(self, bodies: list | None) -> None:
        core = self.core
        self.committed.append(
            Committed(
                self.journal.next_seq - 1,
                self.journal.size,
                bodies,
                core.engine.state_hash(),
                dict(core.next_seqs),
                frozenset(core.cod_sessions),
            )
        )

    @property
    def last(self) -> Committed:
        return self.committed[-1]

    # -- one gateway batch ----------------------------------------------------------------------

    def batch(self, *steps: tuple) -> tuple:
        """Run one gateway batch and commit it; returns (events, outbox, market data) as the gateway releases it.

        Steps: ("execute", [(account or None, request_id, command), ...]), ("operator", [command, ...]),
        ("skip", account) for an answer that changes nothing, ("session", account) for a logon with
        cancel-on-disconnect in force.
        """
        core, journal = self.core, self.journal
        bodies = []
        outbox: list = []  # the batch's, as the gateway's replies keep it
        for step in steps:
            kind = step[0]
            if kind == "execute":
                body = execute_record(step[1])
                journal.append(body)  # journaled first, then run: as the engine loop's _execute
                core.execute(step[1], outbox)
            elif kind == "operator":
                body = operator_record(step[1])
                journal.append(body)
                core.operator(step[1], outbox)
            elif kind == "skip":
                account = step[1]
                body = skip_record(account, 1)
                journal.append(body)
                self.skipped.append((len(self.committed), account, core.next_seq(account)))
                core.deliver(
                    account,
                    BalancesAnswer(account=account, balances=[], blocked=False, ts=0, request_id=self.request_id),
                    outbox,
                )
            elif kind == "session":
                body = session_record(step[1])
                journal.append(body)
                core.session_started(step[1])
            else:
                raise ValueError(kind)
            bodies.append(body)
        events, _, market_data = core.commit()
        committed = (events, outbox, market_data)
        journal.append(commit_record())
        journal.flush()
        journal.sync()
        self._note(bodies)
        return committed

    # -- what the gateway would be asked ----------------------------------------------------------

    def open_accounts(self) -> None:
        """The demo accounts opened and funded as the gateway's first operator batch, plus deep pockets for
        the accounts that trade, so that a fill never waits for money."""
        ts = self.now()
        commands = opening_commands(load_accounts(DEFAULT_ACCOUNTS, self.core.engine.instruments), ts)
        for account in ACCOUNTS:
            commands.append(Deposit(ts=ts, account=account, asset=CASH_ASSET, amount=10**12))
            commands.append(Deposit(ts=ts, account=account, asset="EUA", amount=10**9))
        self.batch(("operator", commands))

    def request(self, account: str, command) -> tuple:
        self.request_id += 1
        return (account, self.request_id, command)

    def command_for(self, row):
        """A workload row as the command of one of ACCOUNTS (prices are ticks: EUA's tick is one cent)."""
        account = ACCOUNTS[row.order_id % len(ACCOUNTS)]
        clid = f"w{row.order_id}"
        if row.kind == "C":
            return account, CancelOrder(ts=self.now(), account=account, client_order_id=clid)
        if row.kind == "M":
            return account, NewOrder(
                ts=self.now(),
                account=account,
                client_order_id=clid,
                instrument="EUA",
                side=row.side,
                quantity=row.quantity,
                order_type="MARKET",
                time_in_force="IOC",
            )
        return account, NewOrder(
            ts=self.now(),
            account=account,
            client_order_id=clid,
            instrument="EUA",
            side=row.side,
            quantity=row.quantity,
            price=row.price,
        )

    def order_flow(self, rows, per_batch: int = 4, skips: bool = True) -> None:
        """The rows as sessions' requests, ``per_batch`` to a gateway batch; with ``skips`` some batches also
        answer a request that changes nothing (a skip record)."""
        for start in range(0, len(rows), per_batch):
            steps: list[tuple] = []
            pending: list = []
            ordering: set[str] = set()
            for row in rows[start : start + per_batch]:
                account, command = self.command_for(row)
                if row.kind == "C" and account in ordering:
                    # The gateway runs what is pending first: the cancel may name an order still pending.
                    steps.append(("execute", pending))
                    pending, ordering = [], set()
                elif row.kind != "C":
                    ordering.add(account)
                pending.append(self.request(account, command))
            if pending:
                steps.append(("execute", pending))
            number = start // per_batch
            if skips and number % 5 == 2:
                steps.append(("skip", ACCOUNTS[number % len(ACCOUNTS)]))
            self.batch(*steps)

    def logon(self, account: str) -> None:
        self.batch(("session", account))

    def disconnect(self, account: str) -> None:
        """The gateway's cancel-on-disconnect: a MassCancel with no requester."""
        self.batch(("execute", [(None, None, MassCancel(ts=self.now(), account=account, on_disconnect=True))]))

    def end_of_day(self, trading_date: int) -> None:
        self.batch(("operator", [EndOfDay(ts=self.now(), trading_date=trading_date)]))

    def snapshot(self, data_dir: Path) -> Path:
        """A snapshot between batches, the journal synced up to it: as gateway.persistence.snapshots does."""
        journal = self.journal
        data = snapshot_bytes(self.core, journal.journal_id, journal.next_seq - 1, journal.size)
        return write_snapshot(Path(data_dir), journal.next_seq - 1, data)

    def close(self) -> None:
        self.journal.close()


def rows(orders: int, seed: int = 7):
    return generate_workload(orders, seed)


def standard_journal(
    data_dir: Path, orders: int = 400, seed: int = 7, snapshot_after: int | None = None, genesis: Genesis | None = None
) -> tuple[Live, Path | None]:
    """A realistic journal: accounts opened, a session with cancel-on-disconnect that ends midway (its
    orders cancelled), an end of day, and the workload's orders and cancels; optionally a snapshot
    after ``snapshot_after`` of the workload's rows."""
    live = Live.create(data_dir, genesis)
    live.open_accounts()
    live.logon("carbon-fund")
    flow = rows(orders, seed)
    split = len(flow) // 2 if snapshot_after is None else snapshot_after
    live.order_flow(flow[: split // 2])
    live.disconnect("carbon-fund")
    live.order_flow(flow[split // 2 : split])
    snapshot = live.snapshot(data_dir) if snapshot_after is not None else None
    live.end_of_day(20240102)
    live.logon("broker")
    live.order_flow(flow[split:])
    return live, snapshot


def record_offsets(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, seq, body length) of every whole record, read straight from the framing, not the reader."""
    out, position = [], len(MAGIC)
    while position + HEADER.size <= len(data):
        length, _, seq = HEADER.unpack_from(data, position)
        if position + HEADER.size + length > len(data):
            break
        out.append((position, seq, length))
        position += HEADER.size + length
    return out


def resend_frames(core, account: str) -> list[tuple[int, bytes]]:
    return core.resend(account, 1)[0]


def all_accounts(*cores) -> list[str]:
    return sorted(set().union(*(core.engine.accounts for core in cores)))


def probe(core) -> tuple:
    """What the next batch would produce: the same marketable orders on any core, its messages and market data.
    Tracker, market-data feed and numbering disagreeing anywhere would show here."""
    ts = core.last_ts + 1
    inputs = [
        (
            "bank",
            "p1",
            NewOrder(
                ts=ts, account="bank", client_order_id="probe-b", instrument="EUA", side="B", quantity=40, price=7015
            ),
        ),
        (
            "gov-fund",
            "p2",
            NewOrder(
                ts=ts + 1,
                account="gov-fund",
                client_order_id="probe-s",
                instrument="EUA",
                side="S",
                quantity=20,
                order_type="MARKET",
                time_in_force="IOC",
            ),
        ),
    ]
    outbox: list = []
    core.execute(inputs, outbox)
    events, _, market_data = core.commit()
    return events, [(entry.account, entry.message) for entry in outbox], market_data


# -- 1. commands as plain values ---------------------------------------------------------------------


def one_of_each_command() -> list:
    ts = 1_700_000_000_123_456_789
    return [
        NewOrder(
            ts=ts,
            account="bank",
            client_order_id="c-1",
            instrument="EUA",
            side="B",
            quantity=10,
            price=7000,
            time_in_force="GTD",
            expire_date=20240131,
            display_quantity=3,
            self_trade_prevention="CANCEL_BOTH",
        ),
        CancelOrder(ts=ts, account="bank", order_id=42),
        ReplaceOrder(ts=ts, account="bank", client_order_id=7, quantity=5, price=6990),
        MassCancel(ts=ts, account="bank", instrument="EUA", on_disconnect=True),
        BlockAccount(ts=ts, account="speculator"),
        UnblockAccount(ts=ts, account="speculator"),
        SetSelfTradePrevention(ts=ts, account="bank", mode="CANCEL_RESTING"),
        EndOfDay(ts=ts, trading_date=20240102),
        OpenSettlementWindow(ts=ts, instrument="EUA"),
        ScheduleReached(ts=ts, trading_date=20240102, point="close:EUA", skipped=True),
        ShiftSchedule(ts=ts, trading_date=20240102, seconds=900),
        ListFutures(ts=ts, trading_date=20261207),
        ReportBlockTrade(
            ts=ts,
            account="a",
            block_id="B1",
            counterparty="b",
            instrument="EUAZ27",
            side=Side.SELL,
            quantity=50,
            price=72_30,
            kind="efp",
            physical_price=71_90,
        ),
        CloseOutAccount(ts=ts, account="a", to_account="b"),
        OpenAccount(ts=ts, account="new-fund", order_value_limit=500_000_000, self_trade_prevention="CANCEL_TAKING"),
        Deposit(ts=ts, account="bank", asset=CASH_ASSET, amount=123_456_789),
        Withdraw(ts=ts, account="bank", asset="EUA", amount=1000),
        RegisterInstallation(ts=ts, account="paper-mill", credit_limit_bps=2200),
        RecordAllocation(ts=ts, account="paper-mill", year=2023, units=800_000),
        AdmitBidder(ts=ts, account="bank", admitted=False),
        RecordEmissions(ts=ts, account="paper-mill", year=2023, tonnes=1_000_000),
        Surrender(ts=ts, account="paper-mill", year=2023, instrument="CER", units=5000),
        ComplianceDeadline(ts=ts, year=2023, date=20240930),
        SetTradingPhase(ts=ts, instrument="EUA", phase=TradingPhase.HALTED),
        SetTradingPhase(
            ts=ts, instrument="EUA", phase=TradingPhase.CONTINUOUS, from_phase=TradingPhase.VOLATILITY_INTERRUPTION
        ),
        OpenPrimaryAuction(
            ts=ts,
            auction_id="DE-1",
            auctioneer="de-auctioneer",
            instrument="EUA",
            volume=10_000,
            closes_at=ts + 10**9,
            seed="0f" * 32,
            reserve_discount_bps=2000,
        ),
        SubmitBid(ts=ts, account="bank", auction_id="DE-1", bid_id="b-1", price=7010, volume=1500),
        ModifyBid(ts=ts, account="bank", auction_id="DE-1", bid_id="b-1", volume=1000),
        WithdrawBid(ts=ts, account="bank", auction_id="DE-1", bid_id=7),
        ClearPrimaryAuction(ts=ts, auction_id="DE-1"),
    ]


def through_msgpack(command):
    """encode_command, the bytes the journal would hold, and back."""
    return decode_command(msgspec.msgpack.decode(msgspec.msgpack.encode(encode_command(command))))


def test_every_command_type_round_trips_through_its_plain_encoding():
    commands = one_of_each_command()
    assert {type(command) for command in commands} == set(COMMAND_TYPES)  # a new type needs a case here
    for command in commands:
        encoded = encode_command(command)
        assert encoded[0] == type(command).__name__
        decoded = through_msgpack(command)
        assert type(decoded) is type(command)
        assert decoded == command
        # Enum fields come back as members, not the wire strings they were written as.
        for name in command.__struct_fields__:
            assert type(getattr(decoded, name)) is type(getattr(command, name)), name


def test_an_unknown_command_name_is_a_journal_error():
    with pytest.raises(JournalError, match="unknown command 'Teleport'"):
        decode_command(["Teleport", [1, "bank"]])


whole = st.integers(min_value=0, max_value=MAX_INT)
positive = st.integers(min_value=1, max_value=MAX_INT)
names = st.text(min_size=1, max_size=64)


@st.composite
def new_orders(draw):
    """Any valid NewOrder: each field over its whole valid range, in the combinations the rules allow."""
    order_type = draw(st.sampled_from(OrderType))
    quantity = draw(positive)
    fields = dict(
        ts=draw(whole),
        account=draw(names),
        client_order_id=draw(st.one_of(whole, names)),
        instrument=draw(names),
        side=draw(st.sampled_from(Side)),
        quantity=quantity,
        order_type=order_type,
        self_trade_prevention=draw(st.none() | st.sampled_from(SelfTradePrevention)),
    )
    if order_type is OrderType.MARKET:
        fields["time_in_force"] = draw(
            st.sampled_from([TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK])
        )
        return NewOrder(**fields)
    tif = draw(st.sampled_from(TimeInForce))
    fields.update(price=draw(positive), time_in_force=tif)
    if tif is TimeInForce.GTD:
        # Any real calendar date from year 1000 on (YYYYMMDD must have eight digits).
        fields["expire_date"] = int(draw(st.dates(min_value=datetime.date(1000, 1, 1))).strftime("%Y%m%d"))
    stop = draw(st.none() | positive)
    fields["stop_price"] = stop
    if tif not in (TimeInForce.IOC, TimeInForce.FOK):
        fields["display_quantity"] = draw(st.none() | st.integers(min_value=1, max_value=quantity))
        fields["post_only"] = stop is None and draw(st.booleans())
    return NewOrder(**fields)


@settings(max_examples=150)
@given(new_orders())
def test_any_valid_new_order_round_trips(order):
    decoded = through_msgpack(order)
    assert decoded == order
    assert (type(decoded.side), type(decoded.order_type), type(decoded.time_in_force)) == (Side, OrderType, TimeInForce)


# -- 2. writing and reading ----------------------------------------------------------------------------


def test_a_journal_reads_back_the_records_appended_with_seqs_1_to_n(tmp_path):
    live, _ = standard_journal(tmp_path, orders=300)
    live.close()
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    reader = JournalReader(path)
    batches = list(reader.batches())

    # The genesis batch: the terms given, and nothing else.
    genesis_seq, genesis_end, genesis_bodies = batches[0]
    assert genesis_seq == 2 and (genesis_seq, genesis_end) == (live.committed[0].last_seq, live.committed[0].end)
    assert [body[0] for body in genesis_bodies] == [GENESIS]
    assert read_genesis(genesis_bodies[0]).differences(standard_genesis()) == []

    # Every later batch: exactly the bodies appended, ending where the writer said.
    assert len(batches) == len(live.committed)
    for (last_seq, end, bodies), committed in zip(batches[1:], live.committed[1:], strict=True):
        assert bodies == committed.bodies
        assert (last_seq, end) == (committed.last_seq, committed.end)
    kinds = {body[0] for _, _, bodies in batches for body in bodies}
    assert kinds == {"genesis", "execute", "operator", "skip", "session"}  # every kind was exercised

    # The framing itself: seqs 1..N, no gap, records back to back up to the end of the file.
    data = path.read_bytes()
    records = record_offsets(data)
    assert [seq for _, seq, _ in records] == list(range(1, live.journal.next_seq))
    assert records[-1][0] + HEADER.size + records[-1][2] == len(data) == live.journal.size
    assert reader.result.committed_end == len(data)
    assert reader.result.last_seq == live.journal.next_seq - 1
    assert (reader.result.file_size, reader.result.torn_bytes, reader.result.torn_reason) == (len(data), 0, None)

    # Reading from a commit boundary (what a snapshot does) yields exactly the batches after it.
    middle = live.committed[len(live.committed) // 2]
    rest = list(JournalReader(path).batches(middle.end, middle.last_seq + 1))
    assert rest == batches[len(live.committed) // 2 + 1 :]


# -- 3. recovery equals the live state ---------------------------------------------------------------


def assert_same_numbering(live: Live, recovered_core, skipped_after: int = -1) -> None:
    """Outbound numbering equal everywhere; the resend store equal to the live one except for answers that
    changed nothing after batch ``skipped_after``: the journal holds those only as numbers used (skip
    records), so a replay cannot keep their frames (Sequencer.resend: "gaps the caller fills")."""
    for account in all_accounts(live.core, recovered_core):
        assert recovered_core.next_seq(account) == live.core.next_seq(account), account
        gaps = {seq for batch, who, seq in live.skipped if who == account and batch > skipped_after}
        expected = [(seq, frame) for seq, frame in resend_frames(live.core, account) if seq not in gaps]
        assert resend_frames(recovered_core, account) == expected, account
        assert recovered_core.resend(account, 1)[1] == live.core.resend(account, 1)[1]


def test_recovery_rebuilds_exactly_the_live_state(tmp_path):
    live, _ = standard_journal(tmp_path, orders=600)
    live.close()
    assert live.skipped  # the comparison below must cover the gaps too
    recovered = recover(tmp_path, standard_genesis())
    report = recovered.report
    assert not report.created and report.snapshot is None and report.snapshots_passed_over == []
    assert (report.torn_bytes, report.torn_reason) == (0, None)
    assert report.batches == len(live.committed)
    assert report.last_seq == live.journal.next_seq - 1

    scratch, scratch_report, result = replay_journal(tmp_path / FIRST_SEGMENT, standard_genesis())
    assert recovered.core.engine.state_hash() == live.core.engine.state_hash() == scratch.engine.state_hash()
    assert recovered.core.engine.counters.seq == live.core.engine.counters.seq
    assert recovered.core.cod_sessions == live.core.cod_sessions == {"broker"}  # carbon-fund's session ended
    assert recovered.core.last_ts == live.core.last_ts
    assert_same_numbering(live, recovered.core)
    assert_same_numbering(live, scratch)
    assert scratch_report.command_counts == report.command_counts
    assert (result.committed_end, result.last_seq) == (live.journal.size, live.journal.next_seq - 1)
    # The writer handed back appends where the live one would have.
    assert (recovered.journal.next_seq, recovered.journal.size) == (live.journal.next_seq, live.journal.size)
    assert recovered.journal.journal_id == live.journal.journal_id

    # The next batch behaves the same on all three: tracker and market-data feed agree too.
    assert probe(recovered.core) == probe(live.core) == probe(scratch)


def test_recovery_from_a_snapshot_midway_equals_a_full_replay(tmp_path):
    live, snapshot = standard_journal(tmp_path, orders=600, snapshot_after=250)
    live.close()
    info, _ = read_snapshot(snapshot)
    at = next(index for index, committed in enumerate(live.committed) if committed.last_seq == info.record_seq)
    assert info.offset == live.committed[at].end and info.journal_id == live.journal.journal_id

    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.snapshot is not None and recovered.report.snapshot.path == snapshot
    assert recovered.report.snapshots_passed_over == []
    assert recovered.report.batches == len(live.committed) - 1 - at  # only the batches after the snapshot
    full, _, _ = replay_journal(tmp_path / FIRST_SEGMENT, standard_genesis())
    assert recovered.core.engine.state_hash() == full.engine.state_hash() == live.core.engine.state_hash()
    assert recovered.core.cod_sessions == full.cod_sessions == live.core.cod_sessions
    # The snapshot kept the frames of answers made before it; only later ones are gaps.
    assert_same_numbering(live, recovered.core, skipped_after=at)
    assert_same_numbering(live, full)
    assert (recovered.journal.next_seq, recovered.journal.size) == (live.journal.next_seq, live.journal.size)
    assert probe(recovered.core) == probe(live.core) == probe(full)


def test_a_recovered_exchange_goes_on_and_recovers_again(tmp_path):
    live, _ = standard_journal(tmp_path, orders=300)
    live.close()
    again = Live.resume(recover(tmp_path, standard_genesis()))
    again.logon("gov-fund")
    again.order_flow(rows(200, seed=11))
    again.close()
    final = recover(tmp_path, standard_genesis())
    assert final.core.engine.state_hash() == again.core.engine.state_hash()
    assert final.report.last_seq == again.journal.next_seq - 1
    assert [seq for _, seq, _ in record_offsets((tmp_path / FIRST_SEGMENT).read_bytes())] == list(
        range(1, again.journal.next_seq)
    )


# -- 4. a torn last batch, cut at every byte ----------------------------------------------------------


def test_a_torn_last_batch_is_cut_back_to_the_previous_commit_at_every_byte(tmp_path):
    source = tmp_path / "source"
    live = Live.create(source)
    live.open_accounts()
    live.order_flow(rows(24, seed=3), skips=False)
    flow = rows(40, seed=5)
    inputs = [live.request(*live.command_for(row)) for row in flow[:3]]
    more = [live.request(*live.command_for(row)) for row in flow[3:5]]
    # The last batch holds one record of every kind the gateway writes mid-batch.
    live.batch(("execute", inputs), ("skip", "bank"), ("session", "broker"), ("execute", more))
    live.close()
    data = (source / FIRST_SEGMENT).read_bytes()
    before, last = live.committed[-2], live.committed[-1]
    assert last.end == len(data)

    work = tmp_path / "work"
    path = work / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    for cut in range(before.end, last.end):  # every cut that leaves the last commit incomplete
        path.write_bytes(data[:cut])
        recovered = recover(work, standard_genesis())
        report = recovered.report
        assert (report.torn_bytes, report.last_seq) == (cut - before.end, before.last_seq), cut
        assert path.stat().st_size == before.end, cut  # truncated to the previous commit's end
        assert recovered.core.engine.state_hash() == before.state_hash, cut
        assert dict(recovered.core.next_seqs) == before.next_seqs, cut
        assert frozenset(recovered.core.cod_sessions) == before.cod_sessions, cut
        assert (recovered.journal.next_seq, recovered.journal.size) == (before.last_seq + 1, before.end), cut

        # Appending goes on from there, and the next start sees it, with no gap in the seqs.
        going_on = Live.resume(recovered)
        going_on.order_flow(flow[5:9], skips=False)
        going_on.close()
        again = recover(work, standard_genesis())
        assert (again.report.torn_bytes, again.report.last_seq) == (0, going_on.last.last_seq), cut
        assert again.core.engine.state_hash() == going_on.last.state_hash, cut
        assert [seq for _, seq, _ in record_offsets(path.read_bytes())] == list(range(1, going_on.last.last_seq + 1)), (
            cut
        )
        again.journal.close()

    # The whole file, cut nowhere, recovers the last batch.
    path.write_bytes(data)
    whole = recover(work, standard_genesis())
    assert whole.report.torn_bytes == 0 and whole.core.engine.state_hash() == last.state_hash
    whole.journal.close()


def test_a_batch_written_twice_at_the_tail_is_not_applied_twice(tmp_path):
    # A write retried after a crash of the writer (or a copy gone wrong) repeats the last batch: its
    # records are whole and their CRCs good, but their seqs are not the ones due, so they are a torn tail.
    live, _ = standard_journal(tmp_path, orders=80)
    live.close()
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    path.write_bytes(data + data[live.committed[-2].end :])
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.torn_bytes == len(data) - live.committed[-2].end
    assert "where" in recovered.report.torn_reason and "was due" in recovered.report.torn_reason
    assert recovered.core.engine.state_hash() == live.last.state_hash
    assert path.read_bytes() == data


# -- 5. acknowledged batches survive any crash after them (hypothesis) ---------------------------------


@functools.cache
def base_journal() -> tuple[bytes, tuple[Committed, ...], Genesis]:
    with tempfile.TemporaryDirectory() as directory:
        live, _ = standard_journal(Path(directory), orders=120, seed=13)
        live.close()
        return (Path(directory) / FIRST_SEGMENT).read_bytes(), tuple(live.committed), standard_genesis()


def last_committed_within(committed, size: int) -> Committed:
    return [batch for batch in committed if batch.end <= size][-1]


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_acknowledged_batches_survive_a_crash_with_garbage_after_them_twice(data):
    journal_bytes, committed, genesis = base_journal()
    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory)
        path = data_dir / FIRST_SEGMENT
        path.parent.mkdir(parents=True, exist_ok=True)
        # Everything up to the end of batch `acked` was synced and acknowledged; the crash tore the file
        # anywhere after that and left garbage (a torn sector, preallocated junk) behind the cut.
        acked = data.draw(st.sampled_from(committed), label="acknowledged")
        cut = data.draw(st.integers(min_value=acked.end, max_value=len(journal_bytes)), label="cut")
        garbage = data.draw(st.binary(max_size=300), label="garbage")
        path.write_bytes(journal_bytes[:cut] + garbage)

        recovered = recover(data_dir, genesis)
        expected = last_committed_within(committed, cut)  # garbage never makes a batch, so this one exactly
        assert recovered.report.last_seq == expected.last_seq >= acked.last_seq
        assert recovered.core.engine.state_hash() == expected.state_hash
        assert path.stat().st_size == expected.end

        # The exchange goes on, acknowledges more, and crashes again the same way.
        live = Live.resume(recovered)
        start = data.draw(st.integers(min_value=0, max_value=40), label="rows from")
        live.order_flow(rows(60, seed=17)[start : start + 16])
        live.close()
        second = live.committed
        acked2 = data.draw(st.sampled_from(second), label="acknowledged again")
        size = path.stat().st_size
        cut2 = data.draw(st.integers(min_value=acked2.end, max_value=size), label="cut again")
        garbage2 = data.draw(st.binary(max_size=300), label="garbage again")
        with open(path, "r+b") as file:
            file.truncate(cut2)
            file.seek(cut2)
            file.write(garbage2)

        again = recover(data_dir, genesis)
        expected2 = last_committed_within(second, cut2)
        assert again.report.last_seq == expected2.last_seq >= acked2.last_seq
        assert again.core.engine.state_hash() == expected2.state_hash
        fresh, report, _ = replay_journal(path, genesis)
        assert fresh.engine.state_hash() == expected2.state_hash and report.torn_bytes == 0
        again.journal.close()


# -- 6. damage in the middle ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["length", "crc", "seq", "body"])
def test_damage_before_valid_records_is_refused_and_the_file_left_alone(tmp_path, where):
    live, _ = standard_journal(tmp_path, orders=120)
    live.close()
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(path.read_bytes())
    # An early execute record: the fourth batch's first record, with many valid records after it.
    victim = live.committed[3].last_seq + 1
    offset, seq, length = next(record for record in record_offsets(bytes(data)) if record[1] == victim)
    assert live.committed[4].bodies[0][0] == "execute" and length > 8
    flip = {"length": offset + 3, "crc": offset + 5, "seq": offset + 15, "body": offset + HEADER.size + length // 2}
    data[flip[where]] ^= 0x10
    path.write_bytes(bytes(data))

    with pytest.raises(JournalCorrupt) as caught:
        recover(tmp_path, standard_genesis())
    assert (caught.value.offset, caught.value.seq) == (offset, victim)
    assert f"record {victim} at byte {offset}" in str(caught.value)
    assert path.read_bytes() == bytes(data)  # nothing cut, nothing written
    with pytest.raises(JournalCorrupt):
        replay_journal(path, standard_genesis())


def test_a_zeroed_block_in_the_middle_is_refused_not_truncated_as_a_torn_tail(tmp_path):
    # Storage loses data in blocks: one 4 KiB block read back as zeros, in the middle of a journal
    # of one request per batch (a quiet market: every request is its own batch). The block holds
    # more than RESYNC_SEARCH (64) records, so the valid record after it has a seq more than 64 past
    # the damaged one. That is still damage with valid records after it: recover must refuse it,
    # never cut off every acknowledged batch after the block as if it were a crash's torn tail.
    live = Live.create(tmp_path)
    live.open_accounts()
    live.order_flow(rows(300, seed=19), per_batch=1, skips=False)
    live.close()
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * 4096
    block = 4096  # the second 4 KiB block of the file
    inside = [seq for offset, seq, _ in record_offsets(bytes(data)) if block <= offset < 2 * block]
    assert len(inside) > 64  # the premise: more records in the block than the reader searches past
    data[block : 2 * block] = bytes(4096)
    path.write_bytes(bytes(data))

    try:
        recovered = recover(tmp_path, standard_genesis())
    except JournalCorrupt:
        assert path.read_bytes() == bytes(data)  # refused, and the file left as it was
        return
    pytest.fail(
        f"a zeroed block in the middle was taken for a torn tail: the journal was cut to "
        f"{path.stat().st_size} of {len(data)} bytes, losing acknowledged batches up to seq "
        f"{live.last.last_seq} (recovered up to seq {recovered.report.last_seq})"
    )


# -- 7. snapshots passed over ----------------------------------------------------------------------------
# (A snapshot past the journal's last commit record is not passed over: it shows that the journal lost
# acknowledged batches, and the start is refused; tests/gateway/persistence/test_startup_integrity.py.)


@pytest.mark.parametrize("kind", ["damaged", "other_journal", "past_the_ledger"])
def test_an_unusable_snapshot_is_passed_over_for_an_older_one(tmp_path, kind):
    data_dir = tmp_path / "exchange"
    live = Live.create(data_dir)
    live.open_accounts()
    flow = rows(200, seed=23)
    live.order_flow(flow[:60])
    good = live.snapshot(data_dir)  # an older, usable snapshot
    good_info, _ = read_snapshot(good)
    live.order_flow(flow[60:120])
    bad_name = "snapshot-999999999999.cxs"  # named as the newest, so it is tried first

    settled: list = []
    settle = None
    ledger_cursor = 0
    if kind == "damaged":
        bad = live.snapshot(data_dir)
        raw = bytearray(bad.read_bytes())
        raw[len(raw) // 2] ^= 0x01  # the pickled body: its CRC no longer matches
        bad.unlink()
        (data_dir / SNAPSHOT_DIR / bad_name).write_bytes(bytes(raw))
        reason = "CRC mismatch"
    elif kind == "other_journal":
        other_dir = tmp_path / "other"
        other = Live.create(other_dir)
        other.open_accounts()
        other.order_flow(flow[:120])  # the same commands, even: still another journal
        shutil.copy(other.snapshot(other_dir), data_dir / SNAPSHOT_DIR / bad_name)
        other.close()
        reason = "belongs to another journal"
    else:
        # The ledger settled only up to the good snapshot's events: a later snapshot is ahead of it.
        shutil.move(live.snapshot(data_dir), data_dir / SNAPSHOT_DIR / bad_name)
        ledger_cursor = good_info.event_seq
        settle = settled.extend
        reason = "the ledger has not settled up to it"
    live.close()
    expected = last_committed_within(live.committed, (data_dir / FIRST_SEGMENT).stat().st_size)

    recovered = recover(data_dir, standard_genesis(), ledger_cursor=ledger_cursor, settle=settle)
    report = recovered.report
    assert report.snapshots_passed_over == [f"{bad_name}: {reason}"]
    assert report.snapshot is not None and report.snapshot.path == good
    full, _, _ = replay_journal(data_dir / FIRST_SEGMENT, standard_genesis())
    assert recovered.core.engine.state_hash() == full.engine.state_hash() == expected.state_hash
    if settle is not None:
        # Every event after the ledger's cursor settled once, in order, and none before it.
        assert [event.seq for event in settled] == list(range(ledger_cursor + 1, full.engine.counters.seq + 1))
        assert report.settled_events == len(settled)


def test_replay_settles_every_event_after_the_ledger_cursor_exactly_once(tmp_path):
    # Whatever the ledger had applied when the exchange stopped, the replay hands it the rest: no event
    # twice, none missing, in order; also when the cursor falls inside a batch or on its last event.
    live = Live.create(tmp_path)
    live.open_accounts()
    live.order_flow(rows(40, seed=31))
    live.close()
    last_event = live.core.engine.counters.seq
    for cursor in range(0, last_event + 1):
        settled: list = []
        core, report, _ = replay_journal(
            tmp_path / FIRST_SEGMENT, standard_genesis(), settle=settled.extend, ledger_cursor=cursor
        )
        assert [event.seq for event in settled] == list(range(cursor + 1, last_event + 1)), cursor
        assert report.settled_events == last_event - cursor
    with pytest.raises(JournalError, match="past the journal's last event"):
        recover(tmp_path, standard_genesis(), ledger_cursor=last_event + 1, settle=list().extend)


def test_with_no_usable_snapshot_the_whole_journal_is_replayed(tmp_path):
    live = Live.create(tmp_path)
    live.open_accounts()
    live.order_flow(rows(120, seed=29))
    snapshot = live.snapshot(tmp_path)
    live.close()
    snapshot.write_bytes(snapshot.read_bytes()[:20])  # shorter than its header
    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.snapshot is None
    assert recovered.report.snapshots_passed_over == [f"{snapshot.name}: shorter than its header"]
    assert recovered.core.engine.state_hash() == live.last.state_hash
    assert recovered.report.batches == len(live.committed)


# -- 8. the genesis must match ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("tick_size", 5, "EUA.tick_size: 1 -> 5"),
        ("taker_fee", 400, "EUA.taker_fee: 350 -> 400"),
    ],
)
def test_a_journal_started_with_other_instrument_terms_is_refused(tmp_path, field, value, named):
    live, _ = standard_journal(tmp_path, orders=60)
    live.close()
    before = (tmp_path / FIRST_SEGMENT).read_bytes()
    instruments = dict(load_instruments())
    instruments["EUA"] = dataclasses.replace(instruments["EUA"], **{field: value})
    changed = dataclasses.replace(standard_genesis(), instruments=instruments)
    with pytest.raises(JournalError) as caught:
        recover(tmp_path, changed)
    assert named in str(caught.value)
    assert (tmp_path / FIRST_SEGMENT).read_bytes() == before


def test_the_genesis_round_trips_through_its_plain_value():
    genesis = standard_genesis()
    value = msgspec.msgpack.decode(msgspec.msgpack.encode(genesis.to_value()))
    again = Genesis.from_value(value)
    assert again.differences(genesis) == [] and again == genesis
    without = dataclasses.replace(genesis, compliance=None, md_levels=5)
    assert without.differences(genesis) == [
        f"compliance: None -> {genesis.to_value()['compliance']!r}",
        "md_levels: 5 -> 10",
    ]


# -- 9. a journal that never got past its header -----------------------------------------------------


@pytest.mark.parametrize("content", ["empty", "part_of_the_magic", "magic_only", "genesis_without_commit"])
def test_a_journal_that_never_committed_its_genesis_is_created_afresh(tmp_path, content):
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "genesis_without_commit":
        scratch = tmp_path / "scratch"
        JournalWriter.create(scratch / FIRST_SEGMENT, standard_genesis()).close()
        written = (scratch / FIRST_SEGMENT).read_bytes()
        last_record = record_offsets(written)[-1][0]
        path.write_bytes(written[:last_record])  # the genesis record whole, its commit record lost
    else:
        path.write_bytes({"empty": b"", "part_of_the_magic": MAGIC[:5], "magic_only": MAGIC}[content])

    recovered = recover(tmp_path, standard_genesis())
    assert recovered.report.created
    assert recovered.journal.next_seq == 3  # genesis and its commit
    assert recovered.core.engine.state_hash() == new_sequencer(standard_genesis()).engine.state_hash()
    batches = list(JournalReader(path).batches())
    assert len(batches) == 1 and read_genesis(batches[0][2][0]).differences(standard_genesis()) == []
    assert recovered.journal.size == path.stat().st_size

    # It is a journal like any other from then on.
    live = Live.resume(recovered)
    live.open_accounts()
    live.close()
    again = recover(tmp_path, standard_genesis())
    assert not again.report.created and again.core.engine.state_hash() == live.last.state_hash


def test_a_file_that_is_not_a_journal_is_refused_not_replaced(tmp_path):
    path = tmp_path / FIRST_SEGMENT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(JournalError, match="is not a carbonx journal"):
        recover(tmp_path, standard_genesis())
    assert path.read_bytes() == b"SQLite format 3\x00" + bytes(100)


def test_a_genesis_written_before_the_one_sided_band_replays_with_its_band_on_both_sides():
    # A journal's answers must not change under it: one begun when the band held both sides has no
    # price_band_one_sided in its genesis, and reads back with the band as it was then.
    value = standard_genesis().to_value()
    assert all(entry["price_band_one_sided"] for entry in value["instruments"])  # the shipped band: one-sided
    for entry in value["instruments"]:
        del entry["price_band_one_sided"]
    old = Genesis.from_value(value)
    assert not any(instrument.price_band_one_sided for instrument in old.instruments.values())
    assert old.differences(standard_genesis()) != []
