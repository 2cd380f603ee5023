"""EU ETS primary auctions: single-round, sealed-bid, uniform-price (the Auctioning Regulation, DOMAIN.md).

How this works
--------------
An auctioneer (a member state's account) opens an auction of a volume of
allowances with ``OpenPrimaryAuction``; the allowances it offers are held
back from its available units at once. Until ``closes_at`` (compared with
each command's own ``ts``: the engine reads no clock) bidders submit,
modify and withdraw sealed bids of multiples of 500 allowances at a price in
cents; each bid holds back ``price x volume`` of the bidder's cash. Bids are
seen only by their bidder: their events name the bidder, and the gateway
sends them to nobody else.

After the window, ``ClearPrimaryAuction`` decides, as the regulation says:

1. bids are sorted by price, highest first; bids at the same price in a
   random order drawn from the auction's seed: by SHA-256 of the seed and
   the bid's arrival number (so the order is fixed when the auction opens,
   and anyone given the seed can recompute it);
2. the clearing price is the price of the bid at which the running total
   of volume reaches the volume offered; every winning bid pays that price,
   and the bid that completes the volume gets the remainder (in part, not
   pro rata);
3. the auction is cancelled if the bids total less than the volume
   (``undersubscribed``), or if the clearing price is below the reserve
   price: ``reserve_discount_bps`` under the instrument's secondary-market
   reference (its last trade, else its configured reference)
   (``below_reserve``). The volume of a cancelled auction is spread over
   the auctioneer's next four auctions of the instrument (in multiples of
   500, the first ones getting any remainder).

Delivery is at the clearing: each winner pays ``clearing price x allowances``
from the cash its bid held back (the rest of the hold is released) and
receives the allowances; the auctioneer delivers them from its held units and
receives the proceeds. A cancelled auction releases every hold. The
settlement module follows the same events (``BidResult``,
``PrimaryAuctionCleared``).

A handler that finds a rule broken changes nothing and returns its code; the
engine answers with a ``RequestRejected`` (requests ``open_auction``,
``submit_bid``, ``modify_bid``, ``withdraw_bid``, ``clear_auction``; a bid's
id in its ``client_order_id``, see :mod:`exchange.refusals`) with a code from
the 8xx range, or the shared 101, 201, 202, 203, 206. Accounts, instruments
and reference prices are reached through the engine's public hooks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .codes import RejectCode
from .commands import (
    BID_LOT,
    AdmitBidder,
    ClearPrimaryAuction,
    ModifyBid,
    OpenPrimaryAuction,
    SubmitBid,
    WithdrawBid,
)
from .events import (
    BidderAdmitted,
    BidPlaced,
    BidResult,
    BidWithdrawn,
    PrimaryAuctionCancelled,
    PrimaryAuctionCleared,
    PrimaryAuctionOpened,
)

if TYPE_CHECKING:
    from .accounts import Account
    from .engine import Engine

CARRY_OVER_AUCTIONS = 4  # a cancelled auction's volume goes to the next four (the Auctioning Regulation)
UNDERSUBSCRIBED = "undersubscribed"
BELOW_RESERVE = "below_reserve"


class Bid:
    __slots__ = ("number", "account", "bid_id", "price", "volume", "fee_per_lot")

    def __init__(
        self, number: int, account: str, bid_id: str | int, price: int, volume: int, fee_per_lot: int = 0
    ) -> None:
        self.number = number  # arrival order in the auction: what the seed shuffles at equal prices
        self.account = account
        self.bid_id = bid_id
        self.price = price  # cents per allowance
        self.volume = volume  # allowances
        self.fee_per_lot = fee_per_lot  # the auction's fee, cents per lot of 500 won

    @property
    def held(self) -> int:
        """What the bid holds of the bidder's cash: the allowances at its price and the fee on every lot."""
        return self.price * self.volume + self.fee_per_lot * (self.volume // BID_LOT)


class PrimaryAuction:
    __slots__ = (
        "auction_id",
        "auctioneer",
        "instrument",
        "volume",
        "carried_in",
        "closes_at",
        "seed",
        "reserve_discount_bps",
        "admitted_only",
        "fee_per_lot",
        "bids",
        "bid_ids",
        "bids_received",
        "outcome",
    )

    def __init__(self, cmd: OpenPrimaryAuction, volume: int, carried_in: int) -> None:
        self.auction_id = cmd.auction_id
        self.auctioneer = cmd.auctioneer
        self.instrument = cmd.instrument
        self.volume = volume
        self.carried_in = carried_in
        self.closes_at = cmd.closes_at
        self.seed = cmd.seed
        self.reserve_discount_bps = cmd.reserve_discount_bps
        self.admitted_only = cmd.admitted_only
        self.fee_per_lot = cmd.fee_per_lot
        self.bids: dict[tuple[str, str | int], Bid] = {}  # open bids by (account, bid id)
        self.bid_ids: set[tuple[str, str | int]] = set()  # every (account, bid id) ever taken: withdrawn ones too
        self.bids_received = 0  # bids ever taken (numbers them; withdrawn ones keep theirs)
        self.outcome: str | None = None  # None while open; "cleared", UNDERSUBSCRIBED or BELOW_RESERVE


def tie_key(seed: str, number: int) -> bytes:
    """Where a bid goes among bids at its price: SHA-256 of the seed and its arrival number."""
    return hashlib.sha256(f"{seed}:{number}".encode()).digest()


def seed_hash(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def allocate(bids: Iterable[Bid], volume: int, seed: str) -> tuple[int | None, list[tuple[Bid, int]]]:
    """The clearing price and each bid's allocation, in ranking order; (None, []) if the bids fall short."""
    ranked = sorted(bids, key=lambda bid: (-bid.price, tie_key(seed, bid.number)))
    if sum(bid.volume for bid in ranked) < volume:
        return None, [(bid, 0) for bid in ranked]
    remaining = volume
    clearing_price = None
    out = []
    for bid in ranked:
        allocated = min(bid.volume, remaining)
        remaining -= allocated
        if allocated and not remaining:
            clearing_price = bid.price  # the bid at which the running total reaches the volume
        out.append((bid, allocated))
    return clearing_price, out


def spread_carry_over(volume: int) -> tuple[int, ...]:
    """A cancelled auction's volume over the next auctions, in multiples of BID_LOT, earlier ones first."""
    lots, extra = divmod(volume // BID_LOT, CARRY_OVER_AUCTIONS)
    return tuple((lots + (1 if index < extra else 0)) * BID_LOT for index in range(CARRY_OVER_AUCTIONS))


class PrimaryAuctions:
    """Every primary auction of the engine, and the volume waiting to be carried over (module notes)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._counters = engine.counters  # numbers the events
        self.auctions: dict[str, PrimaryAuction] = {}
        # (auctioneer, instrument) -> volume to add to each of its next auctions, the next one first
        self.carry_over: dict[tuple[str, str], list[int]] = {}
        self.admitted: set[str] = set()  # accounts admitted to bid where an auction takes admitted bidders only

    def admit(self, cmd: AdmitBidder, events: list) -> RejectCode | None:
        if self._engine.holding_account(cmd.account) is None:
            return RejectCode.UNKNOWN_ACCOUNT
        if cmd.admitted:
            self.admitted.add(cmd.account)
        else:
            self.admitted.discard(cmd.account)  # (its bids already in stay: an admission is checked on bidding)
        events.append(BidderAdmitted(self._counters.next_seq(), cmd.ts, cmd.account, cmd.admitted))
        return None

    # -- commands ---------------------------------------------------------------------------------

    def open(self, cmd: OpenPrimaryAuction, events: list) -> RejectCode | None:
        engine = self._engine
        account = engine.holding_account(cmd.auctioneer)
        if not engine.has_instrument(cmd.instrument):
            return RejectCode.UNKNOWN_INSTRUMENT
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT
        if cmd.auction_id in self.auctions:
            return RejectCode.AUCTION_ID_IN_USE
        if account.blocked:
            return RejectCode.ACCOUNT_BLOCKED
        if cmd.closes_at <= cmd.ts:  # a window that is over before it opens could take no bid
            return RejectCode.BIDDING_CLOSED
        key = (cmd.auctioneer, cmd.instrument)
        waiting = self.carry_over.get(key)
        carried_in = waiting[0] if waiting else 0
        volume = cmd.volume + carried_in
        symbol = cmd.instrument
        if volume > account.units[symbol] - account.reserved_units[symbol]:
            return RejectCode.INSUFFICIENT_UNITS
        if waiting:
            rest = waiting[1:]
            if any(rest):
                self.carry_over[key] = rest
            else:
                del self.carry_over[key]
        account.reserved_units[symbol] += volume
        self.auctions[cmd.auction_id] = PrimaryAuction(cmd, volume, carried_in)
        events.append(
            PrimaryAuctionOpened(
                self._counters.next_seq(),
                cmd.ts,
                cmd.auction_id,
                cmd.auctioneer,
                symbol,
                volume,
                carried_in,
                cmd.closes_at,
                seed_hash(cmd.seed),
                cmd.reserve_discount_bps,
            )
        )
        return None

    def _bidding(self, cmd: SubmitBid | ModifyBid | WithdrawBid) -> tuple[PrimaryAuction, Account] | RejectCode:
        """The auction a bid command names and the bidder's account, if the auction still takes bids from it;
        else the rule the command breaks."""
        account = self._engine.holding_account(cmd.account)
        auction = self.auctions.get(cmd.auction_id)
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT
        if auction is None:
            return RejectCode.UNKNOWN_AUCTION
        if auction.outcome is not None or cmd.ts >= auction.closes_at:
            return RejectCode.BIDDING_CLOSED
        if account.blocked:
            return RejectCode.ACCOUNT_BLOCKED
        if cmd.account == auction.auctioneer:
            return RejectCode.AUCTIONEER_MAY_NOT_BID
        if auction.admitted_only and cmd.account not in self.admitted and cmd.__class__ is not WithdrawBid:
            return RejectCode.BIDDER_NOT_ADMITTED
        return auction, account

    def submit_bid(self, cmd: SubmitBid, events: list) -> RejectCode | None:
        bidding = self._bidding(cmd)
        if isinstance(bidding, RejectCode):
            return bidding
        auction, account = bidding
        if (cmd.account, cmd.bid_id) in auction.bid_ids:
            return RejectCode.DUPLICATE_BID_ID
        code = self._check_price(cmd.price, auction)
        if code is not None:
            return code
        bid = Bid(auction.bids_received + 1, cmd.account, cmd.bid_id, cmd.price, cmd.volume, auction.fee_per_lot)
        held = bid.held
        if held > account.cash - account.reserved_cash:
            return RejectCode.INSUFFICIENT_CASH
        account.reserved_cash += held
        auction.bids_received += 1
        auction.bid_ids.add((cmd.account, cmd.bid_id))
        auction.bids[(cmd.account, cmd.bid_id)] = bid
        events.append(
            BidPlaced(
                self._counters.next_seq(),
                cmd.ts,
                cmd.auction_id,
                cmd.account,
                cmd.bid_id,
                auction.instrument,
                cmd.price,
                cmd.volume,
                held,
                False,
            )
        )
        return None

    def modify_bid(self, cmd: ModifyBid, events: list) -> RejectCode | None:
        bidding = self._bidding(cmd)
        if isinstance(bidding, RejectCode):
            return bidding
        auction, account = bidding
        bid = auction.bids.get((cmd.account, cmd.bid_id))
        if bid is None:
            return RejectCode.UNKNOWN_BID
        price = bid.price if cmd.price is None else cmd.price
        volume = bid.volume if cmd.volume is None else cmd.volume
        code = self._check_price(price, auction)
        if code is not None:
            return code
        held = price * volume + auction.fee_per_lot * (volume // BID_LOT)
        if held - bid.held > account.cash - account.reserved_cash:
            return RejectCode.INSUFFICIENT_CASH
        account.reserved_cash += held - bid.held
        bid.price, bid.volume = price, volume  # a sealed bid has no time priority to lose
        events.append(
            BidPlaced(
                self._counters.next_seq(),
                cmd.ts,
                cmd.auction_id,
                cmd.account,
                cmd.bid_id,
                auction.instrument,
                price,
                volume,
                held,
                True,
            )
        )
        return None

    def withdraw_bid(self, cmd: WithdrawBid, events: list) -> RejectCode | None:
        bidding = self._bidding(cmd)
        if isinstance(bidding, RejectCode):
            return bidding
        auction, account = bidding
        bid = auction.bids.pop((cmd.account, cmd.bid_id), None)
        if bid is None:
            return RejectCode.UNKNOWN_BID
        account.reserved_cash -= bid.held
        events.append(
            BidWithdrawn(
                self._counters.next_seq(), cmd.ts, cmd.auction_id, cmd.account, cmd.bid_id, auction.instrument, bid.held
            )
        )
        return None

    def withdraw_all(self, account_id: str, ts: int, events: list) -> int:
        """The kill switch: every open bid of the account is withdrawn (oldest auction and bid first), as its
        orders are cancelled; how many."""
        withdrawn = 0
        account = self._engine.account(account_id)
        for auction in sorted(self.auctions.values(), key=lambda auction: auction.auction_id):
            if auction.outcome is not None:
                continue
            for key, bid in sorted(auction.bids.items(), key=lambda item: item[1].number):
                if bid.account == account_id:
                    del auction.bids[key]
                    account.reserved_cash -= bid.held
                    events.append(
                        BidWithdrawn(
                            self._counters.next_seq(),
                            ts,
                            auction.auction_id,
                            account_id,
                            bid.bid_id,
                            auction.instrument,
                            bid.held,
                        )
                    )
                    withdrawn += 1
        return withdrawn

    def clear(self, cmd: ClearPrimaryAuction, events: list) -> RejectCode | None:
        auction = self.auctions.get(cmd.auction_id)
        if auction is None:
            return RejectCode.UNKNOWN_AUCTION
        if auction.outcome is not None:
            return RejectCode.BIDDING_CLOSED
        if cmd.ts < auction.closes_at:
            return RejectCode.BIDDING_NOT_CLOSED
        engine = self._engine
        reference = engine.reference_price(auction.instrument)
        reserve_price = reference * (10_000 - auction.reserve_discount_bps) // 10_000
        bids = list(auction.bids.values())
        clearing_price, allocations = allocate(bids, auction.volume, auction.seed)
        total = sum(bid.volume for bid in bids)
        bidders = len({bid.account for bid in bids})
        if clearing_price is None or clearing_price < reserve_price:
            auction.outcome = UNDERSUBSCRIBED if clearing_price is None else BELOW_RESERVE
            for bid, _ in allocations:
                engine.account(bid.account).reserved_cash -= bid.held
                events.append(
                    BidResult(
                        self._counters.next_seq(),
                        cmd.ts,
                        auction.auction_id,
                        bid.account,
                        bid.bid_id,
                        auction.instrument,
                        bid.price,
                        bid.volume,
                        0,
                        None,
                        0,
                    )
                )
            auctioneer = engine.account(auction.auctioneer)
            auctioneer.reserved_units[auction.instrument] -= auction.volume
            carried = spread_carry_over(auction.volume)
            key = (auction.auctioneer, auction.instrument)
            waiting = self.carry_over.get(key, [])  # at most CARRY_OVER_AUCTIONS long
            waiting += [0] * (CARRY_OVER_AUCTIONS - len(waiting))
            self.carry_over[key] = [before + added for before, added in zip(waiting, carried, strict=True)]
            events.append(
                PrimaryAuctionCancelled(
                    self._counters.next_seq(),
                    cmd.ts,
                    auction.auction_id,
                    auction.auctioneer,
                    auction.instrument,
                    auction.volume,
                    auction.outcome,
                    total,
                    bidders,
                    clearing_price,
                    reserve_price,
                    carried,
                    auction.seed,
                )
            )
            return None
        auction.outcome = "cleared"
        symbol = auction.instrument
        proceeds = 0
        winners = set()
        fee_account = engine.fee_account
        for bid, allocated in allocations:
            account = engine.account(bid.account)
            account.reserved_cash -= bid.held
            amount = clearing_price * allocated
            fee = auction.fee_per_lot * (allocated // BID_LOT)
            if allocated:
                account.cash -= amount + fee
                account.units[symbol] += allocated
                proceeds += amount
                winners.add(bid.account)
                if fee and fee_account is not None:
                    fee_account.cash += fee
            events.append(
                BidResult(
                    self._counters.next_seq(),
                    cmd.ts,
                    auction.auction_id,
                    bid.account,
                    bid.bid_id,
                    symbol,
                    bid.price,
                    bid.volume,
                    allocated,
                    clearing_price,
                    amount,
                    fee,
                )
            )
        auctioneer = engine.account(auction.auctioneer)
        auctioneer.units[symbol] -= auction.volume
        auctioneer.reserved_units[symbol] -= auction.volume
        auctioneer.cash += proceeds
        events.append(
            PrimaryAuctionCleared(
                self._counters.next_seq(),
                cmd.ts,
                auction.auction_id,
                auction.auctioneer,
                symbol,
                auction.volume,
                clearing_price,
                total,
                bidders,
                len(winners),
                proceeds,
                reserve_price,
                auction.seed,
            )
        )
        return None

    def _check_price(self, price: int, auction: PrimaryAuction) -> RejectCode | None:
        instrument = self._engine.instruments[auction.instrument]
        if price > instrument.max_price:
            return RejectCode.INVALID_BID_PRICE
        return None

    # -- state ------------------------------------------------------------------------------------

    def state_lines(self) -> Iterable[str]:
        """Primary-auction facts for the engine's state hash; none while there was no auction."""
        for auction_id in sorted(self.auctions):
            auction = self.auctions[auction_id]
            yield (
                f"auction {auction_id} {auction.auctioneer} {auction.instrument} volume={auction.volume} "
                f"carried={auction.carried_in} closes={auction.closes_at} seed={auction.seed} "
                f"discount={auction.reserve_discount_bps} received={auction.bids_received} "
                f"outcome={auction.outcome}"
                # (terms an auction opened before admission and fees did not have add nothing: same hash)
                + (
                    f" admitted_only={auction.admitted_only} fee={auction.fee_per_lot}"
                    if auction.admitted_only or auction.fee_per_lot
                    else ""
                )
            )
            for bid in sorted(auction.bids.values(), key=lambda bid: bid.number):
                yield f"bid {auction_id} {bid.number} {bid.account} {bid.bid_id!r} {bid.price} {bid.volume}"
            used = sorted(repr(key) for key in auction.bid_ids)
            yield f"bid ids {auction_id} " + ",".join(used)
        for (auctioneer, instrument), waiting in sorted(self.carry_over.items()):
            yield f"carry {auctioneer} {instrument} " + ",".join(str(volume) for volume in waiting)
        if self.admitted:
            yield "admitted bidders " + ",".join(sorted(self.admitted))
