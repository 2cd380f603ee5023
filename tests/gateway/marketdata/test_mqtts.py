"""Market data over TLS (mqtts://): the exchange publishes to, and carbonx md reads from, the TLS listener
of the shipped broker configuration (docs/MARKET_DATA.md, section 9.1).

How it works
------------
A real mosquitto runs the project's own config/mosquitto files ("production" mode of
``tests/mosquitto_broker.py``) with the shipped TLS listener, ``config/mosquitto/tls.conf``, added on
a second free port and given a certificate for 127.0.0.1 made on the fly (``tests/tls_certificates.py``).
The exchange's ``mqtt_url`` is that listener's ``mqtts://`` URL, with the test CA as ``mqtt_ca_file``;
the subscriber is the viewer's own feed (``gateway.cli.md_view.mqtt_feed``) over TLS as well.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest
from gateway_helpers import TIMEOUT, exchange_on_port, session
from mosquitto_broker import running_broker
from tls_certificates import Certificates, certificates

from exchange import ConfigError
from gateway.cli.main import main
from gateway.cli.md_view import mqtt_feed
from gateway.marketdata.mqtt import broker_tls_context, parse_mqtt_url

PUBLISHER = "carbonx-exchange"
PASSWORD = "carbonx-demo"  # every demo user's broker password (config/mosquitto/passwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Certificates:
    made = certificates(tmp_path_factory.mktemp("pki"))
    made.server()
    return made


@pytest.fixture
def broker(pki):
    with running_broker("production", tls=(pki.folder / "server.crt", pki.folder / "server.key")) as broker:
        yield broker


async def first_trade(feed) -> dict:
    async for message in feed:
        if message.get("type") == "trade":
            return message
    raise AssertionError("the feed ended without a trade")


async def test_market_data_is_published_and_read_over_mqtts(broker, pki):
    url = broker.tls_url(PUBLISHER, PASSWORD)
    async with exchange_on_port(mqtt_url=url, mqtt_ca_file=str(pki.ca)) as gateway:
        assert gateway.publisher is not None and gateway.publisher.tls is not None
        viewer_url = broker.tls_url("bank", PASSWORD)
        feed = mqtt_feed(viewer_url, ["EUA"], broker_tls_context(viewer_url, str(pki.ca)))
        watching = asyncio.create_task(first_trade(feed))
        await asyncio.sleep(0.5)  # subscribed by then; a trade is not retained
        async with session(gateway, "bank") as seller, session(gateway, "broker") as buyer:
            await seller.new_order("EUA", "S", 2, price="70.25")
            await buyer.new_order("EUA", "B", 2, price="70.25")
            trade = await asyncio.wait_for(watching, TIMEOUT)
        assert (trade["instrument"], trade["price"], trade["quantity"]) == ("EUA", 7025, 2), trade
        assert gateway.publisher.connected
    log = broker.log_text()
    assert f"u'{PUBLISHER}'" in log and "Opening ipv4 listen socket on port " + str(broker.tls_port) in log


async def test_a_subscriber_that_does_not_trust_the_broker_is_refused(broker, pki):
    stranger = pki.stranger()
    url = broker.tls_url("bank", PASSWORD)
    for context in (broker_tls_context(url, str(stranger.ca)), broker_tls_context(url, "")):  # another CA; the system's
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                broker.host, broker.tls_port, username="bank", password=PASSWORD, tls_context=context, timeout=TIMEOUT
            ):
                pass
    async with aiomqtt.Client(  # the plain listener is still there beside it, as shipped
        broker.host, broker.port, username="bank", password=PASSWORD, timeout=TIMEOUT
    ):
        pass


def test_mqtts_urls_and_their_ca_file(pki):
    assert parse_mqtt_url("mqtts://u:p@broker.example").port == 8883 and parse_mqtt_url("mqtts://h").tls
    assert parse_mqtt_url("mqtt://h").port == 1883 and not parse_mqtt_url("mqtt://h").tls
    assert broker_tls_context("mqtt://h:1883", "") is None and broker_tls_context("", "") is None
    context = broker_tls_context("mqtts://h", str(pki.ca))
    assert context is not None and context.check_hostname and context.minimum_version.name == "TLSv1_2"
    with pytest.raises(ConfigError, match=r"market_data\.mqtt_url: must look like .* mqtts://"):
        parse_mqtt_url("ssl://h:8883")
    with pytest.raises(ConfigError, match=r"--mqtt-ca-file: is set but the broker's URL is not mqtts://"):
        broker_tls_context("mqtt://h:1883", str(pki.ca), "--mqtt-ca-file")


def test_md_refuses_a_ca_file_for_a_plain_broker(pki, capsys):
    assert main(["md", "EUA", "--mqtt-url", "mqtt://127.0.0.1:1", "--mqtt-ca-file", str(pki.ca), "--seconds", "1"]) == 2
    assert "--mqtt-ca-file: is set but the broker's URL is not mqtts://" in capsys.readouterr().err


def test_md_follows_an_mqtts_broker(broker, pki, capsys):
    """carbonx md over mqtts:// with --mqtt-ca-file: the retained state of EUA arrives (its status at least)."""

    async def publish_state() -> None:
        async with exchange_on_port(mqtt_url=broker.tls_url(PUBLISHER, PASSWORD), mqtt_ca_file=str(pki.ca)) as gateway:
            await asyncio.wait_for(_connected(gateway), TIMEOUT)
            await asyncio.sleep(0.3)  # the retained state is published on connecting

    asyncio.run(publish_state())
    url = broker.tls_url("bank", PASSWORD)
    assert main(["md", "EUA", "--mqtt-url", url, "--mqtt-ca-file", str(pki.ca), "--seconds", "1.5"]) == 0, (
        capsys.readouterr().err
    )
    shown = capsys.readouterr().out
    assert "EUA" in shown and "continuous" in shown, shown


async def _connected(gateway) -> None:
    while not gateway.publisher.connected:
        await asyncio.sleep(0.02)
