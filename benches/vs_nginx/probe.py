#!/usr/bin/env python3
"""A well-behaved client that measures availability (python3, stdlib only).

    probe.py --port 18082 [--path /hello] [--duration 30] [--interval 0.05] [--timeout 2]
             [--start-file F [--start-max 120]]

Makes two kinds of requests to 127.0.0.1:PORT, each `GET PATH` expecting 200:
  fresh      every --interval seconds, on schedule whatever the earlier ones are doing, a
             new connection with one request (`Connection: close`); at most about
             --timeout / --interval are in flight; if the probe itself falls behind (no CPU
             for it), the turns it missed are skipped, not sent in a burst
  keepalive  one keep-alive connection opened at the start, a request every --interval
             seconds (a late answer delays the next one, missed turns are skipped); after a
             failure the connection is dropped and the next turn opens a new one
A request that does not get a whole 200 answer within --timeout seconds (connect, write,
head and body together) counts as failed, by kind; fewer requests sent than the window
holds means the probe was late, not the server. Requests go from the start; the measured
window is the --duration seconds from the moment the file --start-file appears (at once
without it; if it has not appeared after --start-max seconds, nothing is measured). Requests
sent before the window are counted apart (mode=ramp). It prints `PROBE started` when its
loops begin, then at the end on stdout:

    PROBE mode=fresh sent=N ok=N failed=N p50_ms=X p99_ms=X max_ms=X errors={...}
    PROBE mode=keepalive ...
    PROBE mode=all ... fails_by_s=S:N,...
    PROBE mode=ramp ...

(latencies over the answered requests, -1 with none; fails_by_s: failed requests by the
second of the window in which they were sent, only the seconds with failures). Used by
benches/abuse.sh.
"""

import argparse
import asyncio
import collections
import json
import os
import time


class Stats:
    def __init__(self):
        self.sent = 0
        self.ok = 0
        self.lat = []
        self.errors = collections.Counter()

    def add(self, other):
        self.sent += other.sent
        self.ok += other.ok
        self.lat += other.lat
        self.errors.update(other.errors)

    def line(self, mode):
        lat = sorted(self.lat)

        def pct(q):
            if not lat:
                return -1.0
            return lat[min(len(lat) - 1, max(0, int(round(q * len(lat) + 0.5)) - 1))]

        return (
            f"PROBE mode={mode} sent={self.sent} ok={self.ok} failed={self.sent - self.ok} "
            f"p50_ms={pct(0.50):.2f} p99_ms={pct(0.99):.2f} max_ms={(lat[-1] if lat else -1):.2f} "
            f"errors={json.dumps(dict(self.errors), separators=(',', ':'))}"
        )


async def read_answer(reader):
    """Read one response; return (status, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    keep_alive = parts[0] == b"HTTP/1.1" and b"close" not in headers.get(b"connection", b"")
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            await reader.readexactly(size + 2)
    elif b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    else:
        await reader.read()  # delimited by close
        keep_alive = False
    return status, keep_alive


def kind(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, asyncio.IncompleteReadError):
        return "closed"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    return type(e).__name__


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--start-file", help="measure from when this file exists")
    ap.add_argument("--start-max", type=float, default=120.0)
    args = ap.parse_args()

    def request(close):
        close_line = "Connection: close\r\n" if close else ""
        return (
            f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"User-Agent: ringway-probe\r\n{close_line}\r\n"
        ).encode()

    print("PROBE started", flush=True)
    fresh, keep, ramp = Stats(), Stats(), Stats()
    fails_by_s = collections.Counter()
    launched = time.monotonic()
    window = {"start": None if args.start_file else launched, "end": None}
    if window["start"] is not None:
        window["end"] = window["start"] + args.duration

    def phase(now):
        """The stats a request sent now goes to, None when it is time to stop."""
        start, end = window["start"], window["end"]
        if start is None:
            return None if now - launched >= args.start_max else "ramp"
        return "window" if now < end else None

    async def watch():
        while window["start"] is None and time.monotonic() - launched < args.start_max:
            if os.path.exists(args.start_file):
                window["start"] = time.monotonic()
                window["end"] = window["start"] + args.duration
                return
            await asyncio.sleep(0.02)

    async def timed(stats, coro, sent_at):
        """Run one request; count it in stats. Returns (ok, keep_alive)."""
        t0 = time.monotonic()
        try:
            status, keep_alive = await asyncio.wait_for(coro, args.timeout)
        except Exception as e:  # noqa: BLE001 - every failure is counted by kind
            stats.errors[kind(e)] += 1
            if stats is not ramp:
                fails_by_s[int(sent_at - window["start"])] += 1
            return False, False
        if status == 200:
            stats.ok += 1
            stats.lat.append((time.monotonic() - t0) * 1000)
            return True, keep_alive
        stats.errors[f"status_{status}"] += 1
        if stats is not ramp:
            fails_by_s[int(sent_at - window["start"])] += 1
        return False, keep_alive

    async def one_fresh(stats, sent_at):
        writer = None

        async def go():
            nonlocal writer
            reader, writer = await asyncio.open_connection(args.host, args.port)
            writer.write(request(True))
            await writer.drain()
            return await read_answer(reader)

        try:
            await timed(stats, go(), sent_at)
        finally:
            if writer is not None:
                writer.close()

    async def fresh_loop():
        tasks = set()
        i = 0
        while True:
            at = launched + i * args.interval
            if at < time.monotonic() - args.interval:  # late: skip the turns already missed
                i = int((time.monotonic() - launched) / args.interval)
                continue
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            i += 1
            now = time.monotonic()
            p = phase(now)
            if p is None:
                break
            stats = ramp if p == "ramp" else fresh
            stats.sent += 1
            t = asyncio.ensure_future(one_fresh(stats, now))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=args.timeout + 1)

    async def keep_loop():
        conn = None
        i = 0
        while True:
            at = launched + i * args.interval
            if at < time.monotonic() - args.interval:  # late: skip the turns already missed
                i = int((time.monotonic() - launched) / args.interval)
                continue
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            i += 1
            now = time.monotonic()
            p = phase(now)
            if p is None:
                break
            stats = ramp if p == "ramp" else keep
            stats.sent += 1

            async def go():
                nonlocal conn
                if conn is None:
                    conn = await asyncio.open_connection(args.host, args.port)
                reader, writer = conn
                writer.write(request(False))
                await writer.drain()
                return await read_answer(reader)

            ok, keep_alive = await timed(stats, go(), now)
            if not ok or not keep_alive:
                if ok:
                    stats.errors["not_kept_alive"] += 1
                if conn is not None:
                    conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    await asyncio.gather(fresh_loop(), keep_loop(), watch() if args.start_file else asyncio.sleep(0))
    both = Stats()
    both.add(fresh)
    both.add(keep)
    timeline = ",".join(f"{k}:{v}" for k, v in sorted(fails_by_s.items())) or "-"
    print(fresh.line("fresh"))
    print(keep.line("keepalive"))
    print(both.line("all") + f" fails_by_s={timeline}")
    print(ramp.line("ramp"), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
