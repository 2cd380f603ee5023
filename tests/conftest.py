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

The standard workload generator lives outside this repository, in
``shared/bench/workload.py`` beside the repository's folder (CI puts a copy of
``shared/`` next to its clone; a clone made elsewhere finds the one beside the
repository it was cloned from); the environment variable CARBONX_SHARED
points at another ``shared/`` folder. It is run as a subprocess, never copied
into the project, so every engine is measured against the same file.
"""
from __future__ import annotations

import functools
import os
import subprocess
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


def shared_dir() -> Path:
    """The ``shared/`` folder: CARBONX_SHARED; else the one beside the repository's folder; else, in a
    clone made elsewhere (``git clone . /tmp/ci``), the one beside the repository it was cloned from."""
    override = os.environ.get("CARBONX_SHARED")
    if override:
        return Path(override)
    repository = Path(__file__).resolve().parents[1]
    beside = repository.parent / "shared"
    if (beside / "bench" / "workload.py").is_file():
        return beside
    origin = subprocess.run(["git", "-C", str(repository), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / "shared"
        if (cloned_from / "bench" / "workload.py").is_file():
            return cloned_from
    return beside


def workload_script() -> Path:
    return shared_dir() / "bench" / "workload.py"


@functools.lru_cache(maxsize=None)
def generate_workload(orders: int, seed: int, depth: int | None = None) -> tuple[WorkloadRow, ...]:
    """Run the standard workload generator and parse its lines (cached: several tests share a run)."""
    script = workload_script()
    if not script.is_file():
        pytest.fail(f"workload generator not found at {script}; put shared/ beside the repository "
                    f"or set CARBONX_SHARED to the shared/ folder")
    arguments = [sys.executable, str(script), "--orders", str(orders), "--seed", str(seed)]
    if depth is not None:
        arguments += ["--depth", str(depth)]
    result = subprocess.run(arguments, capture_output=True, text=True, check=True)
    rows = []
    for line in result.stdout.splitlines():
        kind, order_id, side, price, quantity = line.split(",")
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
