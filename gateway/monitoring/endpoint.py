"""The HTTP endpoint: /metrics (Prometheus's text format), /healthz and /readyz.

How this works
--------------
:class:`MetricsEndpoint` binds its address when it is made (an address in
use is a :class:`ConfigError`, like the gateway's own) and serves from a
thread of its own running a small asyncio HTTP responder: one request per
connection, ``GET`` only, answered and closed.

Why a thread, and not prometheus-client's server nor a responder on the
exchange's event loop: recovery replays the journal on the event loop and
holds it for as long as that takes, and /readyz must say 503 meanwhile
rather than go unanswered; a wedged event loop must show as a failed
scrape, not as a hung one. prometheus-client's own server (a thread too)
would run the collectors in its thread, reading the session table and the
intake while the event loop changes them, and serves one fixed path.

- ``/healthz``: 200 while the process runs (it answers from this thread).
- ``/readyz``: 200 once the state is recovered and the gateway listens
  (:meth:`attach`), 503 before that and from the start of the stop.
- ``/metrics``: the process's figures (prometheus-client's process
  collector: resident memory, CPU, open files), uptime and readiness, read
  here; and the exchange's (:class:`gateway.monitoring.collectors.ExchangeCollector`),
  built on the exchange's event loop, the only thread that changes what it
  reads, and handed back. That costs the event loop one pass over the
  sessions and instruments per scrape; if the loop does not answer within
  ``SCRAPE_TIMEOUT`` the scrape is a 503, never a wait without end. The
  registry is the endpoint's own, so several exchanges in one process
  (the tests) keep their figures apart.

A client cannot wedge anything: a request's head must come whole within
``REQUEST_TIMEOUT`` and ``MAX_REQUEST`` bytes, an answer the client does not
read is cut after ``WRITE_TIMEOUT``, and past ``MAX_CONNECTIONS`` open at
once a new connection is closed at once. Every fault of one request ends
that connection only; none reaches the exchange.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from gateway.listening import Address, bind_failure
from gateway.logs import log_event
from gateway.monitoring.collectors import ExchangeCollector

if TYPE_CHECKING:
    from gateway.config import ServerConfig
    from gateway.node import TradingGateway

log = logging.getLogger("carbonx.metrics")

MAX_REQUEST = 8192  # bytes of a request's head (its line and headers); a scraper sends a few hundred
REQUEST_TIMEOUT = 5.0  # seconds from the connection to the end of the request's head
WRITE_TIMEOUT = 10.0  # seconds an answer may wait for the client to read it
SCRAPE_TIMEOUT = 5.0  # seconds the exchange's event loop has to build its figures
MAX_CONNECTIONS = 32  # open at once; more are closed unanswered
START_TIMEOUT = 10.0  # seconds the thread has to start serving
PATHS = ("/metrics", "/healthz", "/readyz")
TEXT = "text/plain; charset=utf-8"


class MetricsEndpoint:
    """The HTTP endpoint's socket, thread and registry; see the module notes."""

    def __init__(self, host: str, port: int) -> None:
        self.socket = bind_socket(host, port)
        self.host = host
        self.port: int = self.socket.getsockname()[1]
        self.started = time.monotonic()
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(self)
        self._gateway: TradingGateway | None = None
        self._collector: ExchangeCollector | None = None
        self._exchange_loop: asyncio.AbstractEventLoop | None = None
        self._live: list[Metric] = []  # the exchange's families of the scrape being encoded (this thread's)
        self._closing = False
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # the thread's own
        self._serving = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)

    # -- the exchange's side ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._serving.wait(START_TIMEOUT):
            raise RuntimeError("the metrics endpoint's thread did not start")
        log_event(log, "metrics_listening", host=self.host, port=self.port)

    def attach(self, gateway: TradingGateway) -> None:
        """The gateway listens: its figures are served, and /readyz says 200 (call on its event loop)."""
        self._collector = ExchangeCollector(gateway)
        self._exchange_loop = asyncio.get_running_loop()
        self._gateway = gateway  # last: ready only once the rest is in place

    @property
    def ready(self) -> bool:
        gateway = self._gateway
        return gateway is not None and not self._closing and gateway.lifecycle.running

    def close(self) -> None:
        self._closing = True
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                loop.call_soon_threadsafe(loop.stop)
            self._thread.join(START_TIMEOUT)
        self.socket.close()

    # -- the endpoint's thread --------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's own
        try:
            server = loop.run_until_complete(asyncio.start_server(self._serve, sock=self.socket, limit=MAX_REQUEST))
            self._serving.set()
            loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:  # connections still open: each aborts its own in its finally
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        except Exception as error:  # never silent, never the exchange's problem
            log.error("metrics endpoint failed", exc_info=error, extra={"carbonx_fields": {"event": "metrics_failed"}})
        finally:
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        if self._connections >= MAX_CONNECTIONS or self._closing:
            transport.abort()
            return
        self._connections += 1
        answered = False
        try:
            writer.write(await self._answer(reader))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            answered = True
        except (TimeoutError, ConnectionError, OSError):
            pass  # a client that went away or does not read: its connection only
        except Exception as error:
            log.error(
                "metrics request failed", exc_info=error, extra={"carbonx_fields": {"event": "metrics_request_failed"}}
            )
        finally:
            self._connections -= 1
            if answered:
                writer.close()
            else:
                transport.abort()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        """The whole answer to the connection's request."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        except TimeoutError:
            return response(HTTPStatus.REQUEST_TIMEOUT, b"the request did not come in time\n")
        except asyncio.LimitOverrunError:
            return response(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"the request is too large\n")
        except asyncio.IncompleteReadError as error:
            raise ConnectionResetError("the client went away") from error
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return response(HTTPStatus.BAD_REQUEST, b"not an HTTP request\n")
        method, path = parts[0], parts[1].split("?", 1)[0]
        if path not in PATHS:
            return response(HTTPStatus.NOT_FOUND, b"not found: /metrics, /healthz and /readyz are served\n")
        if method != "GET":
            return response(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET is served\n", extra=("Allow: GET",))
        if path == "/healthz":
            return response(HTTPStatus.OK, b"alive\n")
        if path == "/readyz":
            if self.ready:
                return response(HTTPStatus.OK, b"ready\n")
            why = b"stopping\n" if self._gateway is not None or self._closing else b"recovering\n"
            return response(HTTPStatus.SERVICE_UNAVAILABLE, why)
        accept = next((line.split(":", 1)[1] for line in lines[1:] if line.lower().startswith("accept:")), "")
        return await self._metrics(accept.strip())

    async def _metrics(self, accept: str) -> bytes:
        collector, loop = self._collector, self._exchange_loop
        live: list[Metric] = []
        if collector is not None and loop is not None:
            try:
                live = await asyncio.wait_for(asyncio.wrap_future(on_loop(loop, collector)), SCRAPE_TIMEOUT)
            except TimeoutError:
                return response(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    f"the exchange did not answer within {SCRAPE_TIMEOUT:g} s\n".encode(),
                )
            except RuntimeError:  # its event loop has closed: the exchange has stopped
                return response(HTTPStatus.SERVICE_UNAVAILABLE, b"the exchange has stopped\n")
        encoder, content_type = choose_encoder(accept)
        self._live = live
        try:
            body = encoder(self.registry)
        finally:
            self._live = []
        return response(HTTPStatus.OK, body, content_type)

    def collect(self) -> Iterator[Metric]:
        """The endpoint's own families, and the exchange's fetched for the scrape being encoded."""
        yield GaugeMetricFamily(
            "carbonx_uptime_seconds",
            "Seconds since the exchange process began to start",
            time.monotonic() - self.started,
        )
        yield GaugeMetricFamily(
            "carbonx_ready", "1 once recovered and listening (as /readyz says 200), else 0", 1 if self.ready else 0
        )
        yield from self._live


def on_loop(loop: asyncio.AbstractEventLoop, collector: ExchangeCollector) -> concurrent.futures.Future:
    """The collector's families, built on ``loop`` (from any thread); RuntimeError if that loop is closed."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def build() -> None:
        if not future.set_running_or_notify_cancel():  # the scrape gave up waiting
            return
        try:
            future.set_result(list(collector.collect()))
        except BaseException as error:
            future.set_exception(error)

    loop.call_soon_threadsafe(build)
    return future


def response(status: HTTPStatus, body: bytes, content_type: str = TEXT, extra: tuple[str, ...] = ()) -> bytes:
    head = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a failure is a ConfigError saying what to change."""
    address = Address(
        host,
        port,
        "metrics.metrics_host",
        "metrics.metrics_port",
        "--metrics-host",
        "--metrics-port",
        ", or 0 for no metrics endpoint",
    )
    try:
        family, kind, protocol, _, bound = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, OverflowError) as error:
        raise bind_failure(address, error) from None
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does: a restart reuses the port
        listener.bind(bound)
        listener.listen(MAX_CONNECTIONS)
        listener.setblocking(False)
    except (OSError, OverflowError) as error:
        listener.close()
        raise bind_failure(address, error) from None
    return listener


@contextlib.contextmanager
def metrics_endpoint(config: ServerConfig) -> Iterator[MetricsEndpoint | None]:
    """The endpoint of ``config`` serving for the block (None: ``metrics_port`` is 0, no endpoint)."""
    if not config.metrics_port:
        yield None
        return
    endpoint = MetricsEndpoint(config.metrics_host, config.metrics_port)
    try:
        endpoint.start()
        yield endpoint
    finally:
        endpoint.close()
