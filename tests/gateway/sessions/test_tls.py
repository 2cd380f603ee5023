"""TLS on the trading gateway (docs/PROTOCOL.md, section 1.1), end to end on 127.0.0.1.

How it works
------------
Each test starts the whole exchange (``exchange_on_port``) with ``tls_mode`` on or mutual and
certificates made for it in a temporary folder (``tests/tls_certificates.py``: a test CA, a server
certificate for 127.0.0.1, client certificates whose CN is an account id). Clients are the client
library over real TLS sockets, or bare sockets that misbehave: plain TCP where TLS is required, a TLS
client without a certificate, a client that stalls in the handshake. The gateway's own log events
are collected from its logger.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_helpers import HOST, SECRET, TIMEOUT, Inbox, demo_configuration, exchange_on_port
from tls_certificates import Certificates, certificates

from exchange import ConfigError, RejectCode
from gateway.client import LogonRefused, TlsFailed, connect
from gateway.config import load_server_config
from gateway.node import running_exchange
from gateway.tls import client_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Certificates:
    made = certificates(tmp_path_factory.mktemp("pki"))
    made.server()
    for account in ("bank", "broker"):
        made.client(account)
    return made


def tls_settings(pki: Certificates, mode: str = "on", **more: object) -> dict[str, object]:
    settings: dict[str, object] = {
        "tls_mode": mode,
        "tls_cert_file": str(pki.folder / "server.crt"),
        "tls_key_file": str(pki.folder / "server.key"),
        **more,
    }
    if mode == "mutual":
        settings["tls_ca_file"] = str(pki.ca)
    return settings


def client_files(pki: Certificates, account: str) -> dict[str, Path]:
    return {"cert_file": pki.folder / f"client-{account}.crt", "key_file": pki.folder / f"client-{account}.key"}


class Events(logging.Handler):
    """The gateway's log events (their names) as they happen."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, event: str) -> list[dict]:
        return [getattr(record, "carbonx_fields", {}) for record in self.records if record.getMessage() == event]


@pytest.fixture
def events() -> Iterator[Events]:
    logger = logging.getLogger("carbonx.gateway")
    handler = Events()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def trade_between(port: int, pki: Certificates, mutual: bool = False) -> None:
    """bank sells 2 EUA, broker buys them over TLS: both see the trade."""
    seller_files = client_files(pki, "bank") if mutual else {}
    buyer_files = client_files(pki, "broker") if mutual else {}
    async with (
        connect(HOST, port, "bank", SECRET, ca_file=pki.ca, **seller_files) as seller,
        connect(HOST, port, "broker", SECRET, ca_file=pki.ca, **buyer_files) as buyer,
    ):
        assert seller._writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        sold, bought = Inbox(seller), Inbox(buyer)
        await seller.new_order("EUA", "S", 2, price="70.25")
        await sold.expect(exec_type="new", side="S")
        await buyer.new_order("EUA", "B", 2, price="70.25")
        await bought.expect(exec_type="new", side="B")
        await bought.expect(exec_type="trade", last_quantity=2, order_status="filled")
        await sold.expect(exec_type="trade", last_quantity=2, order_status="filled")


async def test_a_client_logs_on_and_trades_over_tls(pki):
    async with exchange_on_port(**tls_settings(pki)) as gateway:
        await trade_between(gateway.port, pki)


async def test_a_plain_connection_is_refused_and_tls_clients_go_on(pki, events):
    async with exchange_on_port(**tls_settings(pki)) as gateway:
        reader, writer = await asyncio.open_connection(HOST, gateway.port)
        writer.write(b"\x00\x00\x00\x10" + b"plain logon here")  # a frame, not a ClientHello
        assert await asyncio.wait_for(reader.read(100), TIMEOUT) == b""  # closed, nothing said in plain
        writer.close()
        with pytest.raises(LogonRefused) as refused:  # the client library, plain
            async with connect(HOST, gateway.port, "bank", SECRET):
                pass
        assert refused.value.code is None
        failed = events.named("tls_handshake_failed")
        assert len(failed) == 2 and all("WRONG_VERSION_NUMBER" in entry["error"] for entry in failed), failed
        assert not events.named("logon")  # no plain session was ever logged on
        await trade_between(gateway.port, pki)
        assert gateway.failure is None and gateway.lifecycle.running


