"""A trader's commands: orders (order, cancel, status, replace, mass-cancel), what the account has (orders,
trades, balances), the market (book, and md: a live view of the market data).

How this works: each command but md is a one-shot (:mod:`gateway.cli.one_shot`): its check runs on the
arguments before any secret is asked for (a price is read here, once, as the protocol reads it:
:func:`euros`), then its action runs on a logged-on session and prints one line a report. md follows the
feed of an MQTT broker, or of a market-data session when no broker is configured (:mod:`gateway.cli.md_view`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from decimal import Decimal, InvalidOperation

from exchange.clearing.contracts import MONTH_CODES
from exchange.clearing.tas import TAS_SUFFIX
from exchange.instruments import cents_to_eur, eur_to_cents
from gateway.cli.display import describe_report, eur, ladder
from gateway.cli.one_shot import (
    CONNECTION,
    REFUSED,
    USAGE,
    UsageError,
    add_session,
    add_trader,
    print_answers,
    session_target,
    tick_sizes,
)
from gateway.client import ExchangeClient, RequestRefused, SessionClosed
from gateway.config import load_instruments, load_server_config

SIDES = {"buy": "B", "b": "B", "sell": "S", "s": "S"}
MAX_PRICE = Decimal(10) ** 12  # a price has at most 12 digits before the point (docs/PROTOCOL.md, section 3)


def is_spread(symbol: str) -> bool:
    """A calendar spread's symbol: two month codes with their years at the end (EUAZ26Z27)."""
    tail = symbol[-6:]
    return len(symbol) > 6 and tail[0] in MONTH_CODES and tail[3] in MONTH_CODES and (tail[1:3] + tail[4:]).isdigit()


def euros(text: str | None, what: str = "price", signed: bool = False) -> str | None:
    """A price as typed, in euros ("70.25"), checked and written as the protocol reads it ("70.25"); a
    :class:`UsageError` saying what is wrong with it: not a number, negative, zero, a fraction of a cent, too
    large. (Whether it is on the instrument's tick is known after logon: :func:`_check_tick`.)"""
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise UsageError(f"{what} {text!r} is not a number: write it in euros with a dot, e.g. 70.25")
    if amount < 0 and not signed:
        raise UsageError(f"{what} {text} is negative: a price is above zero, in euros, e.g. 70.25")
    if amount == 0 and not signed:
        raise UsageError(f"{what} {text} is zero: a price is above zero, in euros, e.g. 70.25")
    if abs(amount) >= MAX_PRICE:
        raise UsageError(f"{what} {text} is too large: at most 12 digits before the decimal point")
    if amount * 100 != (amount * 100).to_integral_value():
        raise UsageError(
            f"{what} {text} has too many decimals: prices are whole cents, at most 2 decimals (e.g. 70.25)"
        )
    return f"{amount:.2f}"


def _check_tick(client: ExchangeClient, instrument: str, price: str | None, what: str = "price") -> None:
    """A price (checked by :func:`euros`) must be a multiple of the instrument's tick (from the logon); an
    unknown instrument is left for the exchange to refuse."""
    tick = tick_sizes(client).get(instrument)
    if price is None or tick is None:
        return
    cents = eur_to_cents(price)
    if cents % tick:
        below = cents - cents % tick
        nearest = f"prices are {eur(below)} and {eur(below + tick)}" if below else f"price is {eur(below + tick)}"
        raise UsageError(f"{what} {price} is not on {instrument}'s tick of EUR {eur(tick)}: the nearest {nearest}")


def _check_lots(value: int | None, what: str = "quantity") -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{what} {value} is not above zero: a whole number of lots (1 lot = 1,000 t)")


