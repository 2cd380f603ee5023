"""The market-data broker's users and topic permissions, against a real mosquitto.

How it works
------------
Each test starts mosquitto with the project's own ``config/mosquitto`` files (``mosquitto.conf``,
``passwd``, ``acl``; only the port and the folders are moved into a temporary folder, see
tests/mosquitto_broker.py) and talks to it with aiomqtt, MQTT 3.1.1, as the exchange and the
accounts will.

A refused logon shows as ``MqttCodeError`` with reason 135 (paho reports mosquitto's MQTT 3.1.1
CONNACK "not authorised" that way), which cannot be confused with a broker that is not there.

mosquitto 2.0 drops a publish the ACL refuses without telling an MQTT 3.1.1 publisher (a QoS 1/2
publish is even acknowledged), so "not delivered" is checked by a subscriber that may read the
whole tree (the exchange user): after the refused publishes the exchange publishes a marker on the
same topic, and the subscriber must receive the marker and nothing else, and then stay quiet for a
moment. The broker's log must also show one "Denied PUBLISH" line per refused publish. Every wait
has a timeout, so a missing message fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import Callable

import aiomqtt
import pytest
from mosquitto_broker import CONFIG_DIR, REPO_ROOT, MosquittoBroker, requires_mosquitto, running_broker

pytestmark = requires_mosquitto

PASSWORD = "carbonx-demo"  # every demo user's password (config/mosquitto/README.md)
EXCHANGE = "carbonx-exchange"
TIMEOUT = 5.0  # seconds any single wait may take before the test fails
QUIET = 0.3  # seconds a subscriber must then receive nothing more
NOT_AUTHORIZED = 135


def demo_accounts() -> list[str]:
    with open(REPO_ROOT / "config" / "accounts.toml", "rb") as file:
        return list(tomllib.load(file)["accounts"])


@pytest.fixture
def broker():
    with running_broker("production") as broker:
        yield broker


def client(broker: MosquittoBroker, user: str | None, password: str | None = PASSWORD, **options) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host, broker.port, username=user, password=password if user else None, timeout=TIMEOUT, **options
    )


async def receive_until(
    subscriber: aiomqtt.Client, last: Callable[[aiomqtt.Message], bool], timeout: float = TIMEOUT
) -> list[aiomqtt.Message]:
    """Every message up to and including the first for which ``last`` is true, then QUIET seconds more."""
    received: list[aiomqtt.Message] = []
    try:
        async with asyncio.timeout(timeout):
            async for message in subscriber.messages:
                received.append(message)
                if last(message):
                    break
    except TimeoutError:
        pytest.fail(f"the expected message did not arrive within {timeout} s; received: {describe(received)}")
    return received + await receive_for(subscriber, QUIET)


async def receive_for(subscriber: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    """Every message that arrives within ``seconds``."""
    received: list[aiomqtt.Message] = []
    with pytest.raises(TimeoutError):  # the loop only ends by the timeout
        async with asyncio.timeout(seconds):
            async for message in subscriber.messages:
                received.append(message)
    return received


def describe(messages: list[aiomqtt.Message]) -> list[tuple[str, bytes, bool]]:
    return [(message.topic.value, message.payload, message.retain) for message in messages]


def on(topic: str, payload: bytes) -> Callable[[aiomqtt.Message], bool]:
    return lambda message: message.topic.value == topic and message.payload == payload


async def assert_refused(broker: MosquittoBroker, user: str | None, password: str | None) -> None:
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with client(broker, user, password):
            pass
    reason = refused.value.rc
    assert getattr(reason, "value", reason) == NOT_AUTHORIZED, f"refused for another reason: {refused.value}"


# -- the files ---------------------------------------------------------------------------------------


def test_password_file_has_the_exchange_and_every_account_hashed():
    entries = dict(line.split(":", 1) for line in (CONFIG_DIR / "passwd").read_text().splitlines() if line)
    assert sorted(entries) == sorted([EXCHANGE, *demo_accounts()])
    for user, stored in entries.items():
        assert re.fullmatch(r"\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", stored), f"{user}: not a PBKDF2 hash"
        assert PASSWORD not in stored


# -- logging on --------------------------------------------------------------------------------------


async def test_every_user_logs_on_with_the_demo_password(broker):
    for user in [EXCHANGE, *demo_accounts()]:
        async with client(broker, user) as session:
            await session.subscribe("carbonx/md/EUA/top")


async def test_anonymous_connection_is_refused(broker):
    async with client(broker, "bank"):
        pass  # the broker is there and takes a proper logon
    await assert_refused(broker, None, None)
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with client(broker, None, protocol=aiomqtt.ProtocolVersion.V5):
            pass
    assert refused.value.rc.value == NOT_AUTHORIZED


async def test_wrong_password_or_unknown_user_is_refused(broker):
    async with client(broker, "bank", PASSWORD):
        pass
    await assert_refused(broker, "bank", "carbonx-dem0")
    await assert_refused(broker, "bank", None)
    await assert_refused(broker, EXCHANGE, "")
    await assert_refused(broker, "nobody", PASSWORD)


# -- what the exchange publishes arrives ---------------------------------------------------------------


async def test_exchange_publishes_trades_and_retained_top_to_accounts(broker):
    async with client(broker, "bank") as bank, client(broker, EXCHANGE) as exchange:
        await bank.subscribe("carbonx/md/EUA/#", qos=1)
        await exchange.publish("carbonx/md/EUA/trades", b"trade-1", qos=1)
        await exchange.publish("carbonx/md/EUA/top", b"top-1", qos=1, retain=True)
        received = await receive_until(bank, on("carbonx/md/EUA/top", b"top-1"))
        # A live subscriber gets a retained publish with the retain flag cleared (MQTT 3.1.1).
        assert describe(received) == [
            ("carbonx/md/EUA/trades", b"trade-1", False),
            ("carbonx/md/EUA/top", b"top-1", False),
        ]

    async with client(broker, "speculator") as late_joiner:
        await late_joiner.subscribe("carbonx/md/+/top", qos=1)
        received = await receive_until(late_joiner, on("carbonx/md/EUA/top", b"top-1"))
        assert describe(received) == [("carbonx/md/EUA/top", b"top-1", True)]


async def test_every_account_reads_market_data_of_every_instrument(broker):
    accounts = demo_accounts()
    async with client(broker, EXCHANGE) as exchange:
        for symbol in ("EUA", "CER", "ERU"):
            await exchange.publish(f"carbonx/md/{symbol}/status", f"{symbol} open".encode(), qos=1, retain=True)

    async def late_joiner(account: str) -> list[tuple[str, bytes, bool]]:
        async with client(broker, account) as session:
            await session.subscribe("carbonx/md/#", qos=1)
            received = await receive_until(
                session, lambda message, seen=set(): seen.add(message.topic.value) or len(seen) == 3
            )
            return sorted(describe(received))

    results = await asyncio.gather(*(late_joiner(account) for account in accounts))
    for account, received in zip(accounts, results, strict=True):
        assert received == [
            ("carbonx/md/CER/status", b"CER open", True),
            ("carbonx/md/ERU/status", b"ERU open", True),
            ("carbonx/md/EUA/status", b"EUA open", True),
        ], account


# -- what an account publishes does not ---------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    ["carbonx/md/EUA/trades", "carbonx/md/CER/updates", "carbonx/private/broker/fills", "carbonx/private/bank/fills"],
)
async def test_account_cannot_publish_under_carbonx(broker, topic):
    async with client(broker, EXCHANGE) as observer, client(broker, "bank") as bank:
        await observer.subscribe("carbonx/#", qos=2)
        for qos in (0, 1, 2):
            # No error reaches the publisher: QoS 0 is dropped, QoS 1 and 2 are acknowledged.
            await bank.publish(topic, f"forged-qos{qos}".encode(), qos=qos)
        # The QoS 2 handshake has completed, so the broker has handled all three publishes.
        await observer.publish(topic, b"marker", qos=1)
        received = await receive_until(observer, on(topic, b"marker"))
        assert describe(received) == [(topic, b"marker", False)]
    denied = re.findall(rf"Denied PUBLISH from \S+ \(d0, q(\d), r0, m\d+, '{re.escape(topic)}'", broker.log_text())
    assert denied == ["0", "1", "2"]


async def test_account_cannot_overwrite_or_clear_retained_market_data(broker):
    async with client(broker, EXCHANGE) as exchange:
        await exchange.publish("carbonx/md/EUA/top", b"top-by-exchange", qos=1, retain=True)
        await exchange.publish("carbonx/md/EUA/status", b"open", qos=1, retain=True)
    async with client(broker, "bank") as bank:
        await bank.publish("carbonx/md/EUA/top", b"top-by-bank", qos=1, retain=True)
        await bank.publish("carbonx/md/EUA/status", b"", qos=1, retain=True)  # would clear it
        await bank.publish("carbonx/md/EUA/snapshot", b"snapshot-by-bank", qos=1, retain=True)
    async with client(broker, "speculator") as late_joiner:
        await late_joiner.subscribe("carbonx/md/EUA/#", qos=1)
        received = await receive_until(
            late_joiner, lambda message, seen=set(): seen.add(message.topic.value) or len(seen) == 2
        )
        assert sorted(describe(received)) == [
            ("carbonx/md/EUA/status", b"open", True),
            ("carbonx/md/EUA/top", b"top-by-exchange", True),
        ]


# -- private fills -------------------------------------------------------------------------------------


async def test_account_receives_only_its_own_fills(broker):
    async with (
        client(broker, "bank") as bank,
        client(broker, "broker") as broker_account,
        client(broker, EXCHANGE) as exchange,
    ):
        granted = await bank.subscribe("carbonx/private/#", qos=1)
        assert [code.value for code in granted] == [1]
        # Subscribing to another account's topic is not refused either: mosquitto 2.0 grants the
        # subscription and then delivers nothing on it.
        granted = await bank.subscribe("carbonx/private/broker/fills", qos=1)
        assert [code.value for code in granted] == [1]
        await broker_account.subscribe("carbonx/private/#", qos=1)

        await exchange.publish("carbonx/private/broker/fills", b"broker-fill", qos=1)
        await exchange.publish("carbonx/private/speculator/fills", b"speculator-fill", qos=1)
        await exchange.publish("carbonx/private/bank/fills", b"bank-fill", qos=1)

        received = await receive_until(bank, on("carbonx/private/bank/fills", b"bank-fill"))
        assert describe(received) == [("carbonx/private/bank/fills", b"bank-fill", False)]
        received = await receive_until(broker_account, on("carbonx/private/broker/fills", b"broker-fill"))
        assert describe(received) == [("carbonx/private/broker/fills", b"broker-fill", False)]


async def test_account_reading_the_whole_tree_gets_market_data_and_only_its_own_fills(broker):
    async with client(broker, "bank") as bank, client(broker, EXCHANGE) as exchange:
        await bank.subscribe("#", qos=1)
        await exchange.publish("carbonx/private/broker/fills", b"broker-fill", qos=1)
        await exchange.publish("carbonx/md/EUA/trades", b"trade", qos=1)
        await exchange.publish("carbonx/private/bank/fills", b"bank-fill", qos=1)
        received = await receive_until(bank, on("carbonx/private/bank/fills", b"bank-fill"))
        assert describe(received) == [
            ("carbonx/md/EUA/trades", b"trade", False),
            ("carbonx/private/bank/fills", b"bank-fill", False),
        ]


# -- persistence -------------------------------------------------------------------------------------


async def test_retained_market_data_survives_a_broker_restart(broker):
    async with client(broker, EXCHANGE) as exchange:
        await exchange.publish("carbonx/md/EUA/top", b"top-before-restart", qos=1, retain=True)
        await exchange.publish("carbonx/md/EUA/status", b"open", qos=1, retain=True)
        await exchange.publish("carbonx/md/EUA/trades", b"trade-before-restart", qos=1)

    await broker.arestart()  # SIGTERM: a clean shutdown, which saves the in-memory database
    assert (broker.data_dir / "mosquitto.db").is_file()

    async with client(broker, "bank") as late_joiner:
        await late_joiner.subscribe("carbonx/md/EUA/#", qos=1)
        received = await receive_until(
            late_joiner, lambda message, seen=set(): seen.add(message.topic.value) or len(seen) == 2
        )
        # Retained messages come back; the trade was never retained, so it is gone.
        assert sorted(describe(received)) == [
            ("carbonx/md/EUA/status", b"open", True),
            ("carbonx/md/EUA/top", b"top-before-restart", True),
        ]


# -- client ids ----------------------------------------------------------------------------------------


async def test_any_account_can_take_over_a_known_client_id(broker):
    """Documents a trap: mosquitto 2.0 lets a client of ANY user take over a connected client id.

    An account that connects with the exchange's client id disconnects the exchange's publisher, so
    the exchange must not use a fixed, guessable client id (aiomqtt's default, a random one, is
    safe). If this test starts failing, the broker has been configured against it (for example
    ``use_username_as_clientid true``): update config/mosquitto/README.md.
    """
    async with client(broker, EXCHANGE, identifier="carbonx-exchange") as exchange:
        await exchange.subscribe("carbonx/md/EUA/status", qos=1)
        async with client(broker, "bank", identifier="carbonx-exchange"):
            with pytest.raises(aiomqtt.MqttError):
                async with asyncio.timeout(TIMEOUT):
                    async for _message in exchange.messages:
                        pass
