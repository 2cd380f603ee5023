import time, msgpack, msgspec, struct
from typing import Union
class NewOrderMsg(msgspec.Struct, tag_field="type", tag="new_order", forbid_unknown_fields=True, omit_defaults=True):
    client_order_id: Union[int, str]
    instrument: str
    side: str
    quantity: int
    price: Union[int, str, None] = None
    order_type: str = "LIMIT"
    time_in_force: str = "GTC"
    display_quantity: Union[int, None] = None
    stop_price: Union[int, str, None] = None
    expire_date: Union[int, None] = None
    post_only: bool = False
    self_trade_prevention: Union[str, None] = None
    request_id: Union[int, str, None] = None
class CancelMsg(msgspec.Struct, tag_field="type", tag="cancel_order", forbid_unknown_fields=True):
    order_id: Union[int, None] = None
    client_order_id: Union[int, str, None] = None
    request_id: Union[int, str, None] = None
msg = {"type": "new_order", "client_order_id": 123456, "instrument": "EUA", "side": "B", "quantity": 10, "price": 7025}
body = msgpack.packb(msg)
print("body bytes", len(body))
frame = struct.pack(">I", len(body)) + body
N = 200_000
buf = frame * N
def split(buf):
    mv = memoryview(buf); i = 0; n = len(buf); out = []
    while i + 4 <= n:
        ln = int.from_bytes(mv[i:i+4], "big"); j = i + 4 + ln
        if j > n: break
        out.append(mv[i+4:j]); i = j
    return out
def run(name, fn):
    t = time.perf_counter(); c = fn(); dt = time.perf_counter() - t
    print(f"{name:40s} {N/dt/1e3:8.0f}k frames/s")
run("split only", lambda: len(split(buf)))
run("split + msgpack.unpackb", lambda: [msgpack.unpackb(f) for f in split(buf)])
dec_any = msgspec.msgpack.Decoder()
run("split + msgspec generic", lambda: [dec_any.decode(f) for f in split(buf)])
dec = msgspec.msgpack.Decoder(Union[NewOrderMsg, CancelMsg])
run("split + msgspec typed Struct", lambda: [dec.decode(f) for f in split(buf)])
enc = msgspec.msgpack.Encoder()
rep = {"type":"execution_report","seq":1,"exec_type":"new","order_status":"new","order_id":1,"client_order_id":123456,"instrument":"EUA","side":"B","price":7025,"quantity":10,"cum_quantity":0,"leaves_quantity":10,"ts":1764323000000000000}
run("msgpack.packb report", lambda: [msgpack.packb(rep) for _ in range(N)])
run("msgspec encode report", lambda: [enc.encode(rep) for _ in range(N)])
