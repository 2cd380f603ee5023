"""The pipeline every request goes through: sequence, run, commit, release.

``sequencer`` is the deterministic state the journal reproduces (the engine,
the order tracker, the market-data feed, the numbering of messages);
``reports`` turns engine events into execution reports and answers.
"""
