"""Shared test setup: hypothesis profiles, engine fixtures and the standard workload.

How it works
------------
Hypothesis profiles: "dev" (the default), "ci" (loaded when the CI
environment variable is set) and "thorough" (a long hunt, run by hand);
HYPOTHESIS_PROFILE picks one explicitly.
All turn the deadline off (a slow CI machine must not turn into a flaky
test), suppress the too_slow health check, print the reproduction blob of a
failing example, and keep example counts small enough that the differential
and stateful suites together stay under about 90 seconds on a slow 2-core
machine.

The standard workload is the project's own generator,
``benchmarks/workload.py`` (the benchmarks run the same one), imported from
its file: a clone needs nothing beside it. tests/test_workload.py holds it
byte for byte against the reference generator in ``shared/`` when that is
at hand.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project may not be installed: ``python -m pytest`` puts the working directory on the path,
# plain ``pytest`` does not, so make ``import exchange`` work either way (appended: an installed
# package or a path set up on purpose still wins).
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from exchange import Engine  # noqa: E402
from gateway.config import load_instruments  # noqa: E402

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("dev", max_examples=60, stateful_step_count=60, **_COMMON)
settings.register_profile("ci", max_examples=100, stateful_step_count=60, **_COMMON)
# For a long hunt by hand (HYPOTHESIS_PROFILE=thorough); minutes, not seconds.
settings.register_profile("thorough", max_examples=3000, stateful_step_count=100, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def instruments():
    return load_instruments()


@pytest.fixture
def engine(instruments):
    return Engine(instruments, pre_trade_risk=False)


# -- the standard workload -------------------------------------------------------------------


class WorkloadRow(NamedTuple):
    """One line of the workload file."""

    kind: str  # "A" add a GTC limit order, "M" market order, "C" cancel
    order_id: int  # the workload's id; the cancelled order's id for "C"
    side: str | None  # "B" or "S"; None for a cancel
    price: int | None  # ticks; None for market orders and cancels
    quantity: int | None  # lots; None for a cancel


WORKLOAD_SCRIPT = REPO_ROOT / "benchmarks" / "workload.py"


def load_workload_module():
    """benchmarks/workload.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("carbonx_benchmarks_workload", WORKLOAD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


workload_generator = load_workload_module()


@functools.cache
def generate_workload(orders: int, seed: int, depth: int | None = None) -> tuple[WorkloadRow, ...]:
    """The standard workload's lines, parsed (cached: several tests share a run)."""
    arguments = {"orders": orders, "seed": seed} | ({} if depth is None else {"depth": depth})
    rows = []
    for line in workload_generator.commands(**arguments):
        kind, order_id, side, price, quantity = line.rstrip("\n").split(",")
        if kind == "C":
            rows.append(WorkloadRow(kind, int(order_id), None, None, None))
        elif kind == "M":
            rows.append(WorkloadRow(kind, int(order_id), side, None, int(quantity)))
        elif kind == "A":
            rows.append(WorkloadRow(kind, int(order_id), side, int(price), int(quantity)))
        else:
            raise ValueError(f"unknown workload line {line!r}")
    return tuple(rows)


@pytest.fixture
def workload():
    """``workload(orders, seed, depth=None)`` -> rows of the standard workload."""
    return generate_workload
