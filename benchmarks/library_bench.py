"""carbonx's engine as a library, like for like with the fastest order books on PyPI, in one run.

usage: python3 benchmarks/library_bench.py --workload FILE [--rounds 3]
       [--peer NAME=PYTHON ...] [--setup]

How this works
--------------
Users of order-book libraries time them the way a program uses them: the order lines are read first, then,
inside the timed region, each line is parsed, the order built and handed to the book, and the trades read,
with the garbage collector on. The runners in ``benchmarks/peers/`` do exactly that, one book each
(``lines.py`` holds the loop they share), and print their time and a hash of the trade tape:

- ``carbonx``: ``Engine.handle`` per line, pre-trade risk on (and ``carbonx (risk off)``), this checkout;
- ``carbonx compiled``: the same with the engine's hot modules compiled by mypyc (setup.py): ``--setup`` copies
  this checkout's ``exchange/`` to ``benchmarks/.peers/carbonx-compiled/`` and builds it there in place (it needs
  the dev extra's mypy and a C compiler); a copy whose sources differ from the checkout's is stale and skipped;
- ``matching-engine`` (PyPI; Python 3.12 or newer) and ``cython-orderbook`` (PyPI): each in an environment
  of its own, never this one's: ``--setup`` makes them under ``benchmarks/.peers/`` with pip (matching-engine
  with the first Python 3.12 or 3.13 found), and ``--peer NAME=PYTHON`` names another. A peer that is not
  installed is skipped, and the run says so.

Each runner is a process of its own, one at a time; the runners take turns for ``--rounds`` rounds, and a
book's figure is its best round (the machine is shared: the best is the least disturbed). Every tape must
equal the others (the workload's price-time priority: one right answer), or the run fails. Printed: each
book's orders a second and its ratio to the fastest peer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"
RUNNERS = HERE / "peers"
PEERS = {  # name: (PyPI package, runner, Python versions it runs on, newest first)
    "matching-engine": ("matching-engine", "matching_engine_lines.py", ("3.13", "3.12")),
    "cython-orderbook": ("cython-orderbook", "cython_orderbook_lines.py", ("3.11", "3.12", "3.13")),
}


def find_python(versions: tuple[str, ...]) -> str | None:
    """A Python of one of these versions that runs: on the PATH, else under pyenv (whose shims are on the PATH
    whether or not they can run that version: the interpreter itself is asked)."""
    for version in versions:
        pyenv = sorted((Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"), reverse=True)
        for candidate in [shutil.which(f"python{version}"), *map(str, pyenv)]:
            if candidate and subprocess.run([candidate, "-c", ""], capture_output=True, check=False).returncode == 0:
                return candidate
    return None


def setup_peers() -> None:
    """Each peer installed from PyPI into an environment of its own under benchmarks/.peers/."""
    for name, (package, _, versions) in PEERS.items():
        python = find_python(versions)
        if python is None:
            print(f"setup: {name} needs Python {' or '.join(versions)}, none found: skipped")
            continue
        venv = PEERS_DIR / name
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", package], check=True)
        print(f"setup: {name} in {venv} ({python})")


COMPILED = PEERS_DIR / "carbonx-compiled"  # a copy of exchange/ and setup.py, built in place


def setup_compiled() -> None:
    """This checkout's engine compiled (setup.py, CARBONX_COMPILE=1) in a copy under benchmarks/.peers/."""
    try:
        import mypyc  # noqa: F401, PLC0415  (only to say clearly what is missing)
    except ImportError:
        print("setup: carbonx compiled needs mypy (pip install -e '.[dev]'): skipped")
        return
    shutil.rmtree(COMPILED, ignore_errors=True)
    COMPILED.mkdir(parents=True)
    shutil.copytree(
        HERE.parent / "exchange", COMPILED / "exchange", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy2(HERE.parent / name, COMPILED / name)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=COMPILED,
        env={**os.environ, "CARBONX_COMPILE": "1"},
        check=True,
        capture_output=True,
    )
    print(f"setup: carbonx compiled in {COMPILED} ({sys.executable})")


