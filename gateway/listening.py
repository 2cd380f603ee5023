"""Why an address could not be listened on, told as the setting to change: one wording for every listener.

How this works: the trading gateway (:func:`gateway.node.bind_listener`) and the metrics endpoint
(:mod:`gateway.monitoring.endpoint`) bind their addresses before anything else starts; the OS error
of a failed bind (a name that does not resolve, a port in use, an address the machine does not have,
a privileged port) becomes a :class:`ConfigError` naming the setting and the flag that changes it.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from exchange import ConfigError


@dataclass(frozen=True)
class Address:
    """A listener's address and the settings and flags that set it."""

    host: str
    port: int
    host_setting: str  # e.g. "server.host"
    port_setting: str
    host_flag: str  # e.g. "--host"
    port_flag: str
    port_hint: str = ""  # what else the port may be, e.g. ", or 0 for no metrics endpoint"

    @property
    def where(self) -> str:
        host = self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host or '*'}:{self.port}"


def bind_failure(address: Address, error: OSError | OverflowError) -> ConfigError:
    """The ConfigError that says why ``address`` could not be bound (``error`` from the bind)."""
    where = address.where
    if isinstance(error, OverflowError):  # a port outside 0-65535
        return ConfigError(address.port_setting, f"cannot listen on {where}: {error}: choose a port from 1 to 65535")
    if isinstance(error, socket.gaierror):
        return ConfigError(
            address.host_setting,
            f"no such address {address.host!r} ({error.strerror}): give an IP address or a name this machine "
            f"resolves with {address.host_flag}",
        )
    if error.errno == errno.EADDRINUSE:
        return ConfigError(
            address.port_setting,
            f"{where} is already in use (another exchange, or another program, listens there): stop it, or "
            f"choose another port with {address.port_flag}{address.port_hint}",
        )
    # From Python 3.13 asyncio takes EADDRNOTAVAIL for an address family the machine lacks, passes the
    # address over, and raises an OSError without an errno once none is left.
    if error.errno == errno.EADDRNOTAVAIL or (error.errno is None and "could not bind on any address" in str(error)):
        return ConfigError(
            address.host_setting,
            f"{address.host} is not an address of this machine: give one of its own with {address.host_flag} "
            "(127.0.0.1 for this machine only, 0.0.0.0 for all of them)",
        )
    if error.errno == errno.EACCES:
        return ConfigError(
            address.port_setting,
            f"not allowed to listen on {where} (ports below 1024 need privileges): choose another port with "
            f"{address.port_flag}",
        )
    return ConfigError(address.host_setting, f"cannot listen on {where}: {error.strerror or error}")
