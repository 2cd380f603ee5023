"""No client, however it behaves, can stop or wedge the exchange: a session's failures end that session only.

What this file proves, against a real ``carbonx serve`` process
----------------------------------------------------------------
- A session that sends ``logout`` (or a frame fatal to it: a zero length
  prefix) and closes its socket at once, without reading the answer, ends
  only itself: the server's last write meets a peer that is gone (the
  shutdown of the half-close fails with ENOTCONN), and the engine goes on.
  Repeated in a loop, then an order still trades and SIGTERM stops the
  exchange with exit status 0.
- SIGTERM while a session's peer has just closed (a throttled session that
  read all its answers and closed during its read pause) stops the exchange
  cleanly: exit status 0, and the data directory is free for the next start.
- A chaos client (random frames, random closes, half-closes, resets with
  SO_LINGER 0, at random moments, seeded) runs beside two trading sessions:
  each trading account's numbered messages (every report it was sent, got
  back by ``resend``) are the same as in a run without the chaos, and the
  exchange stops cleanly afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
from gateway_helpers import HOST, SECRET

from gateway.client import connect

REPO_ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
SEED = int(os.environ.get("CARBONX_CHAOS_SEED", "20261207"))
TRADERS = ("bank", "broker")
# Chaos logs on as accounts the traders never deal with (and now and then as nobody at all).
CHAOS_ACCOUNTS = ("speculator", "carbon-fund", "cdm-developer", "ji-developer", "gov-fund", "nobody")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def frame(message: object) -> bytes:
    body = msgpack.packb(message)
    return struct.pack(">I", len(body)) + body


class Served:
    """``carbonx serve`` in a process of its own on a free loopback port, its log in a file."""

    def __init__(self, data_dir: Path, log_path: Path, *flags: str) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.flags = flags
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> Served:
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli.main",
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.flags,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"carbonx serve exited at start: {self.log()[-3000:]}"
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"carbonx serve did not start listening: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> int:
        """SIGTERM, and the exit status; a stop that does not end within STOP_TIMEOUT fails the test."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"SIGTERM did not stop the exchange within {STOP_TIMEOUT} s: {self.log()[-3000:]}"
            ) from None

    def kill(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def served_processes():
    started: list[Served] = []
    yield started
    for served in started:  # whatever the test did, no process outlives it
        served.kill()


def serve(started: list[Served], tmp_path: Path, name: str, *flags: str) -> Served:
    served = Served(tmp_path / name, tmp_path / f"{name}.log", *flags).start()
    started.append(served)
    return served


def assert_healthy(served: Served) -> None:
    log = served.log()
    assert served.alive(), f"the exchange exited ({served.process.returncode}): {log[-3000:]}"
    assert "engine_failed" not in log and "stop_step_failed" not in log, log[-3000:]


def logon_and_read(port: int, account: str = "bank") -> socket.socket:
    """A bare connection logged on (logon_accepted read), as a client written from the documents would have."""
    connection = socket.create_connection((HOST, port), timeout=10)
    connection.sendall(frame({"type": "logon", "account": account, "secret": SECRET}))
    header = recv_exactly(connection, 4)
    body = recv_exactly(connection, struct.unpack(">I", header)[0])
    assert msgpack.unpackb(body)["type"] == "logon_accepted"
    return connection


def recv_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


async def one_trade(port: int, tag: str) -> None:
    """The exchange still trades: two accounts cross one lot."""
    async with connect(HOST, port, "bank", SECRET) as seller, connect(HOST, port, "broker", SECRET) as buyer:
        sold = await seller.new_order("EUA", "S", 1, 7000, client_order_id=f"{tag}-s")
        assert sold["exec_type"] == "new", sold
        bought = await buyer.new_order("EUA", "B", 1, 7000, client_order_id=f"{tag}-b")
        assert bought["exec_type"] in ("new", "trade"), bought
        status = await buyer.order_status(client_order_id=f"{tag}-b")
        assert status["order_status"] == "filled", status


def test_logout_or_a_fatal_frame_then_a_close_at_once_never_stops_the_exchange(tmp_path, served_processes):
    served = serve(served_processes, tmp_path, "data")
    for attempt in range(40):
        connection = logon_and_read(served.port, ("bank", "broker")[attempt % 2])
        # Logout, or a zero length prefix (fatal to the session), and gone before the answer comes.
        connection.sendall(frame({"type": "logout"}) if attempt % 2 == 0 else b"\0\0\0\0")
        if attempt % 3 == 0:  # and now and then a reset rather than a close
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
        time.sleep(0.01)
        assert_healthy(served)
    asyncio.run(one_trade(served.port, "after"))
    assert_healthy(served)
    assert served.terminate() == 0, served.log()[-3000:]
    assert "engine_failed" not in served.log()


def test_sigterm_while_a_throttled_peer_has_just_closed_stops_cleanly(tmp_path, served_processes):
    for _ in range(4):
        served = serve(served_processes, tmp_path, "data", "--throttle-rate", "20", "--throttle-burst", "5")
        connection = logon_and_read(served.port)
        requests = 60
        connection.sendall(b"".join(frame({"type": "balances", "request_id": n}) for n in range(requests)))
        answered = 0
        connection.settimeout(10)
        buffered = b""
        while answered < requests:  # every request gets its answer (balances or a 708), then the session closes
            buffered += connection.recv(65536)
            while len(buffered) >= 4 and len(buffered) >= 4 + struct.unpack(">I", buffered[:4])[0]:
                size = struct.unpack(">I", buffered[:4])[0]
                message = msgpack.unpackb(buffered[4 : 4 + size])
                buffered = buffered[4 + size :]
                answered += message.get("type") in ("balances", "reject")
        connection.close()  # during the session's read pause: the server has not seen the close yet
        status = served.terminate()
        log = served.log()
        assert status == 0, log[-3000:]
        assert "engine_failed" not in log and "stop_step_failed" not in log, log[-3000:]
    # The data directory was unlocked: the next start takes it.
    served = serve(served_processes, tmp_path, "data")
    asyncio.run(one_trade(served.port, "restart"))
    assert served.terminate() == 0


# -- the chaos client ----------------------------------------------------------------------------------------


def random_frame(rng: random.Random, serial: int) -> bytes:
    """Something a confused or hostile client might send: valid requests, wrong ones, broken frames."""
    choice = rng.randrange(14)
    if choice == 0:
        return b"\0\0\0\0"  # a zero length prefix: fatal to the session
    if choice == 1:
        return struct.pack(">I", rng.choice((2**31, 2**32 - 1, 10_000_000)))  # longer than any frame may be
    if choice == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))  # noise
    if choice == 3:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))
        return struct.pack(">I", len(body)) + body  # a frame of noise: not MessagePack, or not a map
    if choice == 4:
        return frame([1, 2, 3])
    if choice == 5:
        return frame({"type": rng.choice(("nonsense", "", 7, None, "logon"))})
    if choice == 6:
        return frame(
            {
                "type": "new_order",
                "instrument": "CER",
                "side": rng.choice(("B", "S", "up")),
                "quantity": rng.choice((1, 0, -1, "x")),
                "price": rng.choice((1000, "10.00", -5)),
                "client_order_id": f"chaos-{serial}",
            }
        )
    if choice == 7:
        return frame({"type": "cancel_order", "order_id": rng.randrange(1, 10_000)})
    if choice == 8:
        return frame({"type": "book", "instrument": rng.choice(("EUA", "CER", "XYZ")), "levels": 5})
    if choice == 9:
        return frame({"type": "subscribe"})
    if choice == 10:
        return frame({"type": "heartbeat"})
    if choice == 11:
        return frame({"type": "logout"})
    if choice == 12:
        return frame({"type": "balances", "request_id": serial})
    return frame({"type": "order_status", "client_order_id": f"chaos-{serial}"})


