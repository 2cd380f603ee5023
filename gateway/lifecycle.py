"""Where the exchange process is in its life, shared by the parts that must stop taking work.

The node (:mod:`gateway.node`) owns the one :class:`Lifecycle`; the session
host, the intake and the engine loop read it to refuse new work once a stop
has begun, and the engine loop records in it the fault that stops the
exchange. Nothing else is shared between those parts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ExchangeStopped(RuntimeError):
    """The exchange stopped (or is stopping) before it could run what was asked."""


class Lifecycle:
    """``stopping`` once the stop has begun; ``failure``: the fault that stopped the engine loop, if any."""

    def __init__(self) -> None:
        self.stopping = False
        self.failure: BaseException | None = None
        self.stopped = asyncio.Event()  # set when the stop has finished: the data directory is unlocked
        self._stop: Callable[[], object] = lambda: None

    def on_stop_request(self, request_stop: Callable[[], object]) -> None:
        """What ``request_stop`` runs: the node's graceful stop."""
        self._stop = request_stop

    def request_stop(self) -> None:
        self._stop()

    @property
    def running(self) -> bool:
        """Neither stopping nor failed: new work is taken."""
        return not self.stopping and self.failure is None
