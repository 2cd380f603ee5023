"""How fast the gateway turns bytes into checked messages, against the alternatives it was chosen over.

Run: ``python3 benchmarks/codec_bench.py [--frames 200000]``. Every candidate
decodes the same stream of length-prefixed new_order frames (the shape
docs/PROTOCOL.md gives them), arriving in 64 KiB reads, as the server gets
them from a socket:

- ``msgpack.unpackb``: frames split by their length, each body unpacked to a
  dict (no checking of fields at all);
- ``msgpack.Unpacker`` (streaming): the same maps without length prefixes
  (a streaming unpacker cannot honour the framing, so this is what it
  would cost if the protocol had none), fed to one unpacker that finds the
  maps itself;
- ``gateway.wire.protocol.MessageReader``: what the gateway runs (msgspec), which
  also checks the message type, every field's type and unknown fields.

Figures are frames per second and, more usefully on a shared machine, the
ratio of each to ``msgpack.unpackb`` measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import msgpack

from gateway.wire.protocol import MessageReader, encode_frame

ORDER = {
    "type": "new_order",
    "client_order_id": 123456,
    "instrument": "EUA",
    "side": "B",
    "quantity": 10,
    "price": 7025,
    "request_id": 99,
}
REPORT = {
    "type": "execution_report",
    "seq": 1,
    "exec_type": "new",
    "order_status": "new",
    "order_id": 1,
    "client_order_id": 123456,
    "instrument": "EUA",
    "side": "B",
    "price": 7025,
    "quantity": 10,
    "cum_quantity": 0,
    "leaves_quantity": 10,
    "avg_price": None,
    "ts": 1_764_323_000_000_000_000,
}
READ = 65_536


def chunks(stream: bytes) -> list[bytes]:
    return [stream[at : at + READ] for at in range(0, len(stream), READ)]


def with_unpackb(reads: list[bytes]) -> int:
    pending = b""
    count = 0
    for data in reads:
        data = pending + data
        view = memoryview(data)
        at = 0
        while len(data) - at >= 4:
            stop = at + 4 + int.from_bytes(view[at : at + 4], "big")
            if stop > len(data):
                break
            msgpack.unpackb(view[at + 4 : stop])
            count += 1
            at = stop
        pending = data[at:]
    return count


def with_streaming_unpacker(reads: list[bytes]) -> int:
    unpacker = msgpack.Unpacker()
    count = 0
    for data in reads:
        unpacker.feed(data)
        for _ in unpacker:
            count += 1
    return count


def with_message_reader(reads: list[bytes]) -> int:
    reader = MessageReader()
    return sum(len(reader.feed(data)) for data in reads)


def encode_msgpack(count: int) -> None:
    for _ in range(count):
        msgpack.packb(REPORT)


def encode_gateway(count: int) -> None:
    for _ in range(count):
        encode_frame(REPORT)


def timed(run, *args) -> float:
    started = time.perf_counter()
    run(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    frame = encode_frame(ORDER)
    reads = chunks(frame * args.frames)
    bare_reads = chunks(msgpack.packb(ORDER) * args.frames)
    print(f"{args.frames:,} new_order frames of {len(frame)} bytes, in {READ // 1024} KiB reads; best of {args.runs}")
    assert with_unpackb(reads) == with_message_reader(reads) == args.frames
    decoders = [
        ("msgpack.unpackb per frame (no checks)", with_unpackb, reads),
        ("msgpack.Unpacker, no framing (no checks)", with_streaming_unpacker, bare_reads),
        ("gateway MessageReader (msgspec, checked)", with_message_reader, reads),
    ]
    baseline = None
    for name, run, data in decoders:
        best = min(timed(run, data) for _ in range(args.runs))
        baseline = baseline or best
        print(f"decode  {name:<42} {args.frames / best / 1e3:8.0f}k frames/s   x{baseline / best:.2f}")
    baseline = None
    for name, run in (("msgpack.packb", encode_msgpack), ("gateway encode_frame (msgspec)", encode_gateway)):
        best = min(timed(run, args.frames) for _ in range(args.runs))
        baseline = baseline or best
        print(f"encode  {name:<42} {args.frames / best / 1e3:8.0f}k reports/s  x{baseline / best:.2f}")


if __name__ == "__main__":
    main()
