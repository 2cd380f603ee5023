"""The client library: an asyncio connection to the exchange, one method per request.

Usage: ``async with connect(host, port, account, secret) as client: await client.new_order(...)``.
"""

from gateway.client.connection import (
    CONNECT_TIMEOUT,
    ExchangeClient,
    LogonRefused,
    NoAnswer,
    NotAnExchange,
    RequestRefused,
    SessionClosed,
    TlsFailed,
    connect,
)
from gateway.tls import client_context

__all__ = [
    "CONNECT_TIMEOUT",
    "ExchangeClient",
    "LogonRefused",
    "NoAnswer",
    "NotAnExchange",
    "RequestRefused",
    "SessionClosed",
    "TlsFailed",
    "client_context",
    "connect",
]
