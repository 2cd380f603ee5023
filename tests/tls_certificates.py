"""Certificates for the TLS tests, made on the fly with the ``openssl`` binary in a temporary folder.

How it works
------------
:class:`Certificates` makes, in its folder, a test CA (``ca.crt``, ``ca.key``), and on request a server
certificate for 127.0.0.1 (``server.crt``/``server.key``: subject alternative names IP 127.0.0.1 and
DNS localhost, issued by the CA, so a client that trusts ``ca.crt`` verifies it by address) and client
certificates whose subject CN is an account id (``client-<account>.crt``/``.key``). A second,
unrelated CA (:meth:`Certificates.stranger`) issues certificates the gateway must not trust.

The ``cryptography`` package is not a dependency of carbonx or of its tests, and ``openssl`` is on every
machine that has Python's ``ssl`` module built against OpenSSL; keys are 2048-bit RSA (fast to make: a few
tens of milliseconds each) valid for two days. :func:`certificates` skips the calling test when the
binary is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DAYS = "2"


def openssl_binary() -> str | None:
    return shutil.which("openssl")


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


class Certificates:
    """A test CA in ``folder`` and the certificates it issues (see the module notes)."""

    def __init__(self, folder: Path, name: str = "carbonx test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = folder / "ca.crt"
        self.ca_key = folder / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.ca_key), "-out", str(self.ca),
            "-days", DAYS, "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip

    def issue(self, stem: str, common_name: str, extensions: str) -> tuple[Path, Path]:
        """A certificate for ``common_name`` issued by this CA: (``<stem>.crt``, ``<stem>.key``)."""
        cert, key, request = (self.folder / f"{stem}.{suffix}" for suffix in ("crt", "key", "csr"))
        config = self.folder / f"{stem}.ext"
        config.write_text(extensions + "\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
            "-subj", f"/CN={common_name}", cwd=self.folder,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", DAYS, "-extfile", str(config), cwd=self.folder,
        )  # fmt: skip
        return cert, key

    def server(self) -> tuple[Path, Path]:
        """The certificate of a server on 127.0.0.1 (also named localhost)."""
        return self.issue(
            "server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
        )

    def client(self, account: str) -> tuple[Path, Path]:
        """A client certificate whose subject CN is ``account``."""
        return self.issue(f"client-{account}", account, "extendedKeyUsage=clientAuth")

    def stranger(self) -> Certificates:
        """Another CA, in a folder of its own: what it issues is not trusted by this one's holders."""
        return Certificates(self.folder / "stranger", "another CA")


def certificates(folder: Path) -> Certificates:
    """A fresh CA in ``folder``; skips the test when there is no ``openssl`` binary."""
    if openssl_binary() is None:
        pytest.skip("the openssl binary is not installed: the TLS tests make their certificates with it")
    return Certificates(folder)