def _check_order(args: argparse.Namespace) -> None:
    if args.side.lower() not in SIDES:
        raise UsageError(f"side must be buy or sell, not {args.side!r}")
    _check_lots(args.quantity)
    _check_lots(args.display, "--display")
    if args.instrument.endswith(TAS_SUFFIX) and args.price is not None:  # a TAS book: ticks from the settlement
        try:
            args.price = int(args.price)
        except ValueError:
            raise UsageError(
                f"a TAS price is whole ticks either side of the settlement price (-2, 0, 3), not {args.price!r}"
            ) from None
    else:  # (a calendar spread's price may be zero or below: the near month's less the far one's)
        args.price = euros(args.price, signed=is_spread(args.instrument))
    args.stop = euros(args.stop, "stop price")


async def _order(client: ExchangeClient, args: argparse.Namespace) -> int:
    if not isinstance(args.price, int):  # (a TAS offset is ticks: on the tick)
        _check_tick(client, args.instrument, args.price)
    _check_tick(client, args.instrument, args.stop, "stop price")
    order_type = args.type or ("LIMIT" if args.price is not None else "MARKET")
    first = await client.new_order(
        args.instrument,
        SIDES[args.side.lower()],
        args.quantity,
        args.price,
        client_order_id=args.clid,
        order_type=order_type,
        time_in_force=args.tif,
        display_quantity=args.display,
        stop_price=args.stop,
        post_only=args.post_only or None,
        expire_date=args.expire_date,
        self_trade_prevention=args.stp,
    )
    return await print_answers(client, first, args.wait)


def _check_block(args: argparse.Namespace) -> None:
    if args.side.lower() not in SIDES:
        raise UsageError(f"side {args.side!r} is buy or sell")
    _check_lots(args.quantity)
    args.price = euros(args.price)
    args.efp = euros(args.efp, "physical price")


async def _block(client: ExchangeClient, args: argparse.Namespace) -> int:
    """``carbonx block``: one side of a block trade or EFP; the other side reports it too."""
    _check_tick(client, args.instrument, args.price)
    first = await client.report_block(
        args.id,
        args.counterparty,
        args.instrument,
        SIDES[args.side.lower()],
        args.quantity,
        args.price,
        physical_price=args.efp,
    )
    return await print_answers(client, first, args.wait)


def _check_reference(args: argparse.Namespace) -> None:
    """The order is named by its id or by its client order id: one of the two."""
    if (args.order_id is None) == (args.clid is None):
        by_id = "--order-id" if args.command == "replace" else "its order id"
        raise UsageError(f"name the order by {by_id} or by --clid: one of the two")


def _reference(args: argparse.Namespace) -> dict:
    return {"order_id": args.order_id, "client_order_id": args.clid}


async def _cancel(client: ExchangeClient, args: argparse.Namespace) -> int:
    return await print_answers(client, await client.cancel(**_reference(args)), args.wait)


async def _status(client: ExchangeClient, args: argparse.Namespace) -> int:
    return await print_answers(client, await client.order_status(**_reference(args)), 0)


def _check_replace(args: argparse.Namespace) -> None:
    _check_reference(args)
    if args.quantity is None and args.price is None:
        raise UsageError("give the new --quantity, the new --price, or both")
    _check_lots(args.quantity)
    args.price = euros(args.price)


async def _replace(client: ExchangeClient, args: argparse.Namespace) -> int:
    first = await client.replace(**_reference(args), quantity=args.quantity, price=args.price)
    return await print_answers(client, first, args.wait)


async def _mass_cancel(client: ExchangeClient, args: argparse.Namespace) -> int:
    """Cancel the account's orders (on one instrument, or all): a line per order canceled, then the count."""
    ticks = tick_sizes(client)
    request_id = client.send({"type": "mass_cancel", "instrument": args.instrument})
    async for message in client.messages():
        if message.get("request_id") != request_id:
            continue
        print(describe_report(message, ticks))
        if message["type"] == "mass_cancel_report":
            return 0
        if message["type"] in ("request_rejected", "reject"):
            return REFUSED
    raise client.closed or SessionClosed("the session ended before the mass cancel was reported")


