"""Schedule marks: how far the exchange's trading calendar has come, as part of the engine's state.

How this works
--------------
The calendar itself (times, time zones, holidays) lives in the gateway, which
reads the clock; the engine keeps only what a replay must reproduce: which
schedule points of the open trading days are done
(:class:`~exchange.commands.ScheduleReached`, journaled in the same batch as
the point's own commands) and the operator's extensions of a day
(:class:`~exchange.commands.ShiftSchedule`). A start reads both and catches
up every point not done, in order, so no point is run twice or missed,
whether the exchange stopped for a second or a week. At each end of day the
marks of that day and earlier ones are forgotten (the engine's
``last_closed_date`` says those days are over), so they stay bounded.
"""

from __future__ import annotations

from .accounts import Counters
from .codes import RejectCode
from .commands import ScheduleReached, ShiftSchedule
from .events import ScheduleAdvanced, ScheduleShifted
from .order_commands import OrderCommands


class ScheduleMarks:
    """The schedule points done and the extensions of open trading days; see the module notes."""

    def __init__(self, counters: Counters, days: OrderCommands) -> None:
        self.counters = counters
        self.days = days  # its last_closed_date: the days up to it are over and take no more marks
        self.done: dict[int, set[str]] = {}  # trading date (YYYYMMDD) -> its points done
        self.shifts: dict[int, int] = {}  # trading date -> seconds its closing points were extended

    def reached(self, cmd: ScheduleReached, events: list) -> RejectCode | None:
        closed = self.days.last_closed_date
        if closed is not None and cmd.trading_date <= closed:
            return RejectCode.TRADING_DATE_NOT_AFTER_LAST
        done = self.done.setdefault(cmd.trading_date, set())
        if cmd.point in done:
            return RejectCode.SCHEDULE_POINT_PASSED
        done.add(cmd.point)
        events.append(ScheduleAdvanced(self.counters.next_seq(), cmd.ts, cmd.trading_date, cmd.point, cmd.skipped))
        return None

    def shift(self, cmd: ShiftSchedule, events: list) -> RejectCode | None:
        closed = self.days.last_closed_date
        if closed is not None and cmd.trading_date <= closed:
            return RejectCode.TRADING_DATE_NOT_AFTER_LAST
        total = self.shifts.get(cmd.trading_date, 0) + cmd.seconds
        self.shifts[cmd.trading_date] = total
        events.append(ScheduleShifted(self.counters.next_seq(), cmd.ts, cmd.trading_date, cmd.seconds, total))
        return None

    def forget_through(self, trading_date: int) -> None:
        """A day closed: the marks of it and of earlier days are of no further use."""
        self.done = {date: points for date, points in self.done.items() if date > trading_date}
        self.shifts = {date: seconds for date, seconds in self.shifts.items() if date > trading_date}

    def state_line(self) -> str | None:
        if not self.done and not self.shifts:
            return None  # never ran: the hashes of streams without a calendar stay as they were
        done = sorted((date, sorted(points)) for date, points in self.done.items())
        return f"schedule done={done} shifts={sorted(self.shifts.items())}"
