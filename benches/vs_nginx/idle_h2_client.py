#!/usr/bin/env python3
"""Hold many idle HTTP/2 connections over TLS (python3 with the `h2` package).

    idle_h2_client.py --port 18183 [-n 10000] [--path /hello] [--concurrency 200]
                      [--server-name localhost] [--cafile CERT.pem] [--timeout 10]
                      [--release-file F] [--hold-max 300]

Opens N TLS connections to 127.0.0.1:PORT (at most --concurrency being set up at a time;
SNI --server-name, the certificate verified against --cafile, ALPN `h2` only, no session
reuse: a full handshake each), sends the HTTP/2 preface and SETTINGS, one `GET PATH` on
stream 1, and reads until that stream ends. A connection that did not negotiate h2 counts
as an error. Each connection keeps a reader that answers what the server sends (SETTINGS
acks, PINGs, through h2's state machine) and notes GOAWAY or the close. Then it prints

    READY total=N ok=<200 answers> held=<connections still open> non200={...} errors={...} alpn={...} elapsed_s=T

on stdout and holds the connections, idle, until the file --release-file exists (or
--hold-max seconds pass), then prints

    DONE held=H still_open=S goaway=G

(S: connections the server had not closed; G: those that got a GOAWAY meanwhile) and exits,
closing them all. Used by benches/vs_nginx_h2.sh, which reads the proxy's RSS between READY
and the release.
"""

import argparse
import asyncio
import collections
import json
import os
import resource
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events


def compact(counter):
    return json.dumps(dict(counter), separators=(",", ":"), default=str)


class Conn:
    __slots__ = ("reader", "writer", "h2", "closed", "goaway")

    def __init__(self, reader, writer, conn):
        self.reader = reader
        self.writer = writer
        self.h2 = conn
        self.closed = False
        self.goaway = False

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def pump(self):
        """Keep answering the server while idle; note GOAWAY and the close."""
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for ev in self.h2.receive_data(data):
                    if isinstance(ev, h2.events.ConnectionTerminated):
                        self.goaway = True
                self.flush()
        except Exception:  # noqa: BLE001 - any failure ends the connection the same way
            pass
        self.closed = True


async def request(conn, path, authority, timeout):
    """GET path on a new stream; the status, once the stream has ended."""
    sid = conn.h2.get_next_available_stream_id()
    conn.h2.send_headers(
        sid,
        [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", path),
         ("user-agent", "ringway-idle-h2-client")],
        end_stream=True,
    )
    conn.flush()
    status = None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer")
        data = await asyncio.wait_for(conn.reader.read(65536), left)
        if not data:
            raise ConnectionError("closed before the answer ended")
        for ev in conn.h2.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                conn.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                raise ConnectionError(f"stream reset {ev.error_code}")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise ConnectionError(f"GOAWAY {ev.error_code}")
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                conn.flush()
                return status
        conn.flush()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", "--connections", type=int, default=10000)
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per step")
    ap.add_argument("--server-name", default="localhost", help="SNI and :authority")
    ap.add_argument("--cafile", help="trust this CA (default: no verification)")
    ap.add_argument("--release-file")
    ap.add_argument("--hold-max", type=float, default=300.0)
    args = ap.parse_args()

    tls = ssl.create_default_context(cafile=args.cafile)
    if not args.cafile:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["h2"])

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print(f"warning: open files limit {new} < {want}", file=sys.stderr)

    h2conf = h2.config.H2Configuration(client_side=True, header_encoding=None)
    authority = f"{args.server_name}:{args.port}"
    sem = asyncio.Semaphore(args.concurrency)
    held = []
    pumps = []
    ok = 0
    non200 = collections.Counter()
    errors = collections.Counter()
    alpn = collections.Counter()
    done = 0
    started = time.monotonic()

    async def one():
        nonlocal ok, done
        async with sem:
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        args.host, args.port, ssl=tls, server_hostname=args.server_name,
                        ssl_handshake_timeout=args.timeout,
                    ),
                    args.timeout,
                )
                proto = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                alpn[proto or "none"] += 1
                if proto != "h2":
                    raise ConnectionError("no h2 by ALPN")
                c = Conn(reader, writer, h2.connection.H2Connection(config=h2conf))
                c.h2.initiate_connection()
                c.flush()
                status = await request(c, args.path, authority, args.timeout)
                if status == 200:
                    ok += 1
                else:
                    non200[status] += 1
                held.append(c)
                pumps.append(asyncio.ensure_future(c.pump()))
            except Exception as e:  # noqa: BLE001 - every failure is counted by kind
                errors[type(e).__name__] += 1
                if writer is not None:
                    writer.close()
            finally:
                done += 1
                if done % 2000 == 0:
                    print(f"{done}/{args.connections} done, {len(held)} held", file=sys.stderr)

    await asyncio.gather(*(one() for _ in range(args.connections)))
    elapsed = time.monotonic() - started
    still = sum(1 for c in held if not c.closed)
    print(
        f"READY total={args.connections} ok={ok} held={still} "
        f"non200={compact(non200)} errors={compact(errors)} alpn={compact(alpn)} "
        f"elapsed_s={elapsed:.1f}",
        flush=True,
    )

    deadline = time.monotonic() + args.hold_max
    while time.monotonic() < deadline:
        if args.release_file and os.path.exists(args.release_file):
            break
        await asyncio.sleep(0.2)
    still = sum(1 for c in held if not c.closed)
    goaway = sum(1 for c in held if c.goaway)
    print(f"DONE held={len(held)} still_open={still} goaway={goaway}", flush=True)
    for c in held:
        c.writer.close()
    for p in pumps:
        p.cancel()


if __name__ == "__main__":
    asyncio.run(main())
