"""A histogram cheap enough for the request path: one ``bisect`` and two additions per observation.

How this works
--------------
:class:`Histogram` keeps a count per bucket (an observation goes into the
first bucket whose upper bound is at or above it, the last one being
+Inf) and the sum of what it was given. It has no lock: each histogram has
exactly one writer (the engine task for acknowledgement latency, the
journal's sync thread for sync time), and the reader
(:mod:`gateway.monitoring.collectors`, at scrape time) copies the counts
and makes them cumulative. Under the GIL each ``+=`` is seen whole; a scrape
that falls between the count and the sum of one observation sees the sum
one observation behind, which Prometheus's rates do not notice.

prometheus-client's own ``Histogram`` takes a lock and walks its buckets
for every observation, several times what this costs; its figures are
exposed the same way (``HistogramMetricFamily``).
"""

from __future__ import annotations

from bisect import bisect_left

# Seconds from a request's arrival to its batch's release: 100 us (an idle exchange without the disk) to
# 2.5 s (far past max_queue_delay, when something is wrong).
ACK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Seconds one fdatasync of the journal takes: tens of microseconds on a disk with a write cache, a second
# on a disk that is failing.
SYNC_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    """Counts per bucket and a sum, written by one thread; see the module notes."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"bucket bounds must rise strictly: {bounds}")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """(upper bound as Prometheus writes it, observations at or under it) for every bucket, +Inf last; and
        the sum."""
        counts = list(self.counts)  # one copy: the writer may go on meanwhile
        total = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return buckets, self.sum