async def test_a_client_that_does_not_trust_the_gateway_stops_at_the_handshake(pki):
    stranger = pki.stranger()
    async with exchange_on_port(**tls_settings(pki)) as gateway:
        for options in ({"ca_file": stranger.ca}, {"tls": True}):  # another CA; the system's CAs
            with pytest.raises(TlsFailed, match="not trusted"):
                async with connect(HOST, gateway.port, "bank", SECRET, **options):
                    pass
        with pytest.raises(TlsFailed, match="not trusted"):  # a name the certificate does not carry
            async with connect(HOST, gateway.port, "bank", SECRET, ca_file=pki.ca, server_hostname="exchange.example"):
                pass
        async with connect(HOST, gateway.port, "bank", SECRET, tls=client_context(pki.ca), server_hostname="localhost"):
            pass


async def test_a_tls_client_to_a_plain_gateway_fails_clearly(pki):
    async with exchange_on_port() as gateway:
        with pytest.raises(TlsFailed, match="wrong version number"):  # the gateway answered in plain: 704
            async with connect(HOST, gateway.port, "bank", SECRET, ca_file=pki.ca):
                pass
        async with connect(HOST, gateway.port, "bank", SECRET) as client:  # the gateway goes on, plain
            assert client.logon["type"] == "logon_accepted"


async def test_mutual_tls_maps_the_certificate_to_the_account(pki, events):
    async with exchange_on_port(**tls_settings(pki, "mutual")) as gateway:
        port = gateway.port
        await trade_between(port, pki, mutual=True)
        # A certificate for bank, logging on as broker: refused with its own code, before the secret is checked.
        with pytest.raises(LogonRefused) as refused:
            async with connect(HOST, port, "broker", SECRET, ca_file=pki.ca, **client_files(pki, "bank")):
                pass
        assert refused.value.code == RejectCode.CERTIFICATE_MISMATCH == 721
        assert refused.value.text == RejectCode.CERTIFICATE_MISMATCH.text
        refusals = events.named("logon_refused_certificate")
        assert len(refusals) == 1 and (refusals[0]["account"], refusals[0]["certificate"]) == ("broker", "bank")
        assert not events.named("logon_failed")  # refused before the secret: not a guess at it
        # No certificate at all: the handshake fails.
        with pytest.raises(TlsFailed):
            async with connect(HOST, port, "bank", SECRET, ca_file=pki.ca):
                pass
        # A certificate from another CA, named for the right account: not trusted, the handshake fails.
        stranger = pki.stranger()
        cert, key = stranger.client("bank")
        with pytest.raises(TlsFailed):
            async with connect(HOST, port, "bank", SECRET, ca_file=pki.ca, cert_file=cert, key_file=key):
                pass
        failed = [entry["error"] for entry in events.named("tls_handshake_failed")]
        assert len(failed) == 2 and "PEER_DID_NOT_RETURN_A_CERTIFICATE" in failed[0], failed
        assert "CERTIFICATE_VERIFY_FAILED" in failed[1] or "certificate verify failed" in failed[1], failed
        # The right certificate with a wrong secret is still a failed logon: the certificate adds to the secret.
        with pytest.raises(LogonRefused) as wrong_secret:
            async with connect(HOST, port, "bank", "wrong", ca_file=pki.ca, **client_files(pki, "bank")):
                pass
        assert wrong_secret.value.code == RejectCode.LOGON_FAILED
        await trade_between(port, pki, mutual=True)


