#!/usr/bin/env python3
"""Hold many idle keep-alive HTTP/1.1 connections (python3, stdlib only).

    idle_client.py --port 18082 [-n 10000] [--path /index.html] [--concurrency 200]
                   [--timeout 10] [--release-file F] [--hold-max 300]
                   [--tls [--server-name localhost] [--cafile CERT.pem]]

Opens N connections to 127.0.0.1:PORT (at most --concurrency being set up at a time), sends
one `GET PATH` on each and reads the whole answer (Content-Length or chunked), keeping every
connection the server left open. With --tls each connection first completes a TLS handshake
(SNI and Host: --server-name; the certificate verified against --cafile, or not verified at
all without it; ALPN http/1.1; no session reuse, so every handshake is a full one). Then it
prints one line

    READY total=N ok=<200 answers> held=<connections still open> non200={...} errors={...} tls=<version/cipher|-> elapsed_s=T

on stdout and holds the connections, idle, until the file --release-file exists (or
--hold-max seconds pass), then prints

    DONE held=H still_open=S

(S: connections the server had not closed meanwhile) and exits, closing them all.
Used by benches/idle_rss.sh, which reads the server's RSS between READY and the release, and
by benches/abuse.sh (descriptor exhaustion).
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


def compact(counter):
    return json.dumps(dict(counter), separators=(",", ":"), default=str)


async def read_answer(reader, timeout):
    """Read one response; return (status, keep_alive)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    version, status = parts[0], int(parts[1])
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    keep_alive = version == b"HTTP/1.1" and b"close" not in headers.get(b"connection", b"")
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers, up to the empty line
                while (await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)) != b"\r\n":
                    pass
                break
            await asyncio.wait_for(reader.readexactly(size + 2), timeout)
    elif b"content-length" in headers:
        await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), timeout)
    elif status not in (204, 304) and not 100 <= status < 200:
        keep_alive = False  # body delimited by close
    return status, keep_alive


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", "--connections", type=int, default=10000)
    ap.add_argument("--path", default="/index.html")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per step")
    ap.add_argument("--release-file")
    ap.add_argument("--hold-max", type=float, default=300.0)
    ap.add_argument("--tls", action="store_true", help="TLS handshake before the request")
    ap.add_argument("--server-name", default="localhost", help="SNI and Host with --tls")
    ap.add_argument("--cafile", help="trust this CA with --tls (default: no verification)")
    args = ap.parse_args()

    tls = None
    if args.tls:
        tls = ssl.create_default_context(cafile=args.cafile)
        if not args.cafile:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["http/1.1"])
    negotiated = collections.Counter()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print(f"warning: open files limit {new} < {want}", file=sys.stderr)

    host = args.server_name if args.tls else args.host
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {host}:{args.port}\r\n"
        "User-Agent: ringway-idle-client\r\n\r\n"
    ).encode()
    sem = asyncio.Semaphore(args.concurrency)
    held = []
    ok = 0
    non200 = collections.Counter()
    errors = collections.Counter()
    done = 0
    started = time.monotonic()

    async def one():
        nonlocal ok, done
        async with sem:
            writer = None
            try:
                if tls is None:
                    conn = asyncio.open_connection(args.host, args.port)
                else:
                    conn = asyncio.open_connection(
                        args.host, args.port, ssl=tls, server_hostname=args.server_name,
                        ssl_handshake_timeout=args.timeout,
                    )
                reader, writer = await asyncio.wait_for(conn, args.timeout)
                if tls is not None:
                    obj = writer.get_extra_info("ssl_object")
                    negotiated[f"{obj.version()}/{obj.cipher()[0]}"] += 1
                writer.write(request)
                status, keep_alive = await read_answer(reader, args.timeout)
                if status == 200:
                    ok += 1
                else:
                    non200[status] += 1
                if keep_alive:
                    held.append((reader, writer))
                else:
                    errors["closed_by_server"] += 1
                    writer.close()
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
    print(
        f"READY total={args.connections} ok={ok} held={len(held)} "
        f"non200={compact(non200)} errors={compact(errors)} "
        f"tls={','.join(sorted(negotiated)) or '-'} elapsed_s={elapsed:.1f}",
        flush=True,
    )

    deadline = time.monotonic() + args.hold_max
    while time.monotonic() < deadline:
        if args.release_file and os.path.exists(args.release_file):
            break
        await asyncio.sleep(0.2)
    still_open = sum(1 for r, w in held if not r.at_eof() and not w.is_closing())
    print(f"DONE held={len(held)} still_open={still_open}", flush=True)
    for _, w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
