#!/usr/bin/env python3
"""Many distinct client IPs through the PROXY protocol, one request each.

    python3 benches/traffic/many_ips.py PORT COUNT [--first N] [--concurrency K]
                                        [--path /p] [--timeout S]

Opens COUNT connections to 127.0.0.1:PORT, at most K at once (one thread, non-blocking
sockets and selectors). Each sends a PROXY v1 header whose source address is distinct,

    PROXY TCP4 10.a.b.c 127.0.0.1 <sport> <PORT>\\r\\n

for the client numbers FIRST .. FIRST+COUNT-1 (number n is 10.(n>>16 & 255).(n>>8 & 255).(n
& 255), so up to 16,777,216 distinct addresses), then one `GET PATH` with `Connection:
close`, reads the answer to the end (the server closes first, so TIME_WAIT stays on the
server's side and the client's ephemeral ports are not used up), and closes. A connection
that has not finished after TIMEOUT seconds (default 5) counts as an error.

Prints one line of JSON on stdout:
    {"sent": COUNT, "codes": {"200": n, "429": m, ...}, "errors": e, "seconds": s,
     "per_second": r}
"errors" are connections refused, reset, timed out or answered without a status line.
Every loop is bounded: the whole run stops after COUNT connections, or after
max(60, COUNT / 500) seconds at most (a stuck server).
"""

import argparse
import errno
import json
import selectors
import socket
import sys
import time


def addr(n):
    return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    if a.first < 0 or a.count < 0 or a.first + a.count > 1 << 24:
        sys.exit("client numbers must stay within 0 .. 2^24")

    sel = selectors.DefaultSelector()
    codes = {}
    errors = 0
    started = 0
    done = 0
    t0 = time.monotonic()
    hard_stop = t0 + max(60.0, a.count / 500.0)
    # per socket: [state, out bytes, in bytes, deadline]; state "c" connecting, "w" writing,
    # "r" reading
    conns = {}

    def finish(s, ok):
        nonlocal done, errors
        st = conns.pop(s)
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        done += 1
        if not ok:
            errors += 1
            return
        head = bytes(st[2][:64])
        parts = head.split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
            c = parts[1].decode()
            codes[c] = codes.get(c, 0) + 1
        else:
            errors += 1

    def start_one(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sport = 1024 + (n % 64000)
        req = (
            "PROXY TCP4 %s 127.0.0.1 %d %d\r\n"
            "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
            % (addr(n), sport, a.port, a.path, a.port)
        ).encode()
        st = ["c", memoryview(req), bytearray(), time.monotonic() + a.timeout]
        conns[s] = st
        rc = s.connect_ex(("127.0.0.1", a.port))
        if rc not in (0, errno.EINPROGRESS):
            finish(s, False)
            return
        sel.register(s, selectors.EVENT_WRITE)

    last_sweep = t0
    while done < a.count:
        while started < a.count and len(conns) < a.concurrency:
            start_one(a.first + started)
            started += 1
        now = time.monotonic()
        if now > hard_stop:
            for s in list(conns):
                finish(s, False)
            errors += a.count - done
            done = a.count
            break
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            st = conns.get(s)
            if st is None:
                continue
            try:
                if st[0] == "c":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(s, False)
                        continue
                    st[0] = "w"
                if st[0] == "w":
                    k = s.send(st[1])
                    st[1] = st[1][k:]
                    if not len(st[1]):
                        st[0] = "r"
                        sel.modify(s, selectors.EVENT_READ)
                    continue
                b = s.recv(65536)
                if b:
                    st[2] += b
                else:
                    finish(s, True)
            except BlockingIOError:
                pass
            except OSError:
                finish(s, False)
        now = time.monotonic()
        if now - last_sweep > 0.5:
            last_sweep = now
            for s in [s for s, st in conns.items() if st[3] < now]:
                finish(s, False)

    secs = time.monotonic() - t0
    print(json.dumps({
        "sent": a.count,
        "codes": codes,
        "errors": errors,
        "seconds": round(secs, 3),
        "per_second": round(a.count / secs, 1) if secs > 0 else 0,
    }))


if __name__ == "__main__":
    main()
