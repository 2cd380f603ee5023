"""The calendar runner: carries out each schedule point of the trading calendar when it is due.

How this works
--------------
One task (``trading-calendar``), started with the gateway when the exchange
runs on its calendar (``schedule = "calendar"``). It looks for the next point
not yet done: the open trading day is the first trading day after the
engine's ``last_closed_date`` (or, the first time, today's), and its points
come from :meth:`TradingCalendar.points`, the closing ones moved by the
operator's extension of that day (:class:`exchange.ShiftSchedule`). It
sleeps until the point is due by the exchange's clock (:mod:`.clock`; at
most a second at a time, so that an extension or a stop is seen at once)
and then runs the point's engine commands together with
:class:`exchange.ScheduleReached` in one batch of the engine's queue, as an
operator command: journaled, replayed in its place, and done exactly once.

What each point does (``from_phase`` guards every scheduled phase change,
so that an instrument the operator halted stays halted: the change is
refused, logged, and the point is still marked done):

- ``opening_call``: the opening call (at start, an instrument still trading
  before its day's opening call, as on a first start, is closed: ``align``);
- ``continuous``: continuous trading, after the opening auction;
- ``settlement_window``: :class:`exchange.OpenSettlementWindow`;
- ``closing_call``: from continuous trading or a volatility interruption;
- ``close``: the instrument closes from any phase, a halt included (the
  closing auction runs if it was in a call);
- ``auction``: a primary auction of the auction calendar opens (its
  clearing is :mod:`gateway.pipeline.timers`' job, as for any auction);
- ``end_of_day``: :class:`exchange.EndOfDay` (DAY and GTD orders expire,
  settlement prices are fixed, client order ids are released), then the
  day's files (:mod:`.statements`).

Points missed while the exchange was down are caught up in order at start,
each day's end of day included, before the next day's opening; of a day
whose end of day has passed only the closes and the end of day run, the
rest is passed over (marked skipped): nobody trades in a day already over.
A point whose commands fail is logged and tried again; the task's own end,
other than at a stop, is logged as ``calendar_failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from exchange import (
    EndOfDay,
    Engine,
    ListFutures,
    OpenPrimaryAuction,
    OpenSettlementWindow,
    RequestRejected,
    ScheduleReached,
    SetTradingPhase,
    TradingPhase,
)
from gateway.config import ServerConfig
from gateway.lifecycle import ExchangeStopped, Lifecycle
from gateway.logs import log_event
from gateway.schedule.calendar import SchedulePoint, TradingCalendar, date_number, number_date
from gateway.schedule.clock import Clock
from gateway.schedule.day_files import DayFiles

log = logging.getLogger("carbonx.gateway")

# The points an instrument's futures contracts go through with it (its phases and its settlement window).
FOLLOWED_BY_FUTURES = frozenset(("opening_call", "continuous", "settlement_window", "closing_call", "close"))
CLOSING_ACTIONS = frozenset(("settlement_window", "closing_call", "close", "end_of_day"))  # moved by an extension
MAX_WAIT = 1.0  # host seconds between looks at the schedule while waiting for a point
RETRY_WAIT = 1.0  # host seconds before a point whose commands failed is tried again (not marked done)
TRADING = (
    TradingPhase.OPENING_CALL,
    TradingPhase.CONTINUOUS,
    TradingPhase.CLOSING_CALL,
    TradingPhase.VOLATILITY_INTERRUPTION,
)


def auction_terms(config: ServerConfig) -> dict[str, Any]:
    """The terms every primary auction the exchange opens takes from its settings (the calendar's, and an
    auctioneer's unless it sets its own reserve discount): reserve discount, admission and fee."""
    return {
        "reserve_discount_bps": config.auction_reserve_discount_bps,
        "admitted_only": config.auction_admission == "on",
        "fee_per_lot": config.auction_fee_cents,
    }


class CalendarRunner:
    """Carries out the trading calendar's points in order; see the module notes."""

    def __init__(
        self,
        calendar: TradingCalendar,
        engine: Engine,
        clock: Clock,
        lifecycle: Lifecycle,
        run_commands: Callable[[list], Coroutine[Any, Any, list]],
        auction_terms: Mapping[str, Any],
        after_day: DayFiles | None = None,
    ) -> None:
        self.calendar = calendar
        self.engine = engine
        self.clock = clock
        self.lifecycle = lifecycle
        self.run_commands = run_commands  # the operator's way in: queued, journaled, run in sequence
        self.auction_terms = auction_terms  # reserve discount, admission, fee: auction_terms(config)
        self.after_day = after_day  # writes each closed day's files
        self.task: asyncio.Task | None = None
        self.first_day: dt.date | None = None  # the first time, with no day ever closed: the day it started on
        self.points_done = 0  # carried out by this process (for tests and the log)
        self._wake = asyncio.Event()  # set by wake(): the clock was moved, look at the schedule now

    # -- the schedule --------------------------------------------------------------------------

    def open_day(self) -> dt.date:
        """The trading day whose points come next: the first after the last one closed."""
        closed = self.engine.last_closed_date
        begun = self.engine.schedule_dates()  # a day begun and not closed (the end of day forgets its marks)
        if begun:
            after = number_date(begun[0])
        elif closed is not None:
            after = number_date(closed) + dt.timedelta(days=1)
        else:
            if self.first_day is None:
                self.first_day = self.calendar.local_date(self.clock.now())
            after = self.first_day
        return next(self.calendar.trading_days(after))

    def due_points(self, day: dt.date) -> list[tuple[int, SchedulePoint]]:
        """The day's points not yet done, each with when it is due (an extension applied), in order."""
        number = date_number(day)
        done = self.engine.schedule_done(number)
        extension = self.engine.schedule_extension(number) * 1_000_000_000
        remaining = []
        for point in self.calendar.points(day):
            if point_name(point) in done:
                continue
            at = point.at + extension if point.action in CLOSING_ACTIONS else point.at
            remaining.append((at, point))
        remaining.sort(key=lambda pair: (pair[0], pair[1].rank, pair[1].instrument))
        return remaining

    def next_point(self) -> tuple[int, SchedulePoint]:
        day = self.open_day()
        remaining = self.due_points(day)
        if not remaining:  # (the end of day closes the day it marks: a day with every point done is closed)
            raise RuntimeError(f"the open trading day {day} has every point done but is not closed")
        return remaining[0]

    # -- the task -------------------------------------------------------------------------------

    def start(self) -> None:
        log_event(log, "calendar_started", clock=self.clock.describe(), open_day=self.open_day().isoformat())
        self.task = asyncio.create_task(self.run(), name="trading-calendar")
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """The calendar must not stop unseen: anything that ends its task but a stop is logged as an error."""
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "the trading calendar stopped: no more phases or ends of day until the exchange restarts",
                exc_info=task.exception(),
                extra={"carbonx_fields": {"event": "calendar_failed"}},
            )

    def wake(self) -> None:
        """Look at the schedule now rather than at the next second (a simulated clock was moved forward)."""
        self._wake.set()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def files_of_the_last_day(self) -> None:
        """At start: the last closed day's files, if the stop came between its close and them (nothing has traded
        since: its instruments are closed until the next opening call, which has not run)."""
        closed = self.engine.last_closed_date
        if closed is not None and self.after_day is not None and self.after_day.missing(closed):
            await self.after_day.write(closed, [])

    async def align(self) -> None:
        """At start: an instrument still trading although its open day's opening call is not done (a first start
        on the calendar, before or after the opening) is closed, so that the day begins as the calendar says."""
        day = self.open_day()
        done = self.engine.schedule_done(date_number(day))
        engine = self.engine
        commands = [
            SetTradingPhase(ts=0, instrument=symbol, phase=TradingPhase.CLOSED, from_phase=engine.phase(symbol))
            for underlying in engine.instruments
            if f"opening_call:{underlying}" not in done
            for symbol in (underlying, *engine.futures_contracts(underlying, with_books=True))  # (its futures with it)
            if engine.phase(symbol) in TRADING
        ]
        if commands:
            await self.run_commands(commands)
            log_event(log, "calendar_aligned", open_day=day.isoformat(), closed=[c.instrument for c in commands])

    async def run(self) -> None:
        try:
            await self.files_of_the_last_day()
            await self.align()
            while not self.lifecycle.stopping:
                at, point = self.next_point()
                wait = self.clock.seconds_until(at)
                if wait > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), min(wait, MAX_WAIT))
                    continue
                try:
                    await self.carry_out(point, late_ns=self.clock.now() - at)
                except (ExchangeStopped, asyncio.CancelledError):
                    raise
                except Exception as error:  # the calendar must not stop for one point: log it, try it again
                    log.error(
                        "a schedule point failed; it is tried again",
                        exc_info=error,
                        extra={"carbonx_fields": {"event": "schedule_point_failed", "action": point.action}},
                    )
                    await asyncio.sleep(RETRY_WAIT)
        except ExchangeStopped:
            return  # the exchange stopped first: the next start catches up what is left

    def day_over(self, point: SchedulePoint) -> bool:
        """Whether the point's day has already reached its end of day by the clock (a catch-up after a stop)."""
        day = number_date(point.trading_date)
        remaining = self.due_points(day)
        return bool(remaining) and self.clock.now() >= remaining[-1][0]

    async def carry_out(self, point: SchedulePoint, late_ns: int = 0) -> list:
        """Run one point's commands and its mark, in one batch; returns the batch's events. Catching up a day
        whose end has passed, only its closes and end of day run: the rest is passed over (no session trades
        in a past day's opening or continuous trading, no auction opens with its window already shut)."""
        passed_over = point.action not in ("close", "end_of_day") and self.day_over(point)
        commands = [] if passed_over else self.commands_for(point)
        mark = ScheduleReached(ts=0, trading_date=point.trading_date, point=point_name(point), skipped=passed_over)
        batch = [mark, *commands] if point.action == "end_of_day" else [*commands, mark]
        events = await self.run_commands(batch)
        self.points_done += 1
        refused = [event for event in events if type(event) is RequestRejected]
        log_event(
            log,
            "schedule_point",
            logging.WARNING if refused else logging.INFO,
            trading_date=point.trading_date,
            action=point.action,
            instrument=point.instrument or None,
            late_seconds=round(late_ns / 1e9, 3) if late_ns > 1_000_000_000 else 0,
            passed_over=passed_over or None,
            refused=[f"{event.request} {int(event.code)} {event.text}" for event in refused] or None,
        )
        if point.action == "end_of_day" and self.after_day is not None:
            await self.after_day.write(point.trading_date, events)
        return events

    def commands_for(self, point: SchedulePoint) -> list:
        """The engine commands of a point, from the instrument's phase now (see the module notes); an
        instrument's futures contracts follow it through the day's phases and settlement window, and after the
        end of day the next trading day's contracts are listed."""
        commands = self._spot_commands_for(point)
        if point.action == "end_of_day" and self.engine.lists_futures:
            following = next(self.calendar.trading_days(number_date(point.trading_date) + dt.timedelta(days=1)))
            commands.append(ListFutures(ts=0, trading_date=date_number(following)))
        elif point.action in FOLLOWED_BY_FUTURES and point.instrument is not None:
            # (TAS and spread books follow the phases, not the settlement window: no settlement price of their own)
            with_books = point.action != "settlement_window"
            for contract in self.engine.futures_contracts(point.instrument, with_books):
                commands += self._spot_commands_for(dataclasses.replace(point, instrument=contract))
        return commands

    def _spot_commands_for(self, point: SchedulePoint) -> list:
        action, symbol = point.action, point.instrument
        if action == "end_of_day":
            return [EndOfDay(ts=0, trading_date=point.trading_date)]
        if action == "settlement_window":
            return [OpenSettlementWindow(ts=0, instrument=symbol)]
        if action == "auction":
            auction = point.auction
            assert auction is not None
            return [
                OpenPrimaryAuction(
                    ts=0,
                    auction_id=auction.auction_id,
                    auctioneer=auction.auctioneer,
                    instrument=auction.instrument,
                    volume=auction.volume,
                    closes_at=self.calendar.at(auction.date, auction.closes),
                    seed=secrets.token_hex(32),  # fixed now, published as its hash, revealed with the results
                    **self.auction_terms,
                )
            ]
        phase = self.engine.phase(symbol)
        if action == "opening_call":  # (an instrument still trading was closed by align)
            return [self._phase(symbol, TradingPhase.OPENING_CALL, TradingPhase.CLOSED)]
        if action == "continuous":
            return [self._phase(symbol, TradingPhase.CONTINUOUS, TradingPhase.OPENING_CALL)]
        if action == "closing_call":
            expected = phase if phase is TradingPhase.VOLATILITY_INTERRUPTION else TradingPhase.CONTINUOUS
            return [self._phase(symbol, TradingPhase.CLOSING_CALL, expected)]
        if action == "close":  # from any phase: a halt, a call, an interruption (their auction runs)
            return (
                []
                if phase is TradingPhase.CLOSED
                else [SetTradingPhase(ts=0, instrument=symbol, phase=TradingPhase.CLOSED)]
            )
        raise AssertionError(f"unknown schedule action {action!r}")

    @staticmethod
    def _phase(symbol: str, phase: TradingPhase, expected: TradingPhase) -> SetTradingPhase:
        """A scheduled phase change, only from the phase the schedule expects: from any other (a halt) the
        engine refuses it (505) and the instrument stays as the operator left it."""
        return SetTradingPhase(ts=0, instrument=symbol, phase=phase, from_phase=expected)

    # -- the operator ----------------------------------------------------------------------------

    def point_to_skip(self, name: str | None) -> SchedulePoint:
        """The open day's point an operator may pass over: ``name`` (e.g. ``opening_call:CER``), or the next one;
        ValueError with the reason when it cannot be: unknown, done, due already (the calendar is carrying it
        out) or the end of day."""
        day = self.open_day()
        now = self.clock.now()
        for at, point in self.due_points(day):
            if name is not None and point_name(point) != name:
                continue
            if point.action == "end_of_day":
                raise ValueError("end_of_day")
            if at <= now:
                raise ValueError("due")
            return point
        raise ValueError("unknown" if name is not None else "due")


def point_name(point: SchedulePoint) -> str:
    """The name a point is marked done under: its action, and its instrument or auction."""
    if point.auction is not None:
        return f"auction:{point.auction.auction_id}"
    return f"{point.action}:{point.instrument}" if point.instrument else point.action