def compiled_state() -> str | None:
    """None when the compiled copy is built from this checkout's sources, else why it cannot run."""
    if not any((COMPILED / "exchange").glob("engine.*.so")):
        return "not built"
    for source in (HERE.parent / "exchange").glob("*.py"):
        copy = COMPILED / "exchange" / source.name
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            return f"stale ({source.name} changed since)"
    return None


def peer_pythons(given: list[str]) -> dict[str, str]:
    pythons = {}
    for name in PEERS:
        installed = PEERS_DIR / name / "bin" / "python"
        if installed.exists():
            pythons[name] = str(installed)
    for entry in given:
        name, _, python = entry.partition("=")
        if name not in PEERS or not python:
            raise SystemExit(f"--peer {entry}: expected NAME=PYTHON, NAME one of {', '.join(PEERS)}")
        pythons[name] = python
    return pythons


def run_one(python: str, runner: str, workload: Path, *options: str) -> dict:
    done = subprocess.run(
        [python, str(RUNNERS / runner), str(workload), *options], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{runner} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, help="file written by benchmarks/workload.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer", action="append", default=[], help="NAME=PYTHON: a peer's environment")
    parser.add_argument("--setup", action="store_true", help="install the peers under benchmarks/.peers/ first")
    args = parser.parse_args()
    if args.setup:
        setup_peers()
        setup_compiled()
    if args.workload is None:
        return 0 if args.setup else parser.error("--workload is required")
    pythons = peer_pythons(args.peer)
    for name in PEERS:
        if name not in pythons:
            print(f"{name}: not installed, skipped (python3 benchmarks/library_bench.py --setup)")
    entries = [
        ("carbonx", sys.executable, "carbonx_lines.py", ()),
        ("carbonx (risk off)", sys.executable, "carbonx_lines.py", ("--no-risk",)),
    ]
    why_not = compiled_state()
    if why_not is None:
        entries.append(("carbonx compiled", sys.executable, "carbonx_lines.py", ("--root", str(COMPILED))))
    else:
        print(f"carbonx compiled: {why_not}, skipped (python3 benchmarks/library_bench.py --setup)")
    entries += [(name, pythons[name], PEERS[name][1], ()) for name in PEERS if name in pythons]
    best: dict[str, dict] = {}
    for round_number in range(1, args.rounds + 1):
        for name, python, runner, options in entries:
            result = run_one(python, runner, args.workload, *options)
            print(
                f"round {round_number}: {name:<20} {result['orders_per_s']:>10,.0f} orders/s (Python {result['python']})"
            )
            if name not in best or result["orders_per_s"] > best[name]["orders_per_s"]:
                best[name] = result
    tapes = {result["tape_sha256"] for result in best.values()}
    fastest_peer = max((best[name]["orders_per_s"] for name in PEERS if name in best), default=None)
    print(
        f"\n{best['carbonx']['orders']:,} orders, {best['carbonx']['trades']:,} trades; best of {args.rounds} rounds:"
    )
    for name, result in best.items():
        ratio = "" if fastest_peer is None else f"  x{result['orders_per_s'] / fastest_peer:.2f} of the fastest peer"
        print(f"  {name:<20} {result['orders_per_s']:>10,.0f} orders/s  Python {result['python']}{ratio}")
    if "carbonx compiled" in best:
        print(
            f"  compiled / pure Python: x{best['carbonx compiled']['orders_per_s'] / best['carbonx']['orders_per_s']:.2f}"
        )
    if len(tapes) != 1:
        print("THE TAPES DIFFER: " + ", ".join(f"{name} {result['tape_sha256'][:12]}" for name, result in best.items()))
        return 1
    print(f"  tapes equal: sha256 {tapes.pop()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
