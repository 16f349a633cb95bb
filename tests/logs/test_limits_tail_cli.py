"""Rate limits with a clear error, live tail (resumable, no duplicates or gaps), `berth logs`."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from typing import Any, Iterator

from .conftest import OPERATOR_TOKEN, TOKENS, Collector, CollectorFactory, tenants_toml


def test_rate_limit_answers_clearly_and_counts_drops(collectors: CollectorFactory) -> None:
    c = collectors.start(tenants=tenants_toml({"shop": "log_rate = 20"}), operator=True)
    conn = c.json_conn({"app": "shop", "token": TOKENS["shop"], "ack": True})
    conn.send(*({"message": f"m{i}"} for i in range(100)))
    errors = conn.wait_ack(100)
    conn.close()
    assert errors, "no rate-limit error"
    assert "rate limit exceeded for app shop: at most 20 events per second" in errors[0]["error"]
    assert errors[0]["last"] == 100
    stored = c.events("shop", TOKENS["shop"])
    assert 20 <= len(stored) < 100
    assert c.metric("log_events_dropped_total", OPERATOR_TOKEN, app="shop", reason="rate_limit") == 100 - len(stored)
    # billing has the default limit and is not affected by shop's flood.
    conn = c.json_conn({"app": "billing", "token": TOKENS["billing"], "ack": True})
    conn.send(*({"message": f"m{i}"} for i in range(100)))
    assert conn.wait_ack(100) == []
    conn.close()


class Tail:
    """A server-sent events reader over http.client."""

    def __init__(self, c: Collector, path: str, token: str | None, last_id: int | None = None) -> None:
        host, port = c.addr("http")
        self.conn = http.client.HTTPConnection(host, port, timeout=10)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        assert self.resp.getheader("content-type").startswith("text/event-stream")

    def events(self, n: int) -> list[dict[str, Any]]:
        out = []
        data = ""
        while len(out) < n:
            line = self.resp.fp.readline().decode()
            assert line, "tail ended"
            line = line.rstrip("\r\n")
            if line.startswith("data:"):
                data += line[5:].lstrip(" ")
            elif line == "" and data:
                out.append(json.loads(data))
                data = ""
        return out

    def close(self) -> None:
        self.conn.close()


def send(c: Collector, *messages: str, app: str = "shop") -> None:
    conn = c.json_conn({"app": app, "token": TOKENS.get(app), "ack": True})
    conn.send(*({"message": m} for m in messages))
    assert conn.wait_ack(len(messages)) == []
    conn.close()


def test_tail_is_live_and_resumes_without_duplicates_or_gaps(collector: Collector) -> None:
    tok = TOKENS["shop"]
    send(collector, "a", "b", "c")
    t = Tail(collector, "/v1/apps/shop/tail?cursor=0", tok)
    assert [e["message"] for e in t.events(3)] == ["a", "b", "c"]
    started = time.monotonic()
    send(collector, "d")
    (d,) = t.events(1)
    assert d["message"] == "d" and d["seq"] == 4
    assert time.monotonic() - started < 5
    t.close()
    send(collector, "e", "f")
    # Resume from the last id seen: exactly the rest.
    t = Tail(collector, "/v1/apps/shop/tail", tok, last_id=4)
    assert [(e["seq"], e["message"]) for e in t.events(2)] == [(5, "e"), (6, "f")]
    send(collector, "g")
    assert [e["message"] for e in t.events(1)] == ["g"]
    t.close()
    # Filters apply to the tail too.
    t = Tail(collector, "/v1/apps/shop/tail?cursor=0&grep=f", tok)
    assert [e["message"] for e in t.events(1)] == ["f"]
    t.close()


def berth(c: Collector, *args: str, token: str | None = None, **kw: Any) -> subprocess.CompletedProcess:
    env = dict(os.environ, BERTH_LOGS_URL="http://%s:%d" % c.addr("http"))
    env.pop("BERTH_TOKEN", None)
    if token:
        env["BERTH_TOKEN"] = token
    binary = c.argv[0].replace("log-collector", "berth")
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=30, **kw)


def test_berth_logs_cli(collector: Collector) -> None:
    conn = collector.json_conn({"app": "shop", "token": TOKENS["shop"], "ack": True})
    conn.send(
        {"level": "info", "logger": "shop.web", "message": "GET / 200", "instance": "web.1"},
        {"level": "error", "logger": "shop.db", "message": "timeout talking to db",
         "exception": "Traceback (most recent call last):\nTimeoutError"},
        {"level": "warning", "message": "slow request"},
    )
    assert conn.wait_ack(3) == []
    conn.close()
    r = berth(collector, "logs", "shop", token=TOKENS["shop"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("shop[web.1] INFO shop.web: GET / 200"), lines
    assert "ERROR shop.db: timeout talking to db" in lines[1]
    assert lines[2] == "    Traceback (most recent call last):"
    assert lines[3] == "    TimeoutError"
    assert lines[4].endswith("shop WARNING: slow request")
    r = berth(collector, "logs", "shop", "--level", "error", "--json", token=TOKENS["shop"])
    (only,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert only["message"] == "timeout talking to db"
    r = berth(collector, "logs", "shop", "--grep", "slow", "--since", "10m", token=TOKENS["shop"])
    assert r.stdout.strip().endswith("slow request") and len(r.stdout.splitlines()) == 1
    r = berth(collector, "logs", "shop", "-n", "1", token=TOKENS["shop"])
    assert r.stdout.strip().endswith("slow request")
    r = berth(collector, "logs", "shop", token=TOKENS["billing"])
    assert r.returncode == 1
    assert "403" in r.stderr and "BERTH_TOKEN" in r.stderr
    r = berth(collector, "logs", "shop", token=OPERATOR_TOKEN)
    assert r.returncode == 0 and "slow request" in r.stdout


def test_berth_logs_tail_follows(collector: Collector) -> None:
    env = dict(os.environ, BERTH_LOGS_URL="http://%s:%d" % collector.addr("http"),
               BERTH_TOKEN=TOKENS["shop"])
    send(collector, "before")
    binary = collector.argv[0].replace("log-collector", "berth")
    p = subprocess.Popen([binary, "logs", "shop", "--tail", "-n", "5"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().rstrip().endswith("INFO: before")
        send(collector, "live 1", "live 2")
        assert p.stdout.readline().rstrip().endswith("INFO: live 1")
        assert p.stdout.readline().rstrip().endswith("INFO: live 2")
    finally:
        p.terminate()
        p.wait(10)
