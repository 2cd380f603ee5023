"""Sessions: one connected client each, from logon to close.

``session`` is one connection's state and its writes; ``credentials`` checks
account secrets; ``logon_guard`` slows and locks out guessing. A session's
failure ends that session only.
"""
