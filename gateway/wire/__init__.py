"""The wire: what travels between a client and the exchange.

``protocol`` holds the message schemas (msgspec structs, one per message type)
and the framing codec: a 4-byte big-endian length, then a MessagePack map.
Nothing here does I/O; sessions and the client library use it both ways.
"""
