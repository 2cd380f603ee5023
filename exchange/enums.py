"""The small closed vocabularies of the exchange.

Every enum here is a ``StrEnum`` so that a value is readable in logs, in test
failures and on the wire (MessagePack packs them as plain strings), while the
matching code compares members by identity (``side is Side.BUY``), which costs
no more than comparing two integers.
"""

from enum import StrEnum


class Side(StrEnum):
    BUY = "B"
    SELL = "S"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    GTC = "GTC"  # good till cancelled
    DAY = "DAY"  # expires at the end-of-day command
    IOC = "IOC"  # immediate or cancel: the unfilled rest is cancelled
    FOK = "FOK"  # fill or kill: all at once or nothing
    GTD = "GTD"  # good till date: expires at the end of its expire_date


class SelfTradePrevention(StrEnum):
    """What happens when an order would trade with one of its own account (ICE's STP modes)."""

    NONE = "NONE"  # the trade is allowed
    CANCEL_RESTING = "CANCEL_RESTING"  # the resting order is cancelled, matching goes on
    CANCEL_TAKING = "CANCEL_TAKING"  # the rest of the incoming order is cancelled
    CANCEL_BOTH = "CANCEL_BOTH"  # both are cancelled


class CancelReason(StrEnum):
    USER = "USER"  # a cancel request from the order's owner
    IOC_REMAINDER = "IOC_REMAINDER"  # the unfilled rest of an IOC order
    MARKET_REMAINDER = "MARKET_REMAINDER"  # the rest of a market order (book empty or collar reached)
    FOK_UNFILLED = "FOK_UNFILLED"  # a fill-or-kill order that could not fill in full
    SELF_TRADE = "SELF_TRADE"  # removed by self-trade prevention
    MASS_CANCEL = "MASS_CANCEL"  # a mass cancel for the account
    DISCONNECT = "DISCONNECT"  # cancel-on-disconnect: the account's session ended (a mass cancel by the gateway)
    KILL_SWITCH = "KILL_SWITCH"  # the exchange blocked the account and cancelled all its orders
    VOLATILITY_INTERRUPTION = "VOLATILITY_INTERRUPTION"  # the rest of a non-persistent order that would have
    # traded outside the volatility band (IOC, FOK, market): the instrument went into a call instead


class TradingPhase(StrEnum):
    """Where an instrument's trading day is (EEX/T7 style). Orders match only in CONTINUOUS; the three call
    phases collect orders without matching and end in an auction at one price (``exchange.call_auction``)."""

    CLOSED = "closed"  # no new orders, nothing matches; cancels are taken
    OPENING_CALL = "opening_call"  # orders collected for the opening auction
    CONTINUOUS = "continuous"  # price-time matching on arrival
    CLOSING_CALL = "closing_call"  # orders collected for the closing auction
    VOLATILITY_INTERRUPTION = "volatility_interruption"  # a short call after a trade would have left the band
    HALTED = "halted"  # stopped by the exchange: no new orders or replaces, nothing matches; cancels are taken


CALL_PHASES = frozenset((TradingPhase.OPENING_CALL, TradingPhase.CLOSING_CALL, TradingPhase.VOLATILITY_INTERRUPTION))
