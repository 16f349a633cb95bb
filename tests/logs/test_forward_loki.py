"""Forwarding to Loki's push API. No Loki is packaged for Debian, so a stand-in HTTP server
records the pushes it accepts and checks them against Loki's documented JSON push format
(POST /loki/api/v1/push: streams of labels + [ns timestamp, line] values); it refuses the
first push with a 500 to prove the collector retries without losing or reordering events."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .conftest import CollectorFactory


def test_events_are_pushed_in_order_and_retried(collectors: CollectorFactory) -> None:
    accepted: list[dict] = []
    seen = {"requests": 0, "headers": None}

    class Loki(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen["requests"] += 1
            seen["headers"] = dict(self.headers)
            assert self.path == "/loki/api/v1/push"
            if seen["requests"] == 1:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"ingester not ready")
                return
            accepted.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Loki)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        c = collectors.start(config=f'forward_loki = "http://127.0.0.1:{port}"\nforward_loki_org = "berth"\n')
        conn = c.json_conn({"app": "shop", "ack": True})
        conn.send(*({"message": f"m{i}", "level": "error" if i % 5 == 0 else "info"} for i in range(300)))
        assert conn.wait_ack(300) == []
        conn.close()
        deadline = time.monotonic() + 20
        lines: list[tuple[str, str, dict]] = []
        while True:
            lines = [(s["stream"]["level"], v[0], json.loads(v[1]))
                     for push in list(accepted) for s in push["streams"] for v in s["values"]]
            if len(lines) >= 300 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(lines) == 300, f"{len(lines)} events pushed"
        assert sorted(e["seq"] for _, _, e in lines) == list(range(1, 301)), "each event once"
        for level, ts, e in lines:
            assert level == e["level"]
            assert ts.isdigit() and len(ts) == 19
        for push in accepted:
            for s in push["streams"]:
                assert s["stream"]["app"] == "shop" and s["stream"]["source"] == "berth"
                seqs = [json.loads(v[1])["seq"] for v in s["values"]]
                assert seqs == sorted(seqs), "in order within a stream"
        assert seen["headers"]["X-Scope-OrgID"] == "berth"
        assert c.metric("log_forward_loki_errors_total") >= 1
        assert c.metric("log_forward_loki_events_total") == 300
    finally:
        server.shutdown()
