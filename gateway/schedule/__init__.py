"""The venue's own trading days: the calendar (config/calendar.toml), the clock that drives it (the host's or a
simulated one), and the task that carries out each schedule point as journaled engine commands."""
