"""Settlement: the engine's fills, deposits and auction deliveries booked into a ledger.

``service`` drains settled events from a bounded queue on its own task and
``ledger`` stores them (SQLite, one transaction a batch, exactly once).
"""
