"""The engine commands a start of the exchange runs for its configured accounts (config/accounts.toml).

How this works: a new data directory opens and funds every configured account
(:func:`opening_commands`: OpenAccount, deposits, the installation's
registration, the auction bidder's admission), journaled like any other
command. A restart on recovered state opens only the accounts it does not
have (:func:`start_up_commands`): for an open account the opening amounts are
history, a changed self-trade prevention mode is applied, and what cannot be
applied to it is reported, one phrase each, for the log.
"""

from __future__ import annotations

from collections.abc import Mapping

from exchange import (
    CASH_ASSET,
    AdmitBidder,
    Deposit,
    Engine,
    OpenAccount,
    RegisterInstallation,
    SelfTradePrevention,
    SetSelfTradePrevention,
)
from gateway.config import AccountConfig


def opening_commands(accounts: Mapping[str, AccountConfig], ts: int) -> list:
    """The engine commands that open and fund the configured accounts, in file order."""
    commands: list = []
    for account in accounts.values():
        commands.append(
            OpenAccount(
                ts=ts,
                account=account.account_id,
                order_value_limit=account.order_value_limit,
                self_trade_prevention=account.self_trade_prevention,
            )
        )
        if account.cash:
            commands.append(Deposit(ts=ts, account=account.account_id, asset=CASH_ASSET, amount=account.cash))
        for symbol, amount in account.units.items():
            if amount:
                commands.append(Deposit(ts=ts, account=account.account_id, asset=symbol, amount=amount))
        if account.credit_limit_bps is not None:
            commands.append(
                RegisterInstallation(ts=ts, account=account.account_id, credit_limit_bps=account.credit_limit_bps)
            )
        if account.auction_bidder:  # (an open account's admission is the operators' from then on: admit_bidder)
            commands.append(AdmitBidder(ts=ts, account=account.account_id))
    return commands


def start_up_commands(accounts: Mapping[str, AccountConfig], engine: Engine, ts: int) -> tuple[list, list[str]]:
    """What a start of the exchange runs for the configured accounts, given the state it recovered.

    New accounts are opened and funded (``opening_commands``). For an
    account the state already has, the opening amounts are history, not
    settings; a changed self-trade prevention mode is applied with its
    command. Returns (commands, the changes that cannot be applied to an
    open account, one phrase each: the order value limit, the share of an
    installation's obligation credits may cover).
    """
    new = {account_id: account for account_id, account in accounts.items() if not engine.has_account(account_id)}
    commands = opening_commands(new, ts)
    unapplied: list[str] = []
    for account_id, account in accounts.items():
        state = engine.account_settings(account_id)
        if state is None:
            continue
        mode = account.self_trade_prevention or SelfTradePrevention.NONE
        if state.self_trade_prevention != mode:
            commands.append(SetSelfTradePrevention(ts=ts, account=account_id, mode=mode))
        if state.order_value_limit != account.order_value_limit:
            unapplied.append(
                f"{account_id}.order_value_limit: {state.order_value_limit} kept, "
                f"{account.order_value_limit} configured"
            )
        installation = engine.installation(account_id)
        kept = None if installation is None else installation.credit_limit_bps
        if kept != account.credit_limit_bps:
            unapplied.append(f"{account_id}.credit_limit_bps: {kept} kept, {account.credit_limit_bps} configured")
        if account.auction_bidder and not state.auction_bidder:
            # (an operator may have withdrawn it; an account opened before admission existed never had it)
            unapplied.append(f"{account_id}.auction_bidder: not admitted; an operator admits it with admit_bidder")
    return commands, unapplied
