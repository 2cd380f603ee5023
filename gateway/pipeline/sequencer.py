"""The exchange's deterministic state: the engine and everything the gateway derives from its events.

How this works
--------------
The gateway (:mod:`gateway.node`) and recovery (:mod:`gateway.persistence.recovery`)
drive one :class:`Sequencer` through the same calls, live or from the
journal, so that what a restart rebuilds is exactly what was running:

- ``execute`` runs the commands of sessions' requests as one engine batch
  and turns the events into numbered messages for each account (execution
  reports, mass-cancel and kill-switch reports, engine refusals);
- ``operator`` runs the exchange's own commands (accounts, deposits, end of
  day, compliance);
- ``deliver`` numbers a message for an account (its outbound ``seq``),
  keeps its encoded frame for resend and puts it in the outbox the caller
  gives (the batch's, owned by the pipeline: the state holds no session);
  ``skip`` replays a number used by an answer that changed nothing;
- ``commit`` closes a gateway batch: its events, its fills (the trade
  reports the tracker made of its Trade events, for the accounts' private
  market data) and its market data. Market data is made here, right after
  the batch ran, because the book feed reads the engine's books: made later
  it would show what later batches did (and replay could not repeat it).

Besides the engine it holds the order tracker (client order ids, fills so
far), the market-data feed (statistics, ``md_seq``), each account's next
``seq`` and its last ``resend_window`` frames, and the last timestamp. No
clock is read here except through ``now``'s argument, and nothing is sent:
the gateway does that after the journal has the batch.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

import msgspec

from exchange import (
    AdmitBidder,
    BlockAccount,
    CancelOrder,
    CloseOutAccount,
    ComplianceConfig,
    ComplianceDeadline,
    Engine,
    Instrument,
    MassCancel,
    ModifyBid,
    NewOrder,
    OpenPrimaryAuction,
    RecordAllocation,
    RecordEmissions,
    ReplaceOrder,
    ReportBlockTrade,
    SetTradingPhase,
    SubmitBid,
    Surrender,
    UnblockAccount,
    WithdrawBid,
)
from exchange import RequestRejected as EngineRequestRejected
from exchange.clearing import FuturesConfig
from exchange.events import DeadlinePassed
from gateway.logs import log_event
from gateway.marketdata.feed import MarketDataFeed
from gateway.pipeline.compliance_reports import year_closed_report
from gateway.pipeline.reports import OPERATOR_ANSWERED, OrderTracker, operator_answer, request_rejected
from gateway.wire.messages import (
    BidderAdmission,
    CloseOutReport,
    ComplianceReport,
    ExecutionReport,
    KillSwitchReport,
    MarketData,
    MassCancelReport,
    NumberedMessage,
    RequestRejected,
)
from gateway.wire.protocol import encode_frame

log = logging.getLogger("carbonx.gateway")


_tuple_new = tuple.__new__


class Numbered(NamedTuple):
    """An outbox entry: a message numbered for an account (its ``seq``), with its frame as kept for resend."""

    account: str
    message: NumberedMessage
    frame: bytes


# The wire request each session command came from: named in the engine's refusals ("request").
REQUEST_TYPES = {
    NewOrder: "new_order",
    CancelOrder: "cancel_order",
    ReplaceOrder: "replace_order",
    MassCancel: "mass_cancel",
    BlockAccount: "kill_switch",
    UnblockAccount: "release_kill_switch",
    SetTradingPhase: "set_trading_phase",
    OpenPrimaryAuction: "open_auction",
    SubmitBid: "submit_bid",
    ModifyBid: "modify_bid",
    WithdrawBid: "withdraw_bid",
    ReportBlockTrade: "report_block",
    CloseOutAccount: "close_out",
    RecordAllocation: "record_allocation",
    RecordEmissions: "record_emissions",
    ComplianceDeadline: "close_compliance_year",
    Surrender: "surrender",
    AdmitBidder: "admit_bidder",
}


class Sequencer:
    """Engine, order tracker, market-data feed, outbound numbering and resend store; see the module notes."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        compliance: ComplianceConfig | None,
        md_levels: int,
        resend_window: int,
        futures: FuturesConfig | None = None,
    ) -> None:
        self.engine = Engine(instruments, compliance=compliance, futures=futures)
        self.tracker = OrderTracker(self.engine.instruments)
        self.feed = MarketDataFeed(self.engine, md_levels)
        self.resend_window = resend_window
        self.next_seqs: dict[str, int] = {}  # account -> seq of its next numbered message
        self.sent: dict[str, deque] = {}  # account -> its last resend_window (seq, frame), oldest first
        self.last_ts = 0
        # Accounts whose session has cancel-on-disconnect in force: a restart ends those sessions, so their
        # orders are cancelled at start-up (see gateway.persistence.journal, the session record).
        self.cod_sessions: set[str] = set()
        self.replaying = False  # set by recovery: operator refusals were logged when they happened
        self.events: list = []  # the gateway batch in hand: its engine events
        # ... and its fills (the trade reports the tracker made of its Trade events), for the accounts' private
        # market data
        self.fills: list[tuple[str, ExecutionReport]] = []

    def now(self, clock_ns: int) -> int:
        """The next command timestamp from a clock reading: never going back, never repeating."""
        ts = clock_ns if clock_ns > self.last_ts else self.last_ts + 1
        self.last_ts = ts
        return ts

    def next_seq(self, account: str) -> int:
        return self.next_seqs.get(account, 1)

    # -- what changes state -------------------------------------------------------------------

    def execute(self, inputs: list, outbox: list) -> None:
        """Run sessions' commands as one engine batch and number each one's answers, in order, into ``outbox``.

        ``inputs``: (account that asked, or None for cancel-on-disconnect;
        its request_id; the command).
        """
        if not inputs:
            return
        for account, _, command in inputs:
            if command.ts > self.last_ts:
                self.last_ts = command.ts
            if account is None:  # the gateway's cancel-on-disconnect: the session is over
                self.cod_sessions.discard(command.account)
        ends: list[int] = []
        events = self.engine.handle_all([command for _, _, command in inputs], ends)
        self.events += events
        start = 0
        messages = self.tracker.messages
        deliver = self.deliver
        fills = self.fills
        for (requester, request_id, command), end in zip(inputs, ends, strict=True):
            if command.__class__ in OPERATOR_ANSWERED:  # its events name no account: the operator is answered
                extension = self.engine.schedule_extension(getattr(command, "trading_date", 0))
                answer = operator_answer(command, events[start:end], self.tracker.ticks, extension)
                if request_id is not None:
                    answer.request_id = request_id
                deliver(requester, answer, outbox)
            for account, message in messages(events[start:end], fills):
                if requester is None:  # cancel-on-disconnect: the canceled reports say why (DISCONNECT)
                    if message.__class__ is not MassCancelReport:
                        deliver(account, message, outbox)
                    continue
                if message.__class__ is RequestRejected:
                    message.request = REQUEST_TYPES[command.__class__]
                    account = requester  # a refused kill switch names the target account: answer the operator
                elif account != requester and message.__class__ is KillSwitchReport:
                    if command.__class__ is not CloseOutAccount:  # (a close-out answers with its own report)
                        deliver(account, msgspec.structs.replace(message), outbox)  # the blocked account learns it too
                        account = requester
                elif isinstance(message, CloseOutReport) and account != requester:
                    if account == message.account:
                        deliver(account, msgspec.structs.replace(message), outbox)  # the operator is answered with it
                        account = requester
                elif isinstance(message, CloseOutReport) and account != message.account:
                    continue  # the operator took the positions itself: answered already, with the defaulter's copy
                elif (message.__class__ is ComplianceReport or message.__class__ is BidderAdmission) and (
                    account != requester
                ):
                    deliver(account, message, outbox)  # the account is told; the authority or operator gets a copy
                    message = msgspec.structs.replace(message)
                    account = requester
                    if command.__class__ is ComplianceDeadline:  # told; the year_closed report is the answer
                        deliver(account, message, outbox)
                        continue
                if account == requester and request_id is not None:
                    message.request_id = request_id
                deliver(account, message, outbox)
            if command.__class__ is ComplianceDeadline:  # names no installation: the authority is answered
                self._answer_deadline(requester, request_id, events[start:end], outbox)
            start = end
        # events[start:] are the batch's level changes: the market-data feed's (see commit)

    def _answer_deadline(self, requester: str, request_id: object, events: list, outbox: list) -> None:
        """A closed year's report, or its refusal (which names no account, so the tracker tells no one)."""
        for event in events:
            if event.__class__ is DeadlinePassed:
                answer: NumberedMessage = year_closed_report(event)
            elif event.__class__ is EngineRequestRejected:
                answer = request_rejected("close_compliance_year", event.code, event.ts)
            else:
                continue
            if request_id is not None:
                answer.request_id = request_id  # type: ignore[assignment]
            self.deliver(requester, answer, outbox)

    def operator(self, commands: list, outbox: list) -> list:
        """Run the exchange's own commands as one engine batch; their events. Refusals are logged, not sent."""
        for command in commands:
            if command.ts > self.last_ts:
                self.last_ts = command.ts
        events = self.engine.handle_all(commands)
        self.events += events
        for account, message in self.tracker.messages(events, self.fills):
            if message.__class__ is RequestRejected:  # the operator's own command: not the account's business
                if not self.replaying:
                    log_event(
                        log,
                        "operator_command_refused",
                        logging.WARNING,
                        account=account,
                        request=message.request,
                        code=message.code,
                        text=message.text,
                    )
            elif message.__class__ is not BidderAdmission:  # (the admissions of config/accounts.toml tell no one)
                self.deliver(account, message, outbox)
        return events

    def numbered(self, account: str) -> bool:
        """Whether messages to the account are numbered: not for the fee account or one never opened."""
        engine = self.engine
        return account != engine.fee_account_id and engine.has_account(account)

    def deliver(self, account: str, message: NumberedMessage, outbox: list) -> None:
        """Number a message for the account, keep it for resend, put it in ``outbox``; numbered even if nobody
        reads it."""
        seq = self.next_seqs.get(account)
        if seq is None:  # the account's first message: next_seqs holds only numbered accounts
            if not self.numbered(account):
                return
            seq = 1
        message.seq = seq
        self.next_seqs[account] = seq + 1
        frame = encode_frame(message)
        kept = self.sent.get(account)
        if kept is None:
            kept = self.sent[account] = deque(maxlen=self.resend_window)
        kept.append((seq, frame))
        # Built with tuple.__new__: a NamedTuple's own constructor is a Python-level function, and this runs for
        # every numbered message.
        outbox.append(_tuple_new(Numbered, (account, message, frame)))

    def session_started(self, account: str) -> None:
        """The account logged on with cancel-on-disconnect in force."""
        self.cod_sessions.add(account)

    def skip(self, account: str, count: int) -> None:
        """Replay ``count`` numbers used by answers the journal does not hold (they are not kept for resend)."""
        if self.numbered(account):
            self.next_seqs[account] = self.next_seqs.get(account, 1) + count

    def commit(self) -> tuple[list, list[tuple[str, ExecutionReport]], list[tuple[str, str, MarketData]]]:
        """End the batch: (its events, its fills, its market data); the next batch starts empty."""
        events, fills = self.events, self.fills
        self.events, self.fills = [], []
        return events, fills, self.feed.messages(events) if events else []

    def counters(self) -> dict:
        """Everything numbered besides the engine's state: each account's next seq, each feed channel's md_seq,
        the sessions whose cancel-on-disconnect is pending (two rebuilds of one journal must agree on it)."""
        return {
            "next_seqs": dict(sorted(self.next_seqs.items())),
            "md_seqs": {
                symbol: dict(sorted(feed.seq.items())) for symbol, feed in sorted(self.feed.instruments.items())
            },
            "cod_sessions": sorted(self.cod_sessions),
        }

    # -- resend ---------------------------------------------------------------------------------

    def resend(self, account: str, from_seq: int) -> tuple[list[tuple[int, bytes]], int]:
        """The kept frames with seq >= ``from_seq``: (frames, the last seq used).

        Numbers in the range that were not kept (answers from before a
        restart, which the journal holds only as counts) are gaps the caller
        fills.
        """
        kept = self.sent.get(account, ())
        return [(seq, frame) for seq, frame in kept if seq >= from_seq], self.next_seq(account) - 1
