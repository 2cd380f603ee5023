"""``carbonx auction``: EU ETS primary auctions on the exchange, as an auctioneer, a bidder or an operator.

How this works: one subcommand a request (open, bid, modify, withdraw, report; admit for operators), each a one-shot command
(:mod:`gateway.cli.one_shot`); a bid's price is read as the trading commands read prices
(:func:`gateway.cli.trading.euros`) before any secret is asked for. An auction's terms and results, and a
bid, are printed by :func:`gateway.cli.display.auction_summary` and :func:`~gateway.cli.display.bid_summary`.
"""

from __future__ import annotations

import argparse

from gateway.cli.display import auction_summary, bid_summary, describe_report
from gateway.cli.one_shot import REFUSED, add_trader, tick_sizes
from gateway.cli.trading import euros
from gateway.client import ExchangeClient


def _check_auction(args: argparse.Namespace) -> None:
    if getattr(args, "price", None) is not None:
        args.price = euros(args.price, "bid price")


async def _auction(client: ExchangeClient, args: argparse.Namespace) -> int:
    """The primary-auction subcommands: open (auctioneers), bid, modify, withdraw, report."""
    if args.auction_command == "open":
        answer = await client.open_auction(
            args.auction_id, args.instrument, args.volume, args.window, args.reserve_discount
        )
    elif args.auction_command == "bid":
        answer = await client.submit_bid(args.auction_id, args.bid_id, args.price, args.volume)
    elif args.auction_command == "modify":
        answer = await client.modify_bid(args.auction_id, args.bid_id, price=args.price, volume=args.volume)
    elif args.auction_command == "withdraw":
        answer = await client.withdraw_bid(args.auction_id, args.bid_id)
    elif args.auction_command == "admit":
        answer = await client.admit_bidder(args.account_admitted, not args.withdraw)
    else:
        answer = await client.auction_status(args.auction_id)
    if answer["type"] in ("request_rejected", "reject"):
        print(describe_report(answer, tick_sizes(client)))
        return REFUSED
    ticks = tick_sizes(client)
    if answer["type"] == "bidder_admission":
        state = "admitted to bid in primary auctions" if answer["admitted"] else "no longer admitted to bid"
        print(f"{answer['account']}: {state}")
    elif answer["type"] == "auction_status":
        print(auction_summary(answer, ticks))
    elif answer["type"] == "auction_report":
        print(auction_summary({**answer, "result": None}, ticks))
    else:
        print(bid_summary(answer, ticks[answer["instrument"]]))
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """auction open|bid|modify|withdraw|report."""
    auction = commands.add_parser(
        "auction",
        help="EU ETS primary auctions: open one (auctioneers), bid, modify "
        "or withdraw a bid, and report an auction's results",
    )
    auction_commands = auction.add_subparsers(dest="auction_command", required=True)
    opening = auction_commands.add_parser(
        "open",
        help="(auctioneer) offer allowances; bids are taken for --window seconds, then the auction clears by itself",
    )
    opening.add_argument("auction_id")
    opening.add_argument("instrument")
    opening.add_argument("volume", type=int, help="allowances, a multiple of 500")
    opening.add_argument(
        "--window", type=int, default=7200, help="seconds bids are taken (default: two hours, as EEX's 09:00-11:00)"
    )
    opening.add_argument(
        "--reserve-discount",
        type=int,
        help="basis points under the secondary-market price "
        "below which the auction is cancelled (default: the exchange's setting)",
    )
    bidding = auction_commands.add_parser("bid", help="a sealed bid")
    bidding.add_argument("auction_id")
    bidding.add_argument("bid_id")
    bidding.add_argument("price", help="euros, e.g. 70.25")
    bidding.add_argument("volume", type=int, help="allowances, a multiple of 500")
    modifying = auction_commands.add_parser("modify", help="change a bid's price and/or volume")
    modifying.add_argument("auction_id")
    modifying.add_argument("bid_id")
    modifying.add_argument("--price", help="euros")
    modifying.add_argument("--volume", type=int)
    withdrawing = auction_commands.add_parser("withdraw", help="withdraw a bid")
    withdrawing.add_argument("auction_id")
    withdrawing.add_argument("bid_id")
    reporting = auction_commands.add_parser(
        "report", help="an auction's terms, your bids, and once it is decided its results"
    )
    reporting.add_argument("auction_id")
    admitting = auction_commands.add_parser(
        "admit", help="(operator) admit an account to bid in primary auctions (--withdraw: withdraw its admission)"
    )
    admitting.add_argument("account_admitted", metavar="account")
    admitting.add_argument("--withdraw", action="store_true", help="withdraw the admission instead")
    for sub in (opening, bidding, modifying, withdrawing, reporting, admitting):
        add_trader(sub, _auction, _check_auction)
