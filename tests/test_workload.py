"""The standard workload generator (benchmarks/workload.py): its format, ids and determinism, and the same
bytes as the reference generator.

Every engine figure of benchmarks/RESULTS.md was measured on the reference generator's stream
(``shared/bench/workload.py``, beside the repository). The project carries its own, so that a clone
needs nothing beside it; this file holds the two together:

- when the reference is at hand ($CARBONX_SHARED, else ``../shared`` beside the repository, as CI lays
  it out), both write files for several seeds, sizes and depths and the files must be byte-identical;
  without it those cases are skipped, saying why;
- everything else stands alone: the format of each line, ids counting up with cancels naming an add not
  cancelled before, the same bytes for the same arguments, and a digest of one file, which pins the
  stream itself even where the reference is absent.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, WORKLOAD_SCRIPT, generate_workload, workload_generator

LINE = re.compile(r"A,[1-9][0-9]*,[BS],-?[0-9]+,[1-9][0-9]*\n|M,[1-9][0-9]*,[BS],0,[1-9][0-9]*\n|C,[1-9][0-9]*,,,\n")
# sha256 of ``--orders 20000 --seed 42``, as the reference generator writes it (checked below when it is here)
DIGEST_20K_SEED_42 = "2ba39bdb8287d23280fa181d4f6821d31ac0ef78b45725ae9b21e10fb43eabc1"

CROSS_CHECKS = [  # (orders, seed, extra arguments)
    (0, 42, []),
    (1, 42, []),
    (1_000, 1, []),
    (20_000, 42, []),
    (50_000, 7, ["--depth", "100"]),
    (30_000, 2024, ["--depth", "0", "--mid", "150"]),
    (100_000, 42, ["--depth", "1000"]),
]


def reference_generator() -> Path | None:
    """shared/bench/workload.py: under $CARBONX_SHARED, else beside the repository's folder; None if absent."""
    override = os.environ.get("CARBONX_SHARED")
    script = (Path(override) if override else REPO_ROOT.parent / "shared") / "bench" / "workload.py"
    return script if script.is_file() else None


def run_script(script: Path, arguments: list[str]) -> bytes:
    return subprocess.run([sys.executable, str(script), *arguments], capture_output=True, check=True).stdout


def text(orders: int, seed: int = 42, **options) -> str:
    return "".join(workload_generator.commands(orders, seed, **options))


# -- the same bytes as the reference --------------------------------------------------------------------


@pytest.mark.parametrize(
    "orders, seed, extra",
    CROSS_CHECKS,
    ids=[f"{orders}-seed{seed}{''.join(extra)}" for orders, seed, extra in CROSS_CHECKS],
)
def test_the_same_bytes_as_the_reference_generator(orders, seed, extra):
    reference = reference_generator()
    if reference is None:
        pytest.skip(
            "the reference generator is not here (no $CARBONX_SHARED, no ../shared/bench/workload.py "
            "beside the repository): the cross-check runs where shared/ is, as in CI"
        )
    arguments = ["--orders", str(orders), "--seed", str(seed), *extra]
    expected = run_script(reference, arguments)
    assert run_script(WORKLOAD_SCRIPT, arguments) == expected
    if orders == 20_000 and seed == 42 and not extra:
        assert hashlib.sha256(expected).hexdigest() == DIGEST_20K_SEED_42


# -- standing alone -------------------------------------------------------------------------------------


def test_a_known_file_has_its_known_digest():
    """Pins the stream without the reference: any change to the order of the draws changes this."""
    data = run_script(WORKLOAD_SCRIPT, ["--orders", "20000", "--seed", "42"])
    assert hashlib.sha256(data).hexdigest() == DIGEST_20K_SEED_42


def test_the_command_line_writes_what_commands_yields():
    arguments = ["--orders", "5000", "--seed", "9", "--depth", "50", "--mid", "6000"]
    assert run_script(WORKLOAD_SCRIPT, arguments).decode() == text(5000, 9, depth=50, mid=6000)


def test_the_same_arguments_give_the_same_file_and_another_seed_another():
    assert text(20_000, 5) == text(20_000, 5)
    assert text(20_000, 5) != text(20_000, 6)
    assert text(20_000, 5, depth=10) != text(20_000, 5)
    first = text(20_000, 5)
    assert text(30_000, 5).startswith(first), "a longer run continues the shorter one's stream"


@pytest.mark.parametrize("depth", [0, 100, 10_000])
def test_every_line_has_the_format_and_ids_count_up(depth):
    lines = list(workload_generator.commands(30_000, 11, depth=depth))
    assert len(lines) == 30_000
    next_id = 1
    open_adds: set[int] = set()
    cancelled: set[int] = set()
    for line in lines:
        assert LINE.fullmatch(line), line
        kind, order_id, _side, _price, quantity = line.rstrip("\n").split(",")
        order_id = int(order_id)
        if kind == "C":
            assert order_id in open_adds, f"a cancel names an add not cancelled yet: {line!r}"
            open_adds.remove(order_id)
            cancelled.add(order_id)
            continue
        assert order_id == next_id, f"ids count up from 1, one per add or market order: {line!r}"
        next_id += 1
        assert int(quantity) in workload_generator.QUANTITIES
        if kind == "A":
            open_adds.add(order_id)
    assert cancelled and next_id > 1


def test_cancels_are_likelier_past_the_depth():
    """About one command in five is a cancel while at most ``depth`` adds may rest, about 45 in 100 past it."""

    def cancel_share(depth: int) -> float:
        lines = list(workload_generator.commands(30_000, 4, depth=depth))
        return sum(line.startswith("C") for line in lines) / len(lines)

    assert 0.17 < cancel_share(10**9) < 0.23
    assert 0.42 < cancel_share(0) < 0.48


def test_prices_stay_near_the_mid_on_each_side():
    rows = generate_workload(50_000, 3)
    adds = [row for row in rows if row.kind == "A"]
    assert adds and all(5_000 < row.price < 9_000 for row in adds)
    markets = [row for row in rows if row.kind == "M"]
    assert markets and all(row.price is None for row in markets)
    buys = [row.price for row in adds if row.side == "B"]
    sells = [row.price for row in adds if row.side == "S"]
    assert buys and sells and sum(buys) / len(buys) < sum(sells) / len(sells)


def test_the_tests_read_the_projects_generator():
    """The tests' workload comes from benchmarks/workload.py, with no folder beside the repository needed."""
    assert Path(workload_generator.__file__).resolve() == WORKLOAD_SCRIPT.resolve()
    rows = generate_workload(1_000, 42)
    assert "".join(
        f"{r.kind},{r.order_id},{r.side or ''},{'' if r.kind == 'C' else (r.price or 0)},"
        f"{'' if r.quantity is None else r.quantity}\n"
        for r in rows
    ) == text(1_000, 42)
