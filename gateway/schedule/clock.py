"""The exchange's clock: the host's, or a simulated one that runs from a chosen start at a chosen speed.

How this works
--------------
Everything the engine is told happens at a time (each batch's commands are
stamped by the engine loop, ``sequencer.now``) and every schedule point of the
trading calendar is read from one :class:`Clock`. :class:`Clock` itself is the
host's wall clock. :class:`SimulatedClock` maps the host's monotonic clock
onto a simulated one: it starts at ``start`` and advances ``speed`` times as
fast (600: a ten-hour trading day in a minute), so that a week of trading days
passes in minutes for the demo, tests and research runs. After a restart it
resumes from the last time the journal holds (:meth:`Clock.resume_from`), so
time never goes backwards across a restart.

Waiting is in simulated time too: :meth:`Clock.seconds_until` tells the host
seconds to wait for a simulated instant, which is what asyncio's timers need.
"""

from __future__ import annotations

import datetime as dt
import time
from datetime import tzinfo

from exchange import ConfigError


class Clock:
    """The host's wall clock (the base of :class:`SimulatedClock`)."""

    speed = 1.0

    def now(self) -> int:
        """ns since the epoch."""
        return time.time_ns()

    def __call__(self) -> int:  # a clock is also the ``wall_clock`` callable the engine loop and timers take
        return self.now()

    def seconds_until(self, at: int) -> float:
        """Host seconds until the clock reads ``at`` (0 if it already has)."""
        return max(0.0, (at - self.now()) / 1e9 / self.speed)

    def host_seconds(self, seconds: float) -> float:
        """Host seconds that ``seconds`` of this clock take."""
        return seconds / self.speed

    def resume_from(self, ns: int) -> None:
        """After a restart: never read earlier than ``ns`` (the host's clock needs nothing)."""

    def describe(self) -> str:
        return "host"


class SimulatedClock(Clock):
    """A clock that starts at ``start`` (ns since the epoch) and runs ``speed`` times as fast as the host's."""

    def __init__(self, start: int, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self.started = time.monotonic_ns()

    def now(self) -> int:
        return self.start + int((time.monotonic_ns() - self.started) * self.speed)

    def resume_from(self, ns: int) -> None:
        self.jump_to(ns)

    def jump_to(self, ns: int) -> None:
        """Move the clock forward to ``ns`` at once (a simulation passing over hours nothing happens in);
        never backwards."""
        if ns > self.now():
            self.start, self.started = ns, time.monotonic_ns()

    def describe(self) -> str:
        return f"simulated from {self.start} ns at {self.speed:g}x"


def clock_from_settings(clock_start: str, clock_speed: float, zone: tzinfo | None) -> Clock:
    """The exchange's clock from its settings: the host's, or a simulated one from ``clock_start`` (a local
    time of ``zone``, the venue's; UTC without a calendar) at ``clock_speed``."""
    if not clock_start:
        return Clock()
    try:
        start = dt.datetime.fromisoformat(clock_start)
    except ValueError:
        raise ConfigError(
            "calendar.clock_start", f"{clock_start!r} is not a local time written YYYY-MM-DDTHH:MM"
        ) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=zone or dt.UTC)
    return SimulatedClock(int(start.timestamp()) * 1_000_000_000 + start.microsecond * 1000, clock_speed)
