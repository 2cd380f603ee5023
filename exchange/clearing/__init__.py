"""Futures and their clearing: the contracts a series lists (:mod:`.contracts`) and the clearing house that
keeps positions, fixes daily settlement, pays variation margin, charges initial margin and delivers at expiry
(:mod:`.house`). Pure and deterministic like the rest of the engine; docs/FUTURES.md has the rules."""

from .contracts import (
    ContractSeries,
    FuturesContract,
    contract_symbol,
    delivery_day,
    last_trading_day,
    listed_contracts,
)
from .desk import FuturesDesk
from .house import (
    ClearingHouse,
    Delivery,
    MarginTerms,
    VariationMargin,
    daily_settlement_price,
    initial_margin,
    maintenance_margin,
    most_traded,
)
from .terms import FuturesConfig, parse_futures

__all__ = [
    "ClearingHouse",
    "ContractSeries",
    "Delivery",
    "FuturesConfig",
    "FuturesContract",
    "FuturesDesk",
    "MarginTerms",
    "VariationMargin",
    "contract_symbol",
    "daily_settlement_price",
    "delivery_day",
    "initial_margin",
    "last_trading_day",
    "listed_contracts",
    "maintenance_margin",
    "most_traded",
    "parse_futures",
]
