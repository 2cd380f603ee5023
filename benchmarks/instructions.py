"""Instructions a workload line costs on the library path, counted by valgrind's callgrind: the same count every
run, whatever else the machine does, so a change to the engine can be judged by it where wall time moves by 20%.

usage: python3 benchmarks/instructions.py --workload FILE [--lines 30000] [--root DIR] [--python PYTHON]

How this works
--------------
``benchmarks/peers/carbonx_lines.py`` (the library path: parse, build, ``Engine.handle``, read the trades; pre-trade
risk on) runs under ``valgrind --tool=callgrind`` twice: on the first ``--lines`` lines of the workload and on its
first line alone. The difference, divided by the lines between, is what a line costs without the interpreter's
start and the engine's set-up. ``--root`` takes the engine from another checkout or from library_bench's compiled
copy (``benchmarks/.peers/carbonx-compiled``), ``--python`` another interpreter. Needs valgrind (a Debian package).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def instructions(python: str, workload: Path, root: Path | None) -> int:
    """Instructions callgrind counted for one run of carbonx_lines.py over ``workload``."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python]
    command += [str(HERE / "peers" / "carbonx_lines.py"), str(workload)]
    if root is not None:
        command += ["--root", str(root)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, required=True, help="file written by benchmarks/workload.py")
    parser.add_argument("--lines", type=int, default=30_000, help="lines of the workload counted (at least 2)")
    parser.add_argument("--root", type=Path, help="the checkout (or compiled copy) whose engine runs")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if args.lines < 2:
        parser.error("--lines must be at least 2")
    lines = args.workload.read_text().splitlines()[: args.lines]
    with tempfile.TemporaryDirectory() as folder:
        many, one = Path(folder) / "many.csv", Path(folder) / "one.csv"
        many.write_text("\n".join(lines) + "\n")
        one.write_text(lines[0] + "\n")
        counted = instructions(args.python, many, args.root) - instructions(args.python, one, args.root)
    per_line = counted / (len(lines) - 1)
    print(f"{per_line:,.0f} instructions a line ({len(lines):,} lines, {args.root or HERE.parent}, {args.python})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
