"""The wire: what travels between a client and the exchange.

``protocol`` holds the clients' message schemas (msgspec structs, one per
message type) and the framing codec: a 4-byte big-endian length, then a
MessagePack map. ``messages`` holds the exchange's own, to clients and to
market-data subscribers, in the same form. Nothing here does I/O; sessions
and the client library use it both ways.
"""
