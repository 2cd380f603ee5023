"""Queries: requests answered from the state, changing nothing.

How this works
--------------
The engine loop answers these in their place among a session's requests,
from the state as of that moment: an order's status and the account's open
orders and fills from the order tracker; balances, the book and primary
auctions from the engine's read API. Each answer is numbered for the
account like any other message (:meth:`gateway.pipeline.replies.Replies.answer`).
Pages (open orders, trades) are found by binary search and hold at most
``PAGE_SIZE`` entries, whatever the account holds.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable

from exchange import Engine, InvalidCommand, RejectCode, Side
from exchange.primary_auction import seed_hash
from gateway.config import AUTHORITY
from gateway.marketdata.feed import MarketDataFeed
from gateway.pipeline.commands import own_order
from gateway.pipeline.compliance_reports import position_rows
from gateway.pipeline.replies import Replies
from gateway.pipeline.reports import OrderTracker
from gateway.sessions.session import Session
from gateway.wire.messages import (
    AuctionStatusAnswer,
    Balance,
    BalancesAnswer,
    BookAnswer,
    CompliancePositionAnswer,
    Fill,
    FuturesPosition,
    OpenOrdersAnswer,
    OwnBid,
    PositionsAnswer,
    TradesAnswer,
)
from gateway.wire.protocol import (
    AuctionStatusRequest,
    BalancesRequest,
    BookRequest,
    CompliancePositionRequest,
    OpenOrdersRequest,
    OrderStatusRequest,
    PositionsRequest,
    TradesRequest,
)

MAX_BOOK_LEVELS = 100
PAGE_SIZE = 100  # entries in one answer to open_orders or trades (about 31 KiB at the most; PROTOCOL section 1)


def trade_id_of(fill: tuple) -> int:
    return fill[0]


class Queries:
    """Answers order status, balances, book, open orders, trades and auction status; see the module notes."""

    def __init__(self, engine: Engine, tracker: OrderTracker, feed: MarketDataFeed, replies: Replies) -> None:
        self.engine = engine
        self.tracker = tracker
        self.feed = feed
        self.replies = replies
        self.answers: dict[type, Callable[..., None]] = {
            OrderStatusRequest: self.order_status,
            BalancesRequest: self.balances,
            PositionsRequest: self.positions,
            BookRequest: self.book,
            OpenOrdersRequest: self.open_orders,
            TradesRequest: self.trades,
            AuctionStatusRequest: self.auction_status,
            CompliancePositionRequest: self.compliance_position,
        }

    def order_status(self, session: Session, request: OrderStatusRequest) -> None:
        try:
            view = own_order(self.tracker, session.account, request)
        except InvalidCommand as refused:
            self.replies.refuse(session, request, refused.code)
            return
        self.replies.answer(session, view.report("status", time.time_ns()), request)

    def balances(self, session: Session, request: BalancesRequest) -> None:
        account = self.engine.balances(session.account)
        balances = []
        if account is not None:
            balances.append(Balance("EUR", account.cash, account.reserved_cash, account.cash - account.reserved_cash))
            for symbol, units in account.units.items():
                held = account.reserved_units[symbol]
                balances.append(Balance(symbol, units, held, units - held))
        self.replies.answer(
            session,
            BalancesAnswer(
                account=session.account,
                balances=balances,
                blocked=account is not None and account.blocked,
                ts=time.time_ns(),
            ),
            request,
        )

    def positions(self, session: Session, request: PositionsRequest) -> None:
        """The account's futures positions and margin (none without futures)."""
        margin = self.engine.margin(session.account)
        balances = self.engine.balances(session.account)
        cash = 0 if balances is None else balances.cash
        entries = []
        if margin is not None:
            for position in margin.positions:
                instrument = self.engine.instrument(position.instrument)
                tick = 1 if instrument is None else instrument.tick_size
                price = position.settlement_price
                entries.append(
                    FuturesPosition(
                        position.instrument,
                        position.lots,
                        None if price is None else price // tick,
                        position.last_trading_day,
                        position.delivery_day,
                    )
                )
        self.replies.answer(
            session,
            PositionsAnswer(
                account=session.account,
                positions=entries,
                initial_margin=0 if margin is None else margin.initial_margin,
                maintenance_margin=0 if margin is None else margin.maintenance_margin,
                orders_hold=0 if margin is None else margin.orders_hold,
                cash=cash,
                margin_call=margin is not None and margin.margin_called,
                ts=time.time_ns(),
            ),
            request,
        )

    def book(self, session: Session, request: BookRequest) -> None:
        engine, symbol = self.engine, request.instrument
        instrument = engine.instrument(symbol)
        if instrument is None:
            self.replies.refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return
        if not 1 <= request.levels <= MAX_BOOK_LEVELS:
            self.replies.reject(
                session,
                request,
                RejectCode.INVALID_FIELD,
                f"{RejectCode.INVALID_FIELD.text}: levels from 1 to {MAX_BOOK_LEVELS}",
                "levels",
            )
            return
        tick = instrument.tick_size
        bids, asks = (
            [(price // tick, lots, orders) for price, lots, orders in engine.depth(symbol, side, request.levels)]
            for side in (Side.BUY, Side.SELL)
        )
        last_price = engine.last_price(symbol)
        self.replies.answer(
            session,
            BookAnswer(
                instrument=symbol,
                bids=bids,
                asks=asks,
                last_price=None if last_price is None else last_price // tick,
                ts=time.time_ns(),
            ),
            request,
        )

    def open_orders(self, session: Session, request: OpenOrdersRequest) -> None:
        """The account's open orders (resting, or stops waiting for their trigger), oldest first, a page at a
        time: ``more`` says whether a request with ``after`` the last order id would find more."""
        if request.instrument is not None and not self.engine.has_instrument(request.instrument):
            self.replies.refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return
        orders = self.tracker.open_orders.get(session.account, {})
        ts = time.time_ns()
        # The account's open orders are kept in order_id order (the order of acceptance): a page starts after a
        # binary search and stops at its size, whatever the account holds.
        ids = list(orders)
        start = 0 if request.after is None else bisect.bisect_right(ids, request.after)
        instrument = request.instrument
        page = itertools.islice(
            (
                orders[order_id]
                for order_id in itertools.islice(ids, start, None)
                if instrument is None or orders[order_id].instrument == instrument
            ),
            PAGE_SIZE + 1,
        )
        entries = [view.open_order() for view in page]
        more = len(entries) > PAGE_SIZE
        self.replies.answer(session, OpenOrdersAnswer(orders=entries[:PAGE_SIZE], more=more, ts=ts), request)

    def trades(self, session: Session, request: TradesRequest) -> None:
        """The account's fills since the last end of day, oldest first, a page at a time; ``complete`` is false
        when older fills of the day are no longer kept (the ledger's statement has them all)."""
        if request.instrument is not None and not self.engine.has_instrument(request.instrument):
            self.replies.refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return
        fills = self.tracker.fills.get(session.account, ())
        # Kept in trade_id order: a page starts after a binary search. A self-trade gives the account two fills
        # of one trade_id: they never go to different pages (``after`` names a trade, not a fill).
        start = 0 if request.after is None else bisect.bisect_right(fills, request.after, key=trade_id_of)
        instrument = request.instrument
        page: list[tuple] = []
        more = False
        for fill in itertools.islice(fills, start, None):
            if instrument is not None and fill[3] != instrument:
                continue
            if len(page) >= PAGE_SIZE and fill[0] != page[-1][0]:
                more = True  # the next page's first fill
                break
            page.append(fill)
        trades = [Fill(*fill) for fill in page]  # the tracker keeps a fill's fields in the entry's order
        self.replies.answer(
            session,
            TradesAnswer(
                trades=trades, more=more, complete=self.tracker.fills_complete(session.account), ts=time.time_ns()
            ),
            request,
        )

    def auction_status(self, session: Session, request: AuctionStatusRequest) -> None:
        """A primary auction as this account may see it: its terms and (once decided) its results for all; the
        account's own bids, and for the auctioneer how many bids are in (never whose or at what price)."""
        auction = self.engine.primary_auction(request.auction_id)
        if auction is None:
            self.replies.refuse(session, request, RejectCode.UNKNOWN_AUCTION)
            return
        tick = self.engine.instruments[auction.instrument].tick_size
        own = [
            OwnBid(bid.bid_id, bid.price // tick, bid.volume, bid.held)
            for bid in auction.bids
            if bid.account == session.account
        ]
        message = AuctionStatusAnswer(
            auction_id=auction.auction_id,
            instrument=auction.instrument,
            auctioneer=auction.auctioneer,
            volume=auction.volume,
            closes_at=auction.closes_at,
            seed_hash=seed_hash(auction.seed),
            status="open" if auction.outcome is None else "cleared" if auction.outcome == "cleared" else "cancelled",
            own_bids=own if auction.outcome is None else [],
            bids=len(auction.bids) if session.account == auction.auctioneer else None,
            result=self.feed.auction_results.get(auction.auction_id),
            ts=time.time_ns(),
        )
        self.replies.answer(session, message, request)

    def compliance_position(self, session: Session, request: CompliancePositionRequest) -> None:
        """An installation's compliance, year by year: its own; an authority's, any installation's or all."""
        authority = session.link is not None and session.link.config.kind == AUTHORITY
        account = request.account
        if account is None and not authority:
            account = session.account
        elif account is not None and account != session.account and not authority:
            self.replies.refuse(session, request, RejectCode.NOT_AUTHORISED)
            return
        if account is None and request.year is None:  # every installation's: one year at a time, in pages
            text = f"{RejectCode.INVALID_FIELD.text}: year, for every installation's rows"
            self.replies.reject(session, request, RejectCode.INVALID_FIELD, text, "year")
            return
        # One installation's rows are its years (a few dozen at most); every installation's come a page at a time.
        limit = None if account is not None else PAGE_SIZE + 1
        rows = position_rows(self.engine, account, request.year, request.after, limit)
        more = limit is not None and len(rows) == limit
        answer = CompliancePositionAnswer(rows=rows[:PAGE_SIZE] if more else rows, more=more, ts=time.time_ns())
        self.replies.answer(session, answer, request)