async def _orders(client: ExchangeClient, args: argparse.Namespace) -> int:
    """The account's open orders, oldest first: a line each, then the count."""
    ticks = tick_sizes(client)
    try:
        orders = await client.open_orders(args.instrument)
    except RequestRefused as refused:
        print(describe_report(refused.answer, ticks))
        return REFUSED
    for order in orders:
        tick = ticks[order["instrument"]]
        price = "market" if order["price"] is None else f"EUR {eur(order['price'] * tick)}"
        stop = "" if order["stop_price"] is None else f" stop EUR {eur(order['stop_price'] * tick)}"
        print(
            f"order {order['order_id']} ({order['client_order_id']}) {order['instrument']} {order['side']} "
            f"{order['leaves_quantity']} of {order['quantity']} lots at {price}{stop} {order['time_in_force']} "
            f"{order['order_status']}"
        )
    print(f"{len(orders)} open order{'s' if len(orders) != 1 else ''}")
    return 0


async def _trades(client: ExchangeClient, args: argparse.Namespace) -> int:
    """The account's fills since the last end of day, oldest first, then the totals."""
    ticks = tick_sizes(client)
    try:
        fills, complete = await client.trades(args.instrument)
    except RequestRefused as refused:
        print(describe_report(refused.answer, ticks))
        return REFUSED
    fees = 0
    for fill in fills:
        fees += fill["fee"]
        price = fill["price"] * ticks[fill["instrument"]]
        print(
            f"trade {fill['trade_id']} order {fill['order_id']} ({fill['client_order_id']}) {fill['instrument']} "
            f"{'bought' if fill['side'] == 'B' else 'sold'} {fill['quantity']} lots at EUR {eur(price)} "
            f"{fill['liquidity']}, fee EUR {eur(fill['fee'])}"
        )
    print(
        f"{len(fills)} trade{'s' if len(fills) != 1 else ''} today, fees EUR {eur(fees)}"
        + ("" if complete else " (only the newest are kept: the statement has them all)")
    )
    return 0


