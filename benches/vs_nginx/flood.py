#!/usr/bin/env python3
"""Connection flood for benches/overload.sh (python3, stdlib only).

    flood.py --port P [-n 20000] [--threads 8] [--path /hello]

Makes N TCP connections to 127.0.0.1:PORT, spread over THREADS threads, each in turn:
connect, send one `GET PATH` with `Connection: close`, read until the server closes (or
5 s pass), close. A refused connection (nobody listens) counts as `refused`. Bounded: N
attempts, each with a timeout. Prints one line:

    FLOOD attempts=N status={"503": k, ...} refused=R errors=E elapsed_s=T
"""

import argparse
import collections
import json
import socket
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--path", default="/hello")
    a = ap.parse_args()
    request = f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    lock = threading.Lock()
    status = collections.Counter()
    counts = {"refused": 0, "errors": 0}
    per = [a.n // a.threads + (1 if i < a.n % a.threads else 0) for i in range(a.threads)]

    def worker(k):
        for _ in range(k):
            try:
                s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
            except ConnectionRefusedError:
                with lock:
                    counts["refused"] += 1
                continue
            except OSError:
                with lock:
                    counts["errors"] += 1
                continue
            data = b""
            try:
                s.sendall(request)
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            finally:
                s.close()
            code = data[9:12].decode("ascii", "replace") if data.startswith(b"HTTP/1.") else "none"
            with lock:
                status[code] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        f"FLOOD attempts={a.n} status={json.dumps(dict(status), separators=(',', ':'))} "
        f"refused={counts['refused']} errors={counts['errors']} elapsed_s={time.monotonic() - t0:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