async def chaos_connection(port: int, rng: random.Random, serial: int) -> None:
    """One connection that misbehaves in a way drawn from ``rng``; every failure on our side is expected."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return
    sock = writer.get_extra_info("socket")
    try:
        if rng.random() < 0.8:
            account = rng.choice(CHAOS_ACCOUNTS)
            writer.write(
                frame({"type": "logon", "account": account, "secret": SECRET if rng.random() < 0.9 else "wrong"})
            )
            if rng.random() < 0.6:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.read(65536), 1.0)
        for _ in range(rng.randrange(0, 12)):
            writer.write(random_frame(rng, serial))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.02)
        if rng.random() < 0.4:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(rng.choice((1, 100, 65536))), 0.2)
        ending = rng.randrange(4)
        if ending == 0:  # a reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        elif ending == 1:  # a half-close, then a while reading what comes, then gone
            with contextlib.suppress(Exception):
                writer.write_eof()
                await asyncio.wait_for(reader.read(65536), rng.random() * 0.3)
            writer.transport.abort()
        elif ending == 2:  # a close without reading anything
            writer.close()
        else:  # a close after a random pause
            await asyncio.sleep(rng.random() * 0.2)
            writer.close()
    except (OSError, ConnectionError):
        writer.transport.abort()


async def chaos(port: int, seed: int, stop: asyncio.Event, made: list[int], concurrency: int = 8) -> None:
    """Chaos connections, ``concurrency`` at a time, until ``stop``; ``made[0]`` counts them."""
    rng = random.Random(seed)

    async def worker() -> None:
        own = random.Random(rng.random())
        while not stop.is_set():
            made[0] += 1
            await chaos_connection(port, own, made[0])

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


async def trade_and_collect(port: int, chaos_seed: int | None) -> tuple[dict[str, list[dict]], int]:
    """Two traders cross orders one at a time (each waits for its answer, so the engine sees a fixed order);
    each account's numbered messages afterwards, got back by resend and normalised: ts and the exchange-wide
    ids (order and trade ids, which the chaos client's own orders may move on) dropped."""
    stop = asyncio.Event()
    made = [0]
    chaos_task = asyncio.create_task(chaos(port, chaos_seed, stop, made)) if chaos_seed is not None else None
    collected: dict[str, list[dict]] = {}
    try:
        async with (
            connect(HOST, port, "bank", SECRET, cancel_on_disconnect=False) as bank,
            connect(HOST, port, "broker", SECRET, cancel_on_disconnect=False) as broker,
        ):
            rng = random.Random(SEED)
            for n in range(60):
                if chaos_task is not None:  # the chaos keeps pace: a few of its connections between orders
                    await until(lambda n=n: made[0] >= 3 * n)
                trader = (bank, broker)[n % 2]
                side = rng.choice(("B", "S"))
                price = rng.randrange(6990, 7011)
                answer = await trader.new_order("EUA", side, rng.randrange(1, 6), price, client_order_id=f"t{n}")
                assert answer.get("exec_type") in ("new", "trade"), answer
                if n % 7 == 6:
                    await trader.cancel(client_order_id=f"t{n - 2}")
            await bank.mass_cancel()
            await broker.mass_cancel()
            for account, client in (("bank", bank), ("broker", broker)):
                _, messages = await client.resend(1)
                collected[account] = [normalised(message) for message in messages]
    finally:
        stop.set()
        if chaos_task is not None:
            await chaos_task
    return collected, made[0]


def normalised(message: dict) -> dict:
    return {
        name: value
        for name, value in message.items()
        if name not in ("ts", "order_id", "trade_id", "orders") and not name.endswith("_ts")
    }


def test_a_chaos_client_beside_trading_sessions_changes_nothing_they_see(tmp_path, served_processes):
    quiet = serve(served_processes, tmp_path, "quiet")
    expected, _ = asyncio.run(trade_and_collect(quiet.port, None))
    assert quiet.terminate() == 0
    assert len(expected["bank"]) > 30 and any(m.get("exec_type") == "trade" for m in expected["bank"])

    noisy = serve(served_processes, tmp_path, "noisy")
    got, made = asyncio.run(trade_and_collect(noisy.port, SEED))
    assert made >= 150, f"only {made} chaos connections were made"
    assert_healthy(noisy)
    for account in TRADERS:
        assert got[account] == expected[account], (
            f"{account}'s messages differ beside the chaos client [seed {SEED}; rerun with CARBONX_CHAOS_SEED={SEED}]"
        )
    assert noisy.terminate() == 0, noisy.log()[-3000:]
    assert "engine_failed" not in noisy.log()
