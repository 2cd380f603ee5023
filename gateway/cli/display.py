"""Turning engine integers into text a trader reads: prices in euros, quantities in lots and tonnes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from exchange import Instrument
from exchange.instruments import cents_to_eur


def eur(cents: int | None) -> str:
    """Integer cents as a euro amount with two decimals ("70.05"); "-" for no price."""
    return "-" if cents is None else cents_to_eur(cents)


def tonnes(lots: int, instrument: Instrument) -> str:
    return f"{lots * instrument.lot_units:,} t"


def ladder(bids: Sequence[Sequence[int]], asks: Sequence[Sequence[int]], tick: int = 1) -> list[str]:
    """Depth as a price ladder: asks above (best at the bottom), bids below (best at the top).

    ``bids`` and ``asks`` are (price, lots, orders) levels, best first, as
    ``OrderBook.depth`` gives them in cents, or as the wire's ``book``
    message gives them in ticks (then ``tick`` is the tick in cents).
    """
    bids = [(price * tick, lots, orders) for price, lots, orders in bids]
    asks = [(price * tick, lots, orders) for price, lots, orders in asks]
    lines = [f"{'orders':>8} {'lots':>8} {'bid':>9} | {'ask':<9} {'lots':<8} {'orders':<8}"]
    for price, lots, orders in reversed(asks):
        lines.append(f"{'':>8} {'':>8} {'':>9} | {eur(price):<9} {lots:<8} {orders:<8}")
    for price, lots, orders in bids:
        lines.append(f"{orders:>8} {lots:>8} {eur(price):>9} | {'':<9} {'':<8} {'':<8}")
    if not asks and not bids:
        lines.append(f"{'(empty book)':^49}")
    return lines


def describe_report(message: dict, ticks: dict[str, int]) -> str:
    """One line a trader reads for a message from the exchange (execution report, reject, answer)."""
    kind = message.get("type")
    if kind == "execution_report":
        return _describe_execution(message, ticks.get(message.get("instrument") or "", 1))
    code = f"{message.get('code')} {message.get('text')}"
    if kind == "request_rejected":
        return f"{message.get('request')} refused: {code}"
    if kind == "reject":
        return f"{message.get('ref_type') or 'message'} refused by the session: {code}"
    if kind == "mass_cancel_report":
        where = message.get("instrument") or "all instruments"
        return f"mass cancel ({where}): {message.get('canceled_orders')} orders canceled"
    if kind == "tas_priced":
        side = "bought" if message["side"] == "B" else "sold"
        price = eur(message["price"] * ticks.get(message["contract"], 1))
        return f"TAS order {message['order_id']} ({message['client_order_id']}): {side} {message['quantity']} lots {message['contract']} at EUR {price}"
    if kind == "close_out_report":
        moved = ", ".join(f"{t['lots']:+,} lots {t['instrument']}" for t in message["transfers"]) or "no positions"
        return f"account {message['account']} closed out (blocked, orders canceled): {moved} to {message['to_account']}"
    if kind == "block_report":
        return block_summary(message, ticks)
    if kind == "kill_switch_report":
        state = "blocked, no new orders" if message.get("blocked") else "released, may trade again"
        canceled = message.get("canceled_orders")
        return f"kill switch: account {message.get('account')} {state}; {canceled} orders canceled"
    return str(message)


def _describe_execution(report: dict, tick: int) -> str:
    exec_type = report["exec_type"]
    name = f"order {report['order_id']} ({report['client_order_id']})"
    if exec_type == "rejected":
        return f"order ({report['client_order_id']}) rejected: {report['code']} {report['text']}"
    side = "buy" if report["side"] == "B" else "sell"
    price = "market" if report["price"] is None else f"EUR {eur(report['price'] * tick)}"
    fills = f"filled {report['cum_quantity']}/{report['quantity']}"
    if report["cum_quantity"]:
        fills += f" at avg EUR {report['avg_price']}"
    state = f"status {report['order_status']}, {fills}, open {report['leaves_quantity']}"
    if exec_type == "trade":
        return (
            f"{name} trade #{report['trade_id']}: {report['last_quantity']} lots @ EUR "
            f"{eur(report['last_price'] * tick)} as {report['liquidity']}, fee EUR {eur(report['fee'])}; {state}"
        )
    terms = f"{side} {report['quantity']} lots {report['instrument']} @ {price} {report['time_in_force']}"
    if report.get("stop_price") is not None:
        terms += f", stop EUR {eur(report['stop_price'] * tick)}"
    if report.get("display_quantity") is not None:
        terms += f", showing {report['display_quantity']}"
    extra = ""
    if exec_type == "canceled":
        extra = f" ({report.get('reason')})"
    elif exec_type == "replaced":
        extra = " (priority kept)" if report.get("priority_kept") else " (priority lost)"
    elif exec_type == "triggered":
        extra = f" (last trade EUR {eur(report['trigger_price'] * tick)})"
    return f"{name} {exec_type}{extra}: {terms}; {state}"


def auction_summary(status: dict, ticks: dict[str, int]) -> str:
    """A primary auction's terms, the account's own bids and, once it is decided, its published results."""
    tick = ticks[status["instrument"]]
    lines = [
        f"auction {status['auction_id']}: {status['volume']:,} {status['instrument']} offered by "
        f"{status['auctioneer']}, {status['status']}",
        f"  bids taken until {_clock(status['closes_at'])}; seed hash {status['seed_hash']}",
    ]
    if status.get("carried_in"):
        lines.append(f"  of which {status['carried_in']:,} carried over from cancelled auctions")
    if status.get("bids") is not None:
        lines.append(f"  bids received: {status['bids']}")
    for bid in status.get("own_bids", []):
        lines.append(
            f"  your bid {bid['bid_id']}: {bid['volume']:,} at EUR {eur(bid['price'] * tick)}, "
            f"holding EUR {eur(bid['held'])}"
        )
    result = status.get("result")
    if result is not None:
        if result["status"] == "cleared":
            lines.append(
                f"  cleared at EUR {eur(result['clearing_price'] * tick)}: {result['volume']:,} sold for "
                f"EUR {eur(result['proceeds'])}"
            )
        else:
            price = result["clearing_price"]
            lines.append(
                f"  cancelled ({result['reason']}): would have cleared at "
                f"{'-' if price is None else 'EUR ' + eur(price * tick)}, reserve EUR "
                f"{eur(result['reserve_price'] * tick)}; carried over: "
                + ", ".join(f"{volume:,}" for volume in result["carried_over"])
            )
        lines.append(
            f"  total bids {result['total_bid_volume']:,} (cover ratio {result['cover_ratio']}), "
            f"bidders {result['bidders']}"
            + (f", successful {result['successful_bidders']}" if "successful_bidders" in result else "")
        )
        lines.append(f"  seed {result['seed']}")
    return "\n".join(lines)


def bid_summary(report: dict, tick: int) -> str:
    """One bid_report as a line."""
    status = report["status"]
    head = f"bid {report['bid_id']} in auction {report['auction_id']}: {status}"
    if status in ("placed", "modified"):
        return f"{head}, {report['volume']:,} at EUR {eur(report['price'] * tick)} (EUR {eur(report['held'])} held)"
    if status == "withdrawn":
        return f"{head} (EUR {eur(report['released'])} released)"
    if status == "allocated":
        return (
            f"{head}: {report['allocated']:,} of {report['volume']:,} at EUR "
            f"{eur(report['clearing_price'] * tick)}, EUR {eur(report['amount'])} paid"
        )
    return head


def block_summary(report: dict, ticks: dict[str, int]) -> str:
    """One block_report as a line."""
    status, kind = report["status"], report.get("kind", "block")
    head = f"{kind} {report['block_id']} with {report['counterparty']}"
    if status == "lapsed":
        code = report.get("code")
        why = "the day ended before the other side reported" if code is None else f"void: check {code} failed"
        return f"{head} on {report['instrument']}: lapsed ({why})"
    tick = ticks.get(report["instrument"], 1)
    side = "buy" if report["side"] == "B" else "sell"
    terms = f"{side} {report['quantity']} lots {report['instrument']} @ EUR {eur(report['price'] * tick)}"
    if report.get("physical_price") is not None:
        underlying_tick = ticks.get(report["instrument"][:-3], 1)
        terms += f" against the underlying @ EUR {eur(report['physical_price'] * underlying_tick)}"
    if status == "traded":
        return f"{head}: traded #{report['trade_id']}, {terms}, fee EUR {eur(report['fee'])}"
    waiting = "waiting for the other side" if status == "reported" else "reported by the other side: report yours"
    return f"{head}: {status} ({waiting}), {terms}"


def _clock(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
