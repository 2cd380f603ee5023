"""The whole exchange on its trading calendar, on a clock the test moves: helpers for the tests of trading days
(tests/gateway/schedule/) and of what the days do to the journal (tests/gateway/persistence/test_segments.py)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

from gateway_helpers import HOST, demo_configuration, eventually

from exchange import TradingPhase
from gateway.config import load_server_config
from gateway.node import TradingGateway, running_exchange
from gateway.schedule.calendar import TradingCalendar, parse_calendar
from gateway.schedule.clock import Clock

CALENDAR = {"holidays": ["2026-01-01"], "short_days": {"2026-01-09": "14:00"}}
CLOSED, CONTINUOUS = TradingPhase.CLOSED, TradingPhase.CONTINUOUS


class TestClock(Clock):
    """A clock that stands still until the test moves it; a point due now is carried out at once, and the
    runner looks again every few milliseconds for one that is not yet due."""

    __test__ = False

    def __init__(self, calendar: TradingCalendar, when: str) -> None:
        self.calendar = calendar
        self.value = 0
        self.set(when)

    def set(self, when: str) -> None:
        """Move to a local time of the venue, ``YYYY-MM-DD HH:MM`` (never backwards)."""
        moment = dt.datetime.fromisoformat(when).replace(tzinfo=self.calendar.zone)
        value = int(moment.timestamp()) * 1_000_000_000
        assert value >= self.value, "a clock never runs backwards"
        self.value = value

    def now(self) -> int:
        return self.value

    def seconds_until(self, at: int) -> float:
        return 0.0 if at <= self.value else 0.005


def calendar_of(**changes: object) -> TradingCalendar:
    instruments, _, _ = demo_configuration()
    return parse_calendar({**CALENDAR, **changes}, instruments)


@contextlib.asynccontextmanager
async def exchange(data_dir: Path, clock: TestClock) -> AsyncIterator[TradingGateway]:
    instruments, accounts, compliance = demo_configuration()
    config = load_server_config(
        overrides={"port": 0, "host": HOST, "data_dir": str(data_dir), "schedule": "calendar", "journal_fsync": "off"}
    )
    async with running_exchange(config, instruments, accounts, compliance, clock.calendar, clock) as gateway:
        yield gateway


async def reached(gateway: TradingGateway, date: int, *points: str) -> None:
    """Wait until the calendar has done these points of the day (or closed the day)."""

    def done() -> bool:
        closed = gateway.engine.last_closed_date
        return (closed is not None and closed >= date) or set(points) <= gateway.engine.schedule_done(date)

    await eventually(done)


async def quiet(gateway: TradingGateway) -> None:
    """Let the runner look at the schedule a few times (nothing due: nothing must happen)."""
    assert gateway.calendar is not None
    before = gateway.calendar.points_done
    await asyncio.sleep(0.05)
    assert gateway.calendar.points_done == before


def phases(gateway: TradingGateway) -> dict[str, TradingPhase]:
    return {symbol: gateway.engine.phase(symbol) for symbol in gateway.engine.instruments}
