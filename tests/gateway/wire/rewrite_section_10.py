"""Rewrite frame 2 of docs/PROTOCOL.md section 10 (``logon_accepted``) from a freshly started server.

How this works: a change to what ``logon_accepted`` carries (a new instrument
term, a new shipped instrument) changes frame 2's bytes, and
``test_worked_example_of_section_10`` then fails, as it should. This tool
starts ``carbonx serve`` as that test does, sends frame 1 as the document
prints it, and writes the answer back into the document: the hex dump, its
length and the decoded JSON. The timestamp keeps the document's own, so the
section still reads as one run in order (the test masks it anyway). Run it
from the project root, then read the diff:

    python tests/gateway/wire/rewrite_section_10.py
"""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from test_protocol_document import PROJECT, Wire, _doc_frames, frame, running  # noqa: E402

TS_MARKER = b"\xa2ts\xcf"


def hex_lines(body: bytes) -> str:
    return "\n".join("  " + " ".join(f"{b:02x}" for b in body[i : i + 16]) for i in range(0, len(body), 16))


def main() -> None:
    frames = _doc_frames()
    old_body = frames[2][4:]
    with running(probe=False) as server:
        bank = Wire(server.port)
        try:
            bank.send_raw(frames[1])
            body = bytes(bank.read_body())
        finally:
            bank.close()
    at = body.index(TS_MARKER) + len(TS_MARKER)
    old_at = old_body.index(TS_MARKER) + len(TS_MARKER)
    body = body[:at] + old_body[old_at : old_at + 8] + body[at + 8 :]  # the document's timestamp
    path = PROJECT / "docs" / "PROTOCOL.md"
    text = path.read_text()
    start = text.index("Frame 2, server to bank:")
    end = text.index("Frame 3,", start)
    length = struct.pack(">I", len(body))
    block = (
        "Frame 2, server to bank:\n\n```\n"
        f"length  {' '.join(f'{b:02x}' for b in length)}        ({len(body)} bytes follow)\nbody\n"
        f"{hex_lines(body)}\n```\n\nDecoded:\n\n```json\n{json.dumps(msgpack.unpackb(body, raw=False))}\n```\n\n"
    )
    assert frame(body)[4:] == body
    text = text[:start] + block + text[end:]
    path.write_text(text)
    print(f"frame 2: {len(old_body)} -> {len(body)} bytes", file=sys.stderr)
    if re.search(r"\(\d+ bytes follow\)", block) is None:
        raise SystemExit("the rewritten block has no length line")


if __name__ == "__main__":
    main()
