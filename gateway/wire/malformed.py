"""Why a frame body is not one readable MessagePack map, in the project's words (docs/PROTOCOL.md 2).

How this works: :func:`unreadable` is asked only about a body the decoder
refused, so it costs the accepted ones nothing. It reads the body's
MessagePack structure itself, iteratively (a hostile depth cannot recurse
here), and names the first problem in reading order: truncated, trailing
bytes, a key that cannot be one, a string that is not UTF-8, nesting deeper
than :data:`MAX_NESTING`, or a byte MessagePack never uses. The decoder's own
sentences are never passed on: their wording changes between its releases.
"""

from __future__ import annotations

MAX_NESTING = 1000  # arrays and maps inside each other; deeper is fatal (docs/PROTOCOL.md 2: "about 1000")
NOT_UTF8 = "a string that is not UTF-8"
NESTED = "nested too deeply"
TOO_DEEP = f"{NESTED} (more than {MAX_NESTING} levels of arrays and maps)"
TRUNCATED = "truncated: the body ends inside an object"
TRAILING = "bytes after the first object (a body is exactly one map)"
UNUSABLE_KEY = "a map key that is a map or an ext value"
NOT_MESSAGEPACK = "not valid MessagePack"

# MessagePack's first bytes (its specification, msgpack.org): the bytes that follow
# a scalar of fixed size; the length bytes of a str, bin or ext (then its type byte) and which it is; the
# length bytes of an array or a map and the objects each entry holds.
_FIXED_SIZE = {
    0xC0: 0,
    0xC2: 0,
    0xC3: 0,
    0xCA: 4,
    0xCB: 8,
    0xCC: 1,
    0xCD: 2,
    0xCE: 4,
    0xCF: 8,
    0xD0: 1,
    0xD1: 2,
    0xD2: 4,
    0xD3: 8,
    0xD4: 2,
    0xD5: 3,
    0xD6: 5,
    0xD7: 9,
    0xD8: 17,
}  # 0xd4-0xd8: fixext, type byte + data
_SIZED = {
    0xC4: (1, "bin"),
    0xC5: (2, "bin"),
    0xC6: (4, "bin"),
    0xC7: (1, "ext"),
    0xC8: (2, "ext"),
    0xC9: (4, "ext"),
    0xD9: (1, "str"),
    0xDA: (2, "str"),
    0xDB: (4, "str"),
}
_COLLECTIONS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # array 16/32, map 16/32
_NOT_COLLECTION_BYTES = bytes(lead for lead in range(256) if not (0x80 <= lead <= 0x9F or lead in _COLLECTIONS))


def may_nest_deeply(body: memoryview) -> bool:
    """Cheap and never wrong when False: a body nested more than MAX_NESTING deep has more array and map
    headers than that (the count includes such bytes inside strings, so True only means "look")."""
    return len(body) > MAX_NESTING and len(bytes(body).translate(None, _NOT_COLLECTION_BYTES)) > MAX_NESTING


def malformation(body: memoryview | bytes) -> str | None:
    """What keeps ``body`` from being exactly one readable MessagePack object, the first problem in reading
    order, in the project's words; None if nothing does. Iterative: a hostile depth cannot recurse here."""
    data = bytes(body)
    end = len(data)
    at = 0
    open_collections: list[list[int]] = []  # per array or map being read: [objects still to read, 1 if a map]
    while True:
        if at >= end:
            return TRUNCATED
        # a map's objects alternate key, value, so an even number still to read means a key comes next
        is_key = bool(open_collections) and open_collections[-1][1] == 1 and open_collections[-1][0] % 2 == 0
        lead = data[at]
        at += 1
        count = 0
        is_map = 0
        if lead <= 0x7F or lead >= 0xE0:  # positive and negative fixint
            pass
        elif lead <= 0x9F or lead in _COLLECTIONS:
            if lead <= 0x8F:
                count, is_map = (lead & 0x0F) * 2, 1
            elif lead <= 0x9F:
                count = lead & 0x0F
            else:
                width, per_entry = _COLLECTIONS[lead]
                if at + width > end:
                    return TRUNCATED
                count, is_map = int.from_bytes(data[at : at + width], "big") * per_entry, per_entry - 1
                at += width
            if is_map and is_key:
                return UNUSABLE_KEY
            if len(open_collections) >= MAX_NESTING:
                return TOO_DEEP
            if count:
                open_collections.append([count, is_map])
                continue
        elif lead <= 0xBF or lead in _SIZED:
            if lead <= 0xBF:
                size, what = lead & 0x1F, "str"
            else:
                width, what = _SIZED[lead]
                if at + width > end:
                    return TRUNCATED
                size = int.from_bytes(data[at : at + width], "big")
                at += width
            if what == "ext":
                if is_key:
                    return UNUSABLE_KEY
                size += 1  # the ext's type byte
            if at + size > end:
                return TRUNCATED
            if what == "str":
                try:
                    data[at : at + size].decode("utf-8")
                except UnicodeDecodeError:
                    return NOT_UTF8
            at += size
        elif lead in _FIXED_SIZE:
            if is_key and 0xD4 <= lead <= 0xD8:
                return UNUSABLE_KEY
            at += _FIXED_SIZE[lead]
            if at > end:
                return TRUNCATED
        else:  # 0xc1, the one byte MessagePack never uses
            return f"{NOT_MESSAGEPACK}: byte 0x{lead:02x} at offset {at - 1}"
        while open_collections:  # one object read: it may complete the collections around it
            open_collections[-1][0] -= 1
            if open_collections[-1][0]:
                break
            open_collections.pop()
        else:
            return None if at == end else TRAILING


def unreadable(body: memoryview | bytes, error: Exception) -> str:
    """Why the decoder could not read ``body`` (it raised ``error``), in the project's words."""
    problem = malformation(body)
    if problem is not None:
        return problem
    if isinstance(error, RecursionError):  # within MAX_NESTING, but deeper than this interpreter lets msgspec go
        return NESTED
    return NOT_MESSAGEPACK
