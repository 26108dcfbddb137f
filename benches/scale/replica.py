#!/usr/bin/env python3
"""A simulated registry replica for benches/scale.sh: serves one deep-health document for
every registry on it (64 storage accounts + auth), on a loopback address.

    replica.py --listen 127.0.20.1:8080 --region westeurope

  GET  /health               the document; 200 when every dependency is healthy, else 503
                             {"status":"unhealthy", ...} with the failed ones "unhealthy"
  GET  /                     200 (the front door)
  GET  /state                the failed dependencies, JSON
  POST /fail?dep=storage-07  fail one dependency (repeatable)
  POST /recover              mend every dependency
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEPENDENCIES = [f"storage-{k:02}" for k in range(64)] + ["auth"]


class Replica:
    def __init__(self, region):
        self.region = region
        self.failed = set()
        self.lock = threading.Lock()
        self.health_gets = 0

    def document(self):
        with self.lock:
            failed = set(self.failed)
            self.health_gets += 1
        checks = {d: {"status": "unhealthy" if d in failed else "healthy"} for d in DEPENDENCIES}
        doc = {"status": "unhealthy" if failed else "healthy", "region": self.region, "checks": checks}
        return (503 if failed else 200), json.dumps(doc, separators=(",", ":")).encode()


def handler_for(replica):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the prober reuses connections

        def log_message(self, *args):  # quiet: one probe per interval per target
            pass

        def reply(self, code, body, ctype="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = urlsplit(self.path).path
            if path == "/health":
                self.reply(*replica.document())
            elif path == "/":
                self.reply(200, b"ok\n", "text/plain")
            elif path == "/state":
                with replica.lock:
                    body = {"region": replica.region, "failed": sorted(replica.failed),
                            "health_gets": replica.health_gets}
                self.reply(200, json.dumps(body).encode())
            else:
                self.reply(404, b'{"error":"not found"}')

        def do_POST(self):
            u = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            q = parse_qs(u.query)
            if u.path == "/fail":
                deps = q.get("dep", [])
                unknown = [d for d in deps if d not in DEPENDENCIES]
                if not deps or unknown:
                    self.reply(400, json.dumps({"error": f"unknown or missing dep: {unknown}"}).encode())
                    return
                with replica.lock:
                    replica.failed.update(deps)
                self.reply(200, b"failed\n", "text/plain")
            elif u.path == "/recover":
                with replica.lock:
                    replica.failed.clear()
                self.reply(200, b"recovered\n", "text/plain")
            else:
                self.reply(404, b'{"error":"not found"}')

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="HOST:PORT (loopback)")
    ap.add_argument("--region", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    if not host.startswith("127."):
        sys.exit(f"replica.py: refusing to listen on {host}: loopback only")
    server = ThreadingHTTPServer((host, int(port)), handler_for(Replica(a.region)))
    server.daemon_threads = True
    print(f"replica {a.region} listening on {a.listen}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
