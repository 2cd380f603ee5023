"""TLS for the trading gateway, its clients and the market-data broker: contexts built and checked once.

How this works
--------------
The standard ``ssl`` module does the cryptography; this module only decides
how it is set up, in one place for every connection carbonx makes or takes:

- :func:`server_context` reads the ``[tls]`` settings of exchange.toml
  (``tls_mode`` off, on or mutual; certificate, key, CA) and builds the
  gateway's context, or None when the mode is off. It runs before the
  exchange binds its port, so a setting that cannot work (a missing file, a
  key that is not the certificate's, mutual without a CA) is a
  :class:`ConfigError` naming the setting and what to do, and nothing has
  been created yet.
- :func:`client_context` builds what a client (the client library, the
  command line, the MQTT publisher and viewer) verifies the other end with:
  the system's trusted CAs or a CA file, and a certificate of its own for
  mutual TLS.
- :func:`certificate_account` reads the account a verified client
  certificate names (its subject's common name), which the session host
  compares with the account that logs on.

Every context refuses anything older than TLS 1.2.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from exchange import ConfigError

TLS_MODES = ("off", "on", "mutual")
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class _EncryptedKey(Exception):
    """The key file asked for a password (raised from the password callback instead of a terminal prompt)."""


def _refuse_password() -> str:
    # OpenSSL would otherwise prompt on the terminal for the key's password, and a service would hang on it.
    raise _EncryptedKey


def _readable(setting: str, path: str, what: str) -> None:
    if not path:
        raise ConfigError(setting, f"missing: {what}")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(setting, f"{path}: no such file ({what})")
    try:
        with open(file, "rb"):
            pass
    except OSError as error:
        raise ConfigError(
            setting, f"{path}: cannot be read ({error.strerror or error}): give the exchange's user read access"
        ) from None


def _load_chain(context: ssl.SSLContext, cert_file: str, key_file: str, cert_setting: str, key_setting: str) -> None:
    """Load a certificate and its key into ``context``; each way it can fail is a ConfigError naming a setting."""
    try:
        context.load_cert_chain(cert_file, key_file or None, password=_refuse_password)
    except _EncryptedKey:
        raise ConfigError(
            key_setting,
            f"{key_file or cert_file} is encrypted: give a key without a password (readable only by the user that runs it)",
        ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                key_setting, f"{key_file} is not the key of the certificate {cert_file}: give the key it was made with"
            ) from None
        try:  # which of the two files is wrong: a certificate loads as a trust anchor, a key does not
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_file)
        except ssl.SSLError:
            raise ConfigError(
                cert_setting, f"{cert_file} is not a PEM certificate (a file that begins -----BEGIN CERTIFICATE-----)"
            ) from None
        raise ConfigError(
            key_setting,
            f"{key_file or cert_file} is not a PEM private key (a file that begins -----BEGIN PRIVATE KEY-----)",
        ) from None


def server_context(mode: str, cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext | None:
    """The gateway's TLS context for ``tls_mode`` (None when it is off), every file checked now."""
    if mode not in TLS_MODES:
        raise ConfigError("tls.tls_mode", f"must be one of {', '.join(TLS_MODES)}")
    if mode == "off":
        named = [name for name, value in (("tls_cert_file", cert_file), ("tls_key_file", key_file)) if value]
        if named:
            # A certificate configured with TLS off would look like a secured gateway and serve plain TCP.
            raise ConfigError(
                f"tls.{named[0]}",
                'is set but tls_mode is "off", so the gateway would serve plain TCP: set tls_mode to "on" '
                '(or "mutual"), or remove the file settings',
            )
        return None
    _readable("tls.tls_cert_file", cert_file, "the gateway's certificate (PEM) is needed with TLS on")
    _readable("tls.tls_key_file", key_file, "the certificate's private key (PEM) is needed with TLS on")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, cert_file, key_file, "tls.tls_cert_file", "tls.tls_key_file")
    if mode == "mutual":
        _readable(
            "tls.tls_ca_file",
            ca_file,
            "mutual TLS verifies client certificates against a CA: give the CA certificate (PEM) that issued them",
        )
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as error:
            raise ConfigError(
                "tls.tls_ca_file", f"{ca_file} holds no PEM CA certificate ({error.reason or error})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    elif ca_file:
        raise ConfigError("tls.tls_ca_file", 'is used only with tls_mode "mutual": set that mode, or remove it')
    return context


def client_context(
    ca_file: str | Path | None = None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> ssl.SSLContext:
    """A client's context: the server verified against ``ca_file`` (None: the system's trusted CAs) and its
    host name; ``cert_file`` (and ``key_file``, if the key is not in it) for mutual TLS.

    A file that cannot be used raises :class:`ConfigError` naming the option (``ca_file``, ``cert_file``,
    ``key_file``)."""
    if ca_file is not None:
        _readable("ca_file", str(ca_file), "the CA certificate (PEM) the server's certificate is checked against")
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except ssl.SSLError as error:
        raise ConfigError("ca_file", f"{ca_file} holds no PEM CA certificate ({error.reason or error})") from None
    context.minimum_version = MINIMUM_VERSION
    if cert_file is not None:
        _readable("cert_file", str(cert_file), "the client certificate (PEM)")
        if key_file is not None:
            _readable("key_file", str(key_file), "the client certificate's private key (PEM)")
        _load_chain(context, str(cert_file), "" if key_file is None else str(key_file), "cert_file", "key_file")
    elif key_file is not None:
        raise ConfigError("key_file", "a key without its certificate: give the client certificate too")
    return context


def certificate_account(peercert: object) -> str | None:
    """The account a verified client certificate stands for: its subject's one common name (CN); None if it has
    none or several (``peercert`` is what ``SSLObject.getpeercert()`` gives)."""
    if not isinstance(peercert, dict):
        return None
    names = [value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return names[0] if len(names) == 1 else None
