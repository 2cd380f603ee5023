"""carbonx matching core: pure, deterministic order books for carbon instruments.

Commands in (:mod:`exchange.commands`), events out (:mod:`exchange.events`),
through :class:`exchange.engine.Engine`. Nothing in this package performs I/O,
reads a clock, draws random numbers or imports asyncio.
"""
from .book import OrderBook
from .call_auction import AuctionPrice, auction_price
from .codes import RejectCode
from .commands import (
                       CASH_ASSET,
                       BlockAccount,
                       CancelOrder,
                       ClearPrimaryAuction,
                       ComplianceDeadline,
                       Deposit,
                       EndOfDay,
                       InvalidCommand,
                       MassCancel,
                       ModifyBid,
                       NewOrder,
                       OpenAccount,
                       OpenPrimaryAuction,
                       RecordEmissions,
                       RegisterInstallation,
                       ReplaceOrder,
                       SetSelfTradePrevention,
                       SetTradingPhase,
                       SubmitBid,
                       Surrender,
                       UnblockAccount,
                       Withdraw,
                       WithdrawBid,
)
from .compliance import ComplianceConfig, compliance_report, format_report, parse_compliance
from .engine import Engine
from .enums import CALL_PHASES, CancelReason, OrderType, SelfTradePrevention, Side, TimeInForce, TradingPhase
from .events import (
                       AccountBlocked,
                       AccountOpened,
                       AccountUnblocked,
                       AuctionCompleted,
                       AuctionIndicative,
                       BidPlaced,
                       BidResult,
                       BidWithdrawn,
                       DeadlinePassed,
                       Deposited,
                       EmissionsRecorded,
                       InstallationRegistered,
                       LevelChanged,
                       MassCancelCompleted,
                       ObligationCarriedOver,
                       OrderAccepted,
                       OrderCanceled,
                       OrderExpired,
                       OrderRejected,
                       OrderReplaced,
                       PenaltyCharged,
                       PrimaryAuctionCancelled,
                       PrimaryAuctionCleared,
                       PrimaryAuctionOpened,
                       RequestRejected,
                       SelfTradePreventionSet,
                       StopTriggered,
                       Trade,
                       TradingDayClosed,
                       TradingPhaseChanged,
                       UnitsSurrendered,
                       Withdrawn,
)
from .instruments import ConfigError, Instrument, parse_instruments
from .orders import Order
from .views import AccountBalances, AccountSettings, BidView, EngineCounts, InstallationView, PrimaryAuctionView

__all__ = [
    "ComplianceConfig", "ComplianceDeadline", "DeadlinePassed", "EmissionsRecorded", "InstallationRegistered",
    "ObligationCarriedOver", "PenaltyCharged", "RecordEmissions", "RegisterInstallation", "Surrender",
    "UnitsSurrendered", "compliance_report", "format_report", "parse_compliance",
    "AccountBlocked", "AccountUnblocked", "BlockAccount", "UnblockAccount",
    "CASH_ASSET", "AccountOpened", "CancelOrder", "CancelReason", "RequestRejected", "ConfigError", "Deposit",
    "Deposited", "EndOfDay", "Engine", "Instrument", "InvalidCommand", "LevelChanged", "MassCancel",
    "MassCancelCompleted", "NewOrder", "OpenAccount", "Order", "OrderAccepted", "OrderBook", "OrderCanceled",
    "OrderExpired", "OrderRejected", "OrderReplaced", "OrderType", "RejectCode", "ReplaceOrder",
    "SelfTradePrevention", "SelfTradePreventionSet", "SetSelfTradePrevention", "Side", "StopTriggered",
    "TimeInForce", "Trade", "TradingDayClosed", "Withdraw", "Withdrawn", "parse_instruments",
    "AuctionCompleted", "AuctionIndicative", "AuctionPrice", "CALL_PHASES", "SetTradingPhase", "TradingPhase",
    "TradingPhaseChanged", "auction_price",
    "BidPlaced", "BidResult", "BidWithdrawn", "ClearPrimaryAuction", "ModifyBid", "OpenPrimaryAuction",
    "PrimaryAuctionCancelled", "PrimaryAuctionCleared", "PrimaryAuctionOpened", "SubmitBid", "WithdrawBid",
    "AccountBalances", "AccountSettings", "BidView", "EngineCounts", "InstallationView", "PrimaryAuctionView",
]
