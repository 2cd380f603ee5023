"""Timers: the exchange's own commands that come due by the clock.

How this works
--------------
Two things end by time rather than by a request: a volatility interruption
(its call lasts the instrument's ``volatility_call_seconds``, then the
auction and continuous trading) and a primary auction's bidding window
(cleared once it has closed, by this process's clock, which stamps the
bids). :meth:`Timers.follow` reads each released batch's engine events
(``TradingPhaseChanged``, ``PrimaryAuctionOpened``) and keeps one asyncio
timer per interruption and per auction; at start-up :meth:`Timers.resume`
schedules those the state holds. When a timer fires, the command runs in a
task of its own through the engine's queue like any operator command, so
it is journaled and replayed in its place. The timers and their tasks are
cancelled at stop; the next start schedules what is still due.

The same pass over the released events writes the operator's log events of
the market's day: each phase change (``phase_changed``, with its reason),
each settlement price (``settlement_price``) and each day's close
(``trading_day_closed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from exchange import (
    ClearPrimaryAuction,
    Engine,
    PrimaryAuctionOpened,
    RejectCode,
    SettlementPriceFixed,
    SetTradingPhase,
    TradingDayClosed,
    TradingPhase,
    TradingPhaseChanged,
)
from gateway.lifecycle import ExchangeStopped, Lifecycle
from gateway.logs import log_event

log = logging.getLogger("carbonx.gateway")

# The engine events followed here (see Timers.follow).
FOLLOWED = frozenset((TradingPhaseChanged, PrimaryAuctionOpened, SettlementPriceFixed, TradingDayClosed))
CLEARING_MARGIN = 0.01  # seconds after a primary auction's window before it is cleared (the clearing's ts must
# be at or past the window's end, and the engine compares the command's ts, stamped a moment later)


class Timers:
    """Volatility interruptions' reopenings and primary auctions' clearings; see the module notes."""

    def __init__(
        self,
        engine: Engine,
        lifecycle: Lifecycle,
        run_commands: Callable[[list], Coroutine[Any, Any, list]],
        wall_clock: Callable[[], int] = time.time_ns,
        speed: float = 1.0,
    ) -> None:
        self.engine = engine
        self.speed = speed  # the clock's speed (a simulated clock's): a timer of n clock seconds waits n / speed
        self.wall_clock = wall_clock  # the clock that stamps commands (the engine loop's): windows end by it
        self.lifecycle = lifecycle
        self.run_commands = run_commands  # the operator's way in: queued, journaled, run in sequence
        self.reopenings: dict[str, asyncio.TimerHandle] = {}  # interruptions under way: the timer ending each
        self.clearings: dict[str, asyncio.TimerHandle] = {}  # primary auctions open: the timer clearing each
        self.tasks: set[asyncio.Task] = set()  # commands a timer started, running

    def resume(self) -> None:
        """At start-up: an interruption the stop cut short is a full call again; an open auction is cleared when
        due."""
        for symbol in (*self.engine.instruments, *self.engine.futures_contracts()):
            if self.engine.phase(symbol) is TradingPhase.VOLATILITY_INTERRUPTION:
                self.schedule_reopening(symbol)
        for auction in self.engine.primary_auctions():
            if auction.outcome is None:
                self.schedule_clearing(auction.auction_id, auction.closes_at)

    def follow(self, events: Iterable[object]) -> None:
        """A released batch's events: start or end the timers its phase changes and auction openings call for;
        phase changes, settlement prices and the day's close are also the operator's log events."""
        # Every event of every batch passes here: one set lookup each for the many nobody follows here.
        for event in events:
            kind = event.__class__
            if kind not in FOLLOWED:
                continue
            if isinstance(event, TradingPhaseChanged):
                log_event(
                    log,
                    "phase_changed",
                    instrument=event.instrument,
                    phase=str(event.phase),
                    previous=str(event.previous),
                    reason=event.reason,
                )
                self._follow_interruption(event.instrument, event.phase)
            elif isinstance(event, PrimaryAuctionOpened):
                self.schedule_clearing(event.auction_id, event.closes_at)
            elif isinstance(event, SettlementPriceFixed):
                log_event(
                    log,
                    "settlement_price",
                    instrument=event.instrument,
                    trading_date=event.trading_date,
                    price=event.price,
                    method=event.method,
                    window_lots=event.window_lots,
                )
            elif isinstance(event, TradingDayClosed):
                log_event(
                    log, "trading_day_closed", trading_date=event.trading_date, expired_orders=event.expired_orders
                )

    async def stop(self) -> None:
        """Cancel every timer and the commands they started."""
        for handle in [*self.reopenings.values(), *self.clearings.values()]:
            handle.cancel()
        self.reopenings.clear()
        self.clearings.clear()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _follow_interruption(self, instrument: str, phase: TradingPhase) -> None:
        """An instrument's new phase: a volatility interruption gets its timer; any other phase ends the timer of
        one that ended otherwise (the operator halted the instrument meanwhile)."""
        if phase is TradingPhase.VOLATILITY_INTERRUPTION:
            self.schedule_reopening(instrument)
        else:
            handle = self.reopenings.pop(instrument, None)
            if handle is not None:
                handle.cancel()

    def schedule_reopening(self, instrument: str) -> None:
        """One timer per interruption: the start-up and the release of a batch may both ask for it."""
        if instrument in self.reopenings:
            return
        terms = self.engine.instrument(instrument)
        if terms is None:  # (a futures contract that has just expired: nothing to reopen)
            return
        seconds = terms.volatility_call_seconds
        log_event(log, "volatility_interruption", instrument=instrument, call_seconds=seconds)
        self.reopenings[instrument] = asyncio.get_running_loop().call_later(
            seconds / self.speed, self._reopen, instrument
        )

    def _reopen(self, instrument: str) -> None:
        """The interruption's call is over: its auction, then continuous trading (only if it is still the
        interruption: ``from_phase``)."""
        self.reopenings.pop(instrument, None)
        if self.lifecycle.stopping:
            return
        command = SetTradingPhase(
            ts=0, instrument=instrument, phase=TradingPhase.CONTINUOUS, from_phase=TradingPhase.VOLATILITY_INTERRUPTION
        )
        self._run_timed(self.run_commands([command]), f"reopen-{instrument}")

    def _run_timed(self, work: Coroutine, name: str) -> None:
        """Run the exchange's own command that a timer started, in a task of its own (kept, and cancelled at
        stop)."""
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._timed_done)

    def _timed_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and isinstance(task.exception(), ExchangeStopped):
            return  # the exchange stopped first: the next start schedules it again
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "the exchange's own timed command failed",
                exc_info=task.exception(),
                extra={"carbonx_fields": {"event": "timed_command_failed", "task": task.get_name()}},
            )

    def schedule_clearing(self, auction_id: str, closes_at: int) -> None:
        """Clear the auction when its window has closed (by this process's clock, which stamps the bids)."""
        if auction_id in self.clearings:
            return
        delay = max(0.0, (closes_at - self.wall_clock()) / 1e9 / self.speed) + CLEARING_MARGIN
        self.clearings[auction_id] = asyncio.get_running_loop().call_later(delay, self._clear, auction_id)

    def _clear(self, auction_id: str) -> None:
        self.clearings.pop(auction_id, None)
        if self.lifecycle.stopping:
            return
        self._run_timed(self._clear_when_due(auction_id), f"clear-{auction_id}")

    async def _clear_when_due(self, auction_id: str) -> None:
        """Clear the auction; if the engine finds the window still open (this host's clock stepped back, and
        the clearing's stamp with it), try again when the clock has passed the window's end."""
        events = await self.run_commands([ClearPrimaryAuction(ts=0, auction_id=auction_id)])
        if any(getattr(event, "code", None) is RejectCode.BIDDING_NOT_CLOSED for event in events):
            auction = self.engine.primary_auction(auction_id)
            assert auction is not None  # auctions are never forgotten
            log_event(
                log,
                "auction_clearing_early",
                logging.WARNING,
                auction_id=auction_id,
                closes_at=auction.closes_at,
                now=self.wall_clock(),
            )
            self.schedule_clearing(auction_id, auction.closes_at)
