"""Online guessing against the shipped settings: 50 wrong secrets in a row for one account, then the right one.

Run: ``python3 benchmarks/logon_bench.py [--attempts 50]``.

``carbonx serve`` runs in its own process with the shipped exchange.toml
(logon back-off after 3 failures, lockout after 10). One connection a logon
attempt, as a guessing client would make them, one after the other; for
each the answer's code and how long it took. Then the right secret, which
must be refused (717) while the lockout runs, and another account's logon
from the same address, which must be accepted. ``--patient SECONDS``: a
guesser that waits as long as each 717 says, for that long: how many
secrets it had checked (its guessing rate).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_bench import free_port, start_server  # noqa: E402

SECRET = "carbonx-demo"


async def attempt(port: int, account: str, secret: str) -> tuple[dict, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = msgspec.msgpack.encode({"type": "logon", "account": account, "secret": secret})
    writer.write(len(body).to_bytes(4, "big") + body)
    header = await reader.readexactly(4)
    answer = msgspec.msgpack.decode(await reader.readexactly(int.from_bytes(header, "big")))
    elapsed = time.perf_counter() - started
    writer.close()
    return answer, elapsed


async def patient(port: int, seconds: float) -> None:
    """Guess for ``seconds``, waiting out every back-off: the secrets the exchange checked, when."""
    started = time.perf_counter()
    checked = []
    number = 0
    while time.perf_counter() - started < seconds:
        answer, _ = await attempt(port, "cement-works", f"patient-{number}")
        number += 1
        if answer.get("code") == 702:
            checked.append(time.perf_counter() - started)
        else:
            await asyncio.sleep(
                min(answer.get("retry_after", 0.1), max(0.0, seconds - (time.perf_counter() - started)))
            )
    print(
        f"a patient guesser, {seconds:g} s: {len(checked)} secrets checked, at "
        + ", ".join(f"{moment:.1f}" for moment in checked)
        + " s"
    )


async def run(port: int, attempts: int) -> None:
    codes: Counter = Counter()
    times: dict[object, list[float]] = {}
    for number in range(attempts):
        answer, elapsed = await attempt(port, "bank", f"guess-{number}")
        code = answer.get("code")
        codes[code] += 1
        times.setdefault(code, []).append(elapsed)
        if number < 12 or number == attempts - 1:
            extra = f", retry_after {answer['retry_after']:.1f} s" if "retry_after" in answer else ""
            print(f"  attempt {number + 1:>2}: {code} in {elapsed * 1000:6.1f} ms{extra}")
    for code, spent in sorted(times.items(), key=lambda item: str(item[0])):
        spent.sort()
        print(
            f"{code}: {len(spent)} answers, median {spent[len(spent) // 2] * 1000:.1f} ms, "
            f"max {spent[-1] * 1000:.1f} ms"
        )
    right, elapsed = await attempt(port, "bank", SECRET)
    print(
        f"then the right secret: {right.get('type')} {right.get('code')} in {elapsed * 1000:.1f} ms "
        f"(retry_after {right.get('retry_after', 0):.1f} s)"
    )
    other, elapsed = await attempt(port, "broker", SECRET)
    print(f"another account from the same address: {other.get('type')} in {elapsed * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=50)
    parser.add_argument("--patient", type=float, default=0.0, help="seconds of a guesser that waits as told")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carbonx-logon-bench-") as scratch:
        port = free_port()
        server = start_server(port, "batch", Path(scratch) / "data")
        try:
            print(f"carbonx logon guessing: {args.attempts} wrong secrets for one account, shipped settings")
            asyncio.run(run(port, args.attempts))
            if args.patient:
                asyncio.run(patient(port, args.patient))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
