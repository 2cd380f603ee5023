"""The engine's results kept from before the performance work (issue 17): the same commands, the same events and
the same state, to the byte.

A fixed stream of commands, drawn from a seeded generator, uses every kind of order and most of the engine's
other commands: limit and market orders with every time in force, icebergs, stops, post-only, self-trade
prevention, replaces, cancels by order id and by client order id, mass cancels, the trading phases with their
calls and a volatility band, the kill switch, funding and withdrawals, and ends of day. It runs with pre-trade
risk on and off, one command at a time (``handle``) and in batches (``handle_all``). Every event, as its kind and
its field values in order, and the state hash after every hundred commands are folded into one SHA-256, which
must equal the digest taken with the engine as it was at a4ce13b (before commands and events became msgspec
Structs, and before the compiled build): any change in what the engine answers, however small, changes it.

If a change is meant to change the engine's answers, this digest changes with it, in the same commit, and the
commit says why.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import random

import pytest
from msgspec.structs import astuple
from scenario_helpers import shipped_instruments

from exchange import (
    CASH_ASSET,
    BlockAccount,
    CancelOrder,
    Deposit,
    EndOfDay,
    Engine,
    MassCancel,
    NewOrder,
    OpenAccount,
    ReplaceOrder,
    SetSelfTradePrevention,
    SetTradingPhase,
    UnblockAccount,
    Withdraw,
)

ACCOUNTS = [f"trader-{n}" for n in range(6)]
SYMBOLS = ("EUA", "CER")
# The terms as they were at a4ce13b, kept here so that later changes to the shipped terms (the one-sided band,
# the reference prices) do not change what this test compares: the same stream on the same terms.
KEPT_TERMS = {"EUA": 7000, "CER": 5800, "ERU": 5500}  # reference prices, cents, both-sided band


def kept_instruments() -> dict:
    return {
        symbol: dataclasses.replace(instrument, reference_price=KEPT_TERMS[symbol], price_band_one_sided=False)
        for symbol, instrument in shipped_instruments().items()
        if symbol in KEPT_TERMS
    }


REFERENCE = {symbol: instrument.reference_price for symbol, instrument in kept_instruments().items()}
KEPT = {  # (pre-trade risk, batch size or None for one at a time): the digest at a4ce13b
    (True, None): "6af0e1bfe94908e2303f88ed309d33ae8ef39471de2d3bb4b1291e33699e1ad9",
    (True, 64): "0a4e14938dfe9c4dfd0db393e877890a2f113773b1298a8451dc632c4b447cf9",
    (False, None): "2a9f986cb52558df5ba111e6cf1adfc0f51e283e6c848e1c360eac83d76d86c3",
    (False, 64): "346987255850e6330e951a35eb9ffffd2d3575c95596681821b14be4f9f8828b",
}


def yyyymmdd(day: int) -> int:
    return int((datetime.date(2026, 1, 5) + datetime.timedelta(days=day)).strftime("%Y%m%d"))


def commands(seed: int, count: int) -> list:
    rng = random.Random(seed)
    stream: list = []
    for account in ACCOUNTS:
        stream.append(OpenAccount(ts=0, account=account))
        stream.append(Deposit(ts=0, account=account, asset=CASH_ASSET, amount=rng.randrange(10**8, 10**10)))
        for symbol in SYMBOLS:
            stream.append(Deposit(ts=0, account=account, asset=symbol, amount=rng.randrange(10**4, 10**6)))
    phases = ["continuous"] * 6 + ["opening_call", "closing_call", "halted", "closed"]
    owners: dict[str, str] = {}
    day = 0  # trading days closed so far, counted from 5 January 2026
    for ts in range(1, count + 1):
        account = rng.choice(ACCOUNTS)
        symbol = rng.choice(SYMBOLS)
        clid = f"c{ts}"
        old = f"c{rng.randrange(max(1, ts - 30), ts)}" if ts > 1 else "c0"  # recent: often still open
        owner = owners.get(old, account)  # (a cancel or replace by another account is refused: a few are)
        if rng.random() < 0.9:
            account = owner
        roll = rng.random()
        price = REFERENCE[symbol] + rng.randrange(-60, 60)
        side = rng.choice("BS")
        if roll < 0.40:
            extra: dict = {}
            shape = rng.random()
            if shape < 0.08:
                extra = {"display_quantity": rng.randrange(1, 4)}
            elif shape < 0.14:
                extra = {"stop_price": price + rng.choice((-5, 5))}
            elif shape < 0.20:
                extra = {"post_only": True}
            elif shape < 0.26:
                extra = {"time_in_force": rng.choice(("IOC", "FOK"))}
            elif shape < 0.30:
                extra = {"time_in_force": "GTD", "expire_date": yyyymmdd(day + rng.randrange(1, 5))}
            elif shape < 0.36:
                extra = {"time_in_force": "DAY"}
            elif shape < 0.40:
                extra = {"self_trade_prevention": rng.choice(("CANCEL_RESTING", "CANCEL_TAKING", "CANCEL_BOTH"))}
            quantity = rng.randrange(1, 12) + extra.get("display_quantity", 0)
            owners[clid] = account
            stream.append(
                NewOrder(
                    ts=ts,
                    account=account,
                    client_order_id=clid,
                    instrument=symbol,
                    side=side,
                    quantity=quantity,
                    price=price,
                    **extra,
                )
            )
        elif roll < 0.46:
            stream.append(
                NewOrder(
                    ts=ts,
                    account=account,
                    client_order_id=clid,
                    instrument=symbol,
                    side=side,
                    quantity=rng.randrange(1, 20),
                    order_type="MARKET",
                    time_in_force=rng.choice(("IOC", "FOK")),
                )
            )
        elif roll < 0.70:
            stream.append(CancelOrder(ts=ts, account=account, client_order_id=old))
        elif roll < 0.74:
            stream.append(CancelOrder(ts=ts, account=account, order_id=rng.randrange(1, ts + 1)))
        elif roll < 0.84:
            change = rng.random()
            stream.append(
                ReplaceOrder(
                    ts=ts,
                    account=account,
                    client_order_id=old,
                    quantity=rng.randrange(1, 15) if change < 0.7 else None,
                    price=price if change > 0.4 else None,
                )
            )
        elif roll < 0.86:
            stream.append(MassCancel(ts=ts, account=account, instrument=rng.choice((None, symbol))))
        elif roll < 0.88:
            stream.append(SetTradingPhase(ts=ts, instrument=symbol, phase=rng.choice(phases)))
        elif roll < 0.89:
            stream.append(BlockAccount(ts=ts, account=account))
        elif roll < 0.92:
            stream.append(UnblockAccount(ts=ts, account=account))
        elif roll < 0.94:
            mode = rng.choice(("NONE", "CANCEL_RESTING", "CANCEL_TAKING", "CANCEL_BOTH"))
            stream.append(SetSelfTradePrevention(ts=ts, account=account, mode=mode))
        elif roll < 0.96:
            asset = rng.choice((CASH_ASSET, *SYMBOLS))
            movement = rng.choice((Deposit, Withdraw))
            stream.append(movement(ts=ts, account=account, asset=asset, amount=rng.randrange(1, 10**6)))
        elif roll < 0.965:
            stream.append(EndOfDay(ts=ts, trading_date=yyyymmdd(day)))
            day += 1
        else:
            for each in SYMBOLS:
                stream.append(SetTradingPhase(ts=ts, instrument=each, phase="continuous"))
    return stream


def digest(pre_trade_risk: bool, batch: int | None, stream: list) -> str:
    instruments = kept_instruments()  # (volatility band off: one instrument has one again)
    instruments["CER"] = dataclasses.replace(instruments["CER"], volatility_band_bps=150)
    engine = Engine(instruments, pre_trade_risk=pre_trade_risk)
    sha = hashlib.sha256()
    step = batch or 1
    for start in range(0, len(stream), step):
        chunk = stream[start : start + step]
        events = engine.handle_all(chunk) if batch else engine.handle(chunk[0])
        for event in events:
            values = tuple(event) if isinstance(event, tuple) else astuple(event)
            sha.update(f"{type(event).__name__}{values!r}\n".encode())
        if start % 100 < step:
            sha.update(engine.state_hash().encode())
    sha.update(engine.state_hash().encode())
    return sha.hexdigest()


@pytest.mark.parametrize(("pre_trade_risk", "batch"), list(KEPT))
def test_the_engine_answers_as_it_did_before_the_performance_work(pre_trade_risk, batch):
    stream = commands(17, 6_000)
    assert digest(pre_trade_risk, batch, stream) == KEPT[(pre_trade_risk, batch)]
