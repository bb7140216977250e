#!/usr/bin/env python3
"""A DEMO backend for conf/ringway.toml: listens on 127.0.0.1:9000 (the demo CLB) and answers
every request with a JSON echo of what it received — method, path, query, headers and body —
so you can see what the gateway sent: mapped params, X-Api-SecretId, X-Api-Subject, constants.

    python3 conf/demo/echo_backend.py [port]
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        path, _, query = self.path.partition("?")
        out = json.dumps(
            {
                "method": self.command,
                "path": path,
                "query": query,
                "headers": dict(self.headers.items()),
                "body": body,
            },
            indent=2,
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _echo

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()
