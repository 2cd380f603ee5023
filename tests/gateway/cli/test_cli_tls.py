"""``carbonx serve`` with TLS, driven by the one-shot commands as a user runs them.

The exchange runs in its own process on a free loopback port with ``--tls-mode`` and a certificate
made for 127.0.0.1 in a temporary folder (``tests/tls_certificates.py``); the commands connect with
``--ca-file`` (and ``--cert``/``--key`` for mutual TLS), or without TLS to be refused. The server is
stopped with SIGTERM and must exit 0; its JSON log says what it refused.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from tls_certificates import Certificates, certificates


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Certificates:
    made = certificates(tmp_path_factory.mktemp("pki"))
    made.server()
    made.client("bank")
    return made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def carbonx(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARBONX_SECRET": "carbonx-demo"}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture
def served(pki, tmp_path) -> Iterator[tuple[list[str], subprocess.Popen]]:
    """``carbonx serve`` in mutual TLS mode once it takes connections: (the flags of a command that reaches it,
    the process)."""
    port = free_port()
    folder = pki.folder
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
            "--tls-mode", "mutual", "--tls-cert-file", str(folder / "server.crt"),
            "--tls-key-file", str(folder / "server.key"), "--tls-ca-file", str(pki.ca),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("carbonx serve did not start listening")
                time.sleep(0.05)
        yield ["--port", str(port)], process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_one_shot_commands_over_mutual_tls_against_carbonx_serve(served, pki):
    at, process = served
    bank = ["--account", "bank", "--ca-file", str(pki.ca)]
    mine = ["--cert", str(pki.folder / "client-bank.crt"), "--key", str(pki.folder / "client-bank.key")]
    sold = carbonx("order", *at, *bank, *mine, "sell", "5", "EUA", "70.50", "--clid", "s1")
    assert sold.returncode == 0, sold.stderr
    assert "new: sell 5 lots EUA @ EUR 70.50 GTC" in sold.stdout
    status = carbonx("status", "--clid", "s1", *at, *bank, *mine)
    assert status.returncode == 0 and "status new" in status.stdout, status.stdout + status.stderr

    plain = carbonx("balances", *at, "--account", "bank")
    assert plain.returncode == 3 and "connect with --tls" in plain.stderr, plain.stderr
    no_certificate = carbonx("balances", *at, *bank)
    assert no_certificate.returncode == 3 and "client certificate missing" in no_certificate.stderr
    as_broker = carbonx("balances", *at, "--account", "broker", "--ca-file", str(pki.ca), *mine)
    assert as_broker.returncode == 3 and "(code 721)" in as_broker.stderr, as_broker.stderr
    untrusted = carbonx("balances", *at, "--account", "bank", "--tls", *mine)  # the system's CAs
    assert untrusted.returncode == 3 and "not trusted" in untrusted.stderr, untrusted.stderr
    bad_flag = carbonx("balances", *at, *bank, "--cert", str(pki.folder / "absent.crt"))
    assert bad_flag.returncode == 2 and "--cert:" in bad_flag.stderr and "no such file" in bad_flag.stderr

    canceled = carbonx("cancel", "--clid", "s1", *at, *bank, *mine)  # the exchange went on all along
    assert canceled.returncode == 0 and "canceled (USER)" in canceled.stdout

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    log = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in log]
    assert events[:2] == ["recovered", "listening"] and events[-1] == "stopped"
    assert next(entry for entry in log if entry["event"] == "listening")["tls"] == "mutual"
    assert "tls_handshake_failed" in events and "logon_refused_certificate" in events


def test_serve_refuses_bad_tls_settings_in_one_line(pki, tmp_path):
    port = str(free_port())
    data = ["--data-dir", str(tmp_path / "data"), "--port", port]
    wrong_key = carbonx(
        "serve", *data, "--tls-mode", "on", "--tls-cert-file", str(pki.folder / "server.crt"),
        "--tls-key-file", str(pki.folder / "client-bank.key"),
    )  # fmt: skip
    assert wrong_key.returncode == 2
    assert wrong_key.stderr.startswith("carbonx: configuration error: tls.tls_key_file: ")
    assert "is not the key of the certificate" in wrong_key.stderr and "Traceback" not in wrong_key.stderr
    no_ca = carbonx(
        "serve", *data, "--tls-mode", "mutual", "--tls-cert-file", str(pki.folder / "server.crt"),
        "--tls-key-file", str(pki.folder / "server.key"),
    )  # fmt: skip
    assert no_ca.returncode == 2 and "tls.tls_ca_file: missing" in no_ca.stderr
    assert not (tmp_path / "data").exists()