async def test_clients_stalled_in_the_handshake_block_nobody(pki, events):
    async with exchange_on_port(**tls_settings(pki, tls_handshake_timeout=1.0)) as gateway:
        stalled = []
        for partial in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):  # silent; half a ClientHello
            for _ in range(3):
                reader, writer = await asyncio.open_connection(HOST, gateway.port)
                writer.write(partial)
                stalled.append((reader, writer))
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        await trade_between(gateway.port, pki)  # while six connections sit in their handshakes
        assert asyncio.get_running_loop().time() - started < 1.0
        for reader, writer in stalled:  # each is cut off once the handshake timeout has passed
            assert await asyncio.wait_for(reader.read(100), TIMEOUT) == b""
            writer.close()
        timed_out = [entry for entry in events.named("tls_handshake_failed") if "longer than" in entry["error"]]
        assert len(timed_out) == 6, events.named("tls_handshake_failed")
        assert gateway.host.pending_total == 0
        await trade_between(gateway.port, pki)


async def test_stalled_handshakes_count_as_pending_logons(pki, events):
    async with exchange_on_port(**tls_settings(pki, max_pending_logons_per_peer=2)) as gateway:
        stalled = [await asyncio.open_connection(HOST, gateway.port) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection(HOST, gateway.port)  # the third from this address
        assert await asyncio.wait_for(reader.read(100), TIMEOUT) == b""  # cut off, no handshake
        writer.close()
        assert len(events.named("pending_logons_full")) == 1
        for _, stalled_writer in stalled:
            stalled_writer.close()
        await asyncio.sleep(0.1)
        await trade_between(gateway.port, pki)


def test_tls_is_checked_before_anything_starts(pki, tmp_path):
    """Bad TLS settings are a ConfigError naming the setting; the port is not bound, nothing is created."""
    data_dir = tmp_path / "data"
    server = {"tls_cert_file": str(pki.folder / "server.crt"), "tls_key_file": str(pki.folder / "server.key")}
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    cases = [
        ({"tls_mode": "on"}, "tls.tls_cert_file", "missing"),
        ({**server, "tls_mode": "on", "tls_cert_file": str(tmp_path / "absent.crt")}, "tls.tls_cert_file", "no such file"),
        ({**server, "tls_mode": "on", "tls_key_file": str(pki.folder / "client-bank.key")}, "tls.tls_key_file", "is not the key"),
        ({**server, "tls_mode": "on", "tls_cert_file": str(pki.folder / "server.key")}, "tls.tls_cert_file", "not a PEM certificate"),
        ({**server, "tls_mode": "mutual"}, "tls.tls_ca_file", "mutual TLS verifies client certificates"),
        ({**server, "tls_mode": "on", "tls_ca_file": str(pki.ca)}, "tls.tls_ca_file", 'only with tls_mode "mutual"'),
        ({**server, "tls_mode": "off"}, "tls.tls_cert_file", "would serve plain TCP"),
        ({"mqtt_url": "mqtt://127.0.0.1:1883", "mqtt_ca_file": str(pki.ca)}, "market_data.mqtt_ca_file", "not mqtts://"),
        ({"mqtt_url": "mqtts://127.0.0.1", "mqtt_ca_file": str(tmp_path / "absent.crt")}, "market_data.mqtt_ca_file", "no such file"),
    ]  # fmt: skip

    async def start(settings: dict) -> None:
        config = load_server_config(overrides={"host": HOST, "port": port, "data_dir": str(data_dir), **settings})
        instruments, accounts, compliance = demo_configuration()
        async with running_exchange(config, instruments, accounts, compliance):
            raise AssertionError("the exchange started")

    for settings, field, words in cases:
        with pytest.raises(ConfigError) as error:
            asyncio.run(start(settings))
        assert error.value.field == field and words in error.value.problem, (settings, error.value)
        assert not data_dir.exists()
        with socket.socket() as probe:  # the port was never bound (or was let go)
            probe.bind((HOST, port))
    with pytest.raises(ConfigError, match="tls.tls_mode: must be one of off, on, mutual"):
        load_server_config(overrides={"tls_mode": "required"})