async def _book(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.book(args.instrument, args.levels)
    if answer["type"] != "book":
        print(describe_report(answer, tick_sizes(client)))
        return REFUSED
    tick = tick_sizes(client)[args.instrument]
    last = None if answer["last_price"] is None else answer["last_price"] * tick
    print(f"{args.instrument}  last EUR {eur(last)}")
    for line in ladder(answer["bids"], answer["asks"], tick):
        print("    " + line)
    return 0


async def _balances(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.balances()
    blocked = "  BLOCKED by the kill switch" if answer.get("blocked") else ""
    print(f"account {answer['account']}{blocked}")
    print(f"    {'asset':<6} {'holding':>20} {'held by orders':>20} {'available':>20}")
    for entry in answer["balances"]:
        if entry["asset"] == "EUR":
            cells = [f"EUR {cents_to_eur(entry[key], thousands=True)}" for key in ("holding", "held", "available")]
        else:
            cells = [f"{entry[key]:,} t" for key in ("holding", "held", "available")]
        print(f"    {entry['asset']:<6} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}")
    return 0


async def _positions(client: ExchangeClient, args: argparse.Namespace) -> int:
    """``carbonx positions``: each futures contract held, net lots and the last settlement price."""
    answer = await client.positions()
    ticks = tick_sizes(client)
    print(f"account {answer['account']}")
    if not answer["positions"]:
        print("    no futures positions")
    for entry in answer["positions"]:
        tick = ticks.get(entry["instrument"], 1)
        price = entry["settlement_price"]
        settled = "not settled yet" if price is None else f"settled EUR {eur(price * tick)}"
        print(
            f"    {entry['instrument']:<8} {entry['lots']:>+8,} lots  {settled:<24} last trading day "
            f"{entry['last_trading_day']}, delivery {entry['delivery_day']}"
        )
    return 0


async def _margin(client: ExchangeClient, args: argparse.Namespace) -> int:
    """``carbonx margin``: the futures margin the account's positions take against its cash."""
    answer = await client.positions()
    call = "  MARGIN CALL: new futures orders are refused until a deposit covers it" if answer["margin_call"] else ""
    print(f"account {answer['account']}{call}")
    for label, key in (
        ("cash", "cash"),
        ("initial margin", "initial_margin"),
        ("maintenance margin", "maintenance_margin"),
        ("held by orders", "orders_hold"),
    ):
        print(f"    {label:<20} EUR {cents_to_eur(answer[key], thousands=True):>20}")
    excess = answer["cash"] - answer["initial_margin"] - answer["orders_hold"]
    print(f"    {'excess':<20} EUR {cents_to_eur(excess, thousands=True):>20}")
    return 0


# -- market data ----------------------------------------------------------------------------------------


def _md_command(args: argparse.Namespace) -> int:
    """Follow the market data of the instruments named until --seconds pass or Ctrl-C; the viewer (and with it
    aiomqtt) is imported only for this command."""
    from gateway.cli.md_view import MarketView, mqtt_feed, run_view, socket_feed
    from gateway.marketdata.mqtt import broker_tls_context

    config = load_server_config(args.exchange_config)
    instruments = load_instruments(args.instruments)
    unknown = [symbol for symbol in args.symbols if symbol not in instruments]
    if unknown:
        print(f"carbonx md: unknown instrument {unknown[0]} (known: {', '.join(instruments)})", file=sys.stderr)
        return USAGE
    mqtt_url = args.mqtt_url if args.mqtt_url is not None else config.mqtt_url
    if mqtt_url:
        ca_file = args.mqtt_ca_file if args.mqtt_ca_file is not None else config.mqtt_ca_file
        feed = mqtt_feed(mqtt_url, args.symbols, broker_tls_context(mqtt_url, ca_file, "--mqtt-ca-file"))
        where = "the MQTT broker"
    else:  # no broker: the feed on the gateway socket
        target = session_target(args, config)
        if target is None:
            return USAGE
        feed = socket_feed(
            target.host, target.port, target.account, target.secret, args.symbols, target.tls, target.server_name
        )
        where = "the gateway"
    view = MarketView(args.symbols, {symbol: instruments[symbol].tick_size for symbol in args.symbols})
    try:
        asyncio.run(run_view(feed, view, sys.stdout, seconds=args.seconds, interval=args.interval))
    except (ConnectionError, OSError, ValueError) as error:  # aiomqtt.MqttError is an Exception: see below
        print(f"carbonx md: no feed from {where}: {error}", file=sys.stderr)
        return CONNECTION
    except Exception as error:  # noqa: BLE001 - aiomqtt reports a refused or lost broker as MqttError
        if type(error).__module__.startswith("aiomqtt"):
            print(f"carbonx md: no feed from {where}: {error}", file=sys.stderr)
            return CONNECTION
        raise
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """order, cancel, status, replace, mass-cancel, orders, trades, book, balances and md."""
    order = commands.add_parser("order", help="send one order; it stays in the book after the command ends")
    order.add_argument("side", help="buy or sell")
    order.add_argument("quantity", type=int, help="lots (1 lot = 1,000 t)")
    order.add_argument("instrument", help="EUA, CER, ERU, ...")
    order.add_argument("price", nargs="?", help="limit price in euros (70.25); leave out for a market order")
    order.add_argument("--type", choices=("LIMIT", "MARKET"), help="default: LIMIT with a price, else MARKET")
    order.add_argument("--tif", choices=("GTC", "DAY", "IOC", "FOK", "GTD"), help="time in force (default GTC)")
    order.add_argument("--display", type=int, help="iceberg: lots shown at a time")
    order.add_argument("--stop", help="stop price in euros: the order waits until the last trade reaches it")
    order.add_argument("--post-only", action="store_true", help="refuse the order if it would trade on entry")
    order.add_argument("--expire-date", type=int, help="GTD: YYYYMMDD")
    order.add_argument(
        "--stp",
        choices=("NONE", "CANCEL_RESTING", "CANCEL_TAKING", "CANCEL_BOTH"),
        help="self-trade prevention (default: the account's)",
    )
    order.add_argument("--clid", help="client order id (default: a new one)")
    order.add_argument("--wait", type=float, default=0.3, help="seconds to wait for fills (default 0.3)")
    add_trader(order, _order, _check_order)

    block = commands.add_parser(
        "block", help="report one side of a futures block trade (or an EFP) agreed with another account"
    )
    block.add_argument("side", help="buy or sell: this account's side of the futures")
    block.add_argument("quantity", type=int, help="lots (at least the contract's minimum block, EUA: 50)")
    block.add_argument("instrument", help="a futures contract, e.g. EUAZ27")
    block.add_argument("price", help="the agreed futures price in euros (72.30)")
    block.add_argument("--counterparty", required=True, help="the account on the other side")
    block.add_argument("--id", required=True, help="the block id both sides report")
    block.add_argument("--efp", help="an EFP: the price of the underlying the futures buyer delivers, in euros")
    block.add_argument("--wait", type=float, default=0.3, help="seconds to wait for the trade (default 0.3)")
    add_trader(block, _block, _check_block)

    for name, action, text in (("cancel", _cancel, "cancel an order"), ("status", _status, "an order's status")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("order_id", type=int, nargs="?", help="the exchange's order id")
        sub.add_argument("--clid", help="the client order id instead")
        sub.add_argument("--wait", type=float, default=0.2, help=argparse.SUPPRESS)
        add_trader(sub, action, _check_reference)

    replace = commands.add_parser(
        "replace",
        help="change an order's quantity and/or price (a new price, or a larger quantity, loses its time priority)",
    )
    replace.add_argument("--order-id", type=int, help="the exchange's order id")
    replace.add_argument("--clid", help="the client order id instead")
    replace.add_argument("--quantity", type=int, help="the new total quantity in lots, what is filled included")
    replace.add_argument("--price", help="the new limit price in euros (70.25)")
    replace.add_argument("--wait", type=float, default=0.3, help="seconds to wait for fills (default 0.3)")
    add_trader(replace, _replace, _check_replace)

    mass_cancel = commands.add_parser(
        "mass-cancel", help="cancel all the account's orders (resting and stops), or those on one instrument"
    )
    mass_cancel.add_argument("instrument", nargs="?", help="only this instrument's orders (default: all)")
    add_trader(mass_cancel, _mass_cancel)

    orders = commands.add_parser("orders", help="the account's open orders (resting, and stops waiting)")
    orders.add_argument("instrument", nargs="?", help="only this instrument's orders (default: all)")
    add_trader(orders, _orders)

    trades = commands.add_parser("trades", help="the account's trades since the last end of day")
    trades.add_argument("instrument", nargs="?", help="only this instrument's trades (default: all)")
    add_trader(trades, _trades)

    book = commands.add_parser("book", help="an instrument's book")
    book.add_argument("instrument")
    book.add_argument("--levels", type=int, default=10, help="price levels a side (1-100)")
    add_trader(book, _book)

    balances = commands.add_parser("balances", help="the account's cash and units")
    add_trader(balances, _balances)

    positions = commands.add_parser("positions", help="the account's futures positions")
    add_trader(positions, _positions)

    margin = commands.add_parser("margin", help="the futures margin the account's positions take")
    add_trader(margin, _margin)

    md = commands.add_parser("md", help="a live view of the market data: books, trades, statistics")
    md.add_argument("symbols", nargs="+", metavar="INSTRUMENT")
    md.add_argument(
        "--mqtt-url",
        help="follow the feed on this broker (mqtt://user:password@host:port, or mqtts:// for TLS); "
        "default: exchange.toml's mqtt_url, or the gateway socket if that is empty",
    )
    md.add_argument(
        "--mqtt-ca-file",
        metavar="FILE",
        help="mqtts://: the CA certificate (PEM) the broker's certificate is checked against "
        "(default: exchange.toml's mqtt_ca_file, else the system's trusted CAs)",
    )
    md.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    md.add_argument("--interval", type=float, default=0.5, help="seconds between redraws")
    add_session(md)
    md.set_defaults(run=_md_command)
