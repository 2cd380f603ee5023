"""Helpers for the end-to-end gateway tests (tests/gateway/sessions/test_gateway_sessions.py).

How it works
------------
:func:`exchange_on_port` starts the whole exchange (``running_exchange``) on a
free port of 127.0.0.1 with the demo configuration and some settings
overridden; the tests enter it through a fixture, so every server started is
stopped.

Well-behaved sessions use the client library (:func:`gateway.client.connect`);
:class:`Inbox` reads a client's numbered messages one at a time, with a
timeout, so a missing message fails the test instead of hanging it.

Misbehaving sessions use :class:`RawConnection`: a bare asyncio socket that
writes frames (or any bytes) and decodes what comes back with the reference
``msgpack`` package, not with the project's own codec, so the wire format is
checked by a second implementation.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgpack

from gateway.client import ExchangeClient, connect
from gateway.config import DEFAULT_ACCOUNTS, load_accounts, load_compliance, load_instruments, load_server_config
from gateway.node import TradingGateway, running_exchange
from gateway.wire.protocol import encode_frame

HOST = "127.0.0.1"
SECRET = "carbonx-demo"  # every demo account's secret (config/accounts.toml)
TIMEOUT = 5.0  # seconds any single wait may take before the test fails


@functools.cache
def demo_configuration():
    instruments = load_instruments()
    return instruments, load_accounts(DEFAULT_ACCOUNTS, instruments), load_compliance()


@asynccontextmanager
async def exchange_on_port(
    ledger: Path | None = None, instruments=None, accounts=None, futures=None, **overrides: object
) -> AsyncIterator[TradingGateway]:
    """The whole exchange listening on a free port of 127.0.0.1, with the demo configuration.

    ``overrides`` are exchange.toml settings; ``ledger`` a ledger file (default: a temporary one);
    ``instruments`` and ``accounts`` replace the demo ones; ``futures`` (a FuturesConfig) lists and clears futures.
    """
    default_instruments, default_accounts, compliance = demo_configuration()
    settings = {"port": 0, "host": HOST, "data_dir": "", **overrides}
    if ledger is not None:
        settings["ledger"] = str(ledger)
    config = load_server_config(overrides=settings)
    async with running_exchange(
        config, instruments or default_instruments, accounts or default_accounts, compliance, futures=futures
    ) as gateway:
        yield gateway


@asynccontextmanager
async def session(gateway: TradingGateway, account: str, **options: object) -> AsyncIterator[ExchangeClient]:
    """A logged-on client-library session (logs out on leaving), with a timeout on the logon."""
    manager = connect(HOST, gateway.port, account, SECRET, **options)
    client = await asyncio.wait_for(manager.__aenter__(), TIMEOUT)
    try:
        yield client
    finally:
        await asyncio.wait_for(manager.__aexit__(None, None, None), TIMEOUT)


class Inbox:
    """A client's numbered messages, read one at a time with a timeout; checks that seq has no gap."""

    def __init__(self, client: ExchangeClient) -> None:
        self.client = client
        self.last_seq = client.logon.get("next_seq", 1) - 1
        self.ended = False

    async def _read(self, timeout: float) -> dict | None:
        """The next message, None when the session has ended. (A fresh iterator each time: a timeout
        cancels only it, and the client's queue is left as it was.)"""
        if self.ended:
            return None
        try:
            message = await asyncio.wait_for(anext(self.client.messages()), timeout)
        except StopAsyncIteration:
            self.ended = True
            return None
        assert message["seq"] == self.last_seq + 1, f"seq gap: {message['seq']} after {self.last_seq}: {message}"
        self.last_seq = message["seq"]
        return message

    async def next(self, timeout: float = TIMEOUT) -> dict:
        message = await self._read(timeout)
        if message is None:
            raise AssertionError(f"the session ended ({self.client.closed!r}); no more messages")
        return message

    async def until_end(self, timeout: float = TIMEOUT) -> list[dict]:
        """Every message up to the end of the session (which must come within ``timeout`` of the last)."""
        messages = []
        while (message := await self._read(timeout)) is not None:
            messages.append(message)
        return messages

    async def take(self, count: int, timeout: float = TIMEOUT) -> list[dict]:
        return [await self.next(timeout) for _ in range(count)]

    async def expect(self, timeout: float = TIMEOUT, **fields: object) -> dict:
        """The next message, which must carry ``fields`` with exactly these values."""
        message = await self.next(timeout)
        assert_fields(message, **fields)
        return message

    async def nothing_more(self, wait: float = 0.2) -> None:
        """No numbered message arrives within ``wait`` seconds."""
        try:
            message = await self._read(wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message (or end of session): {message}")


def assert_fields(message: dict, **fields: object) -> None:
    wrong = {
        name: (message.get(name, "<missing>"), value)
        for name, value in fields.items()
        if name not in message or message[name] != value
    }
    assert not wrong, f"fields (got, expected) {wrong} in {message}"


class RawConnection:
    """A bare socket speaking (or breaking) the protocol; decodes with the reference msgpack package."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker_buffer = b""

    @classmethod
    async def open(cls, port: int, **options: object) -> RawConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port, **options), TIMEOUT)
        return cls(reader, writer)

    def send(self, message: dict) -> None:
        self.writer.write(encode_frame(message))

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    async def read(self, timeout: float = TIMEOUT) -> dict | None:
        """The next message (heartbeats included), or None at the end of the stream."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(4), timeout)
        except asyncio.IncompleteReadError as error:
            assert error.partial == b"", f"the stream ended inside a frame header: {error.partial!r}"
            return None
        length = int.from_bytes(header, "big")
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
        assert isinstance(message, dict), f"the server sent a {type(message).__name__}, not a map"
        return message

    async def read_skipping_heartbeats(self, timeout: float = TIMEOUT) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.read(max(0.01, deadline - time.monotonic()))
            if message is None or message.get("type") != "heartbeat":
                return message

    async def expect_closed(self, timeout: float = TIMEOUT) -> None:
        """The server closes the connection: nothing more but the end of the stream (heartbeats aside)."""
        message = await self.read_skipping_heartbeats(timeout)
        assert message is None, f"expected the connection to be closed, got {message}"

    async def logon(self, account: str, secret: str = SECRET, **fields: object) -> dict:
        self.send({"type": "logon", "account": account, "secret": secret, **fields})
        return await self.read()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)
        except (TimeoutError, ConnectionError, OSError):
            pass


async def eventually(condition: Callable[[], object], timeout: float = TIMEOUT, interval: float = 0.01) -> None:
    """Wait until ``condition()`` is true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def read_until_closed(raw: RawConnection, timeout: float = TIMEOUT) -> tuple[list[dict], str]:
    """Read what the server still sends until it closes the connection, however it closes it:
    (the messages, "eof" or "reset")."""
    messages: list[dict] = []
    try:
        while True:
            header = await asyncio.wait_for(raw.reader.readexactly(4), timeout)
            body = await asyncio.wait_for(raw.reader.readexactly(int.from_bytes(header, "big")), timeout)
            messages.append(msgpack.unpackb(body, raw=False))
    except asyncio.IncompleteReadError:
        return messages, "eof"
    except ConnectionResetError:
        return messages, "reset"


async def abort(client: ExchangeClient) -> None:
    """Drop a client-library session abruptly (no logout: a reset), and wait until the client has noticed."""
    client._writer.transport.abort()
    await eventually(lambda: client.closed is not None)


def without_ts(message: dict) -> dict:
    """The message without its timestamp (which no test can predict)."""
    assert type(message.get("ts")) is int and message["ts"] > 0, f"no timestamp in {message}"
    return {name: value for name, value in message.items() if name != "ts"}
