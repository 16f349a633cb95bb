"""Purging an app's logs on the admin listener (`DELETE /v1/apps/{app}/data`, what berthd calls
when an app is destroyed): the app's events go, other apps keep theirs and keep logging, tails
of the purged app end, only an operator token may do it, it is idempotent and survives a
restart."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

from .conftest import OPERATOR_TOKEN, TOKENS, Collector, CollectorFactory, tenants_toml


def purge(c: Collector, app: str, token: str | None = OPERATOR_TOKEN,
          method: str = "DELETE") -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*c.addr("admin"), timeout=60)
    try:
        conn.request(method, f"/v1/apps/{app}/data",
                     headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, body


# Generous rates: these tests push thousands of events at once.
FAST = {"shop": "log_rate = 100000", "billing": "log_rate = 100000"}


def send(c: Collector, app: str, *messages: str) -> None:
    conn = c.json_conn({"app": app, "token": TOKENS[app], "ack": True})
    conn.send(*({"message": m} for m in messages))
    assert conn.wait_ack(len(messages)) == []
    conn.close()


def test_purge_removes_one_apps_logs(collectors: CollectorFactory) -> None:
    c = collectors.start(tenants=tenants_toml(FAST), operator=True)
    send(c, "shop", *(f"shop {i} " + "x" * 200 for i in range(2000)))
    send(c, "billing", *(f"billing {i}" for i in range(300)))
    assert len(c.events("shop", OPERATOR_TOKEN)) == 2000

    # A tail of shop that is waiting for more.
    host, port = c.addr("http")
    tail = http.client.HTTPConnection(host, port, timeout=10)
    tail.request("GET", "/v1/apps/shop/tail", headers={"Authorization": f"Bearer {TOKENS['shop']}"})
    tail_resp = tail.getresponse()
    assert tail_resp.status == 200
    ended: list[Any] = []

    def read_tail() -> None:
        try:
            ended.append(tail_resp.read())  # returns once the stream ends
        except Exception as e:  # noqa: BLE001 - reported below
            ended.append(e)

    reader = threading.Thread(target=read_tail)
    reader.start()
    time.sleep(0.3)

    status, body = purge(c, "shop")
    assert status == 200, body
    assert body["app"] == "shop" and body["purged"] is True
    assert body["segments"] >= 1 and body["bytes"] > 2000 * 200, body
    assert not (c.data_dir / "apps" / "shop").exists()

    reader.join(timeout=10)
    assert not reader.is_alive(), "the purged app's tail did not end"
    assert isinstance(ended[0], bytes), ended
    tail.close()

    assert c.events("shop", OPERATOR_TOKEN) == []
    assert c.events("shop", TOKENS["shop"]) == []
    assert [e["message"] for e in c.events("billing", OPERATOR_TOKEN)] == [
        f"billing {i}" for i in range(300)]

    # Idempotent, for the purged app and one that never logged.
    for app in ("shop", "never-logged"):
        status, body = purge(c, app)
        assert status == 200, body
        assert (body["purged"], body["segments"], body["bytes"]) == (True, 0, 0)

    # The same name logs again from nothing: a new log from sequence 1.
    send(c, "shop", "reborn")
    got = c.events("shop", OPERATOR_TOKEN)
    assert [(e["seq"], e["message"]) for e in got] == [(1, "reborn")]

    c = collectors.restart(c)
    assert [e["message"] for e in c.events("shop", OPERATOR_TOKEN)] == ["reborn"]
    assert len(c.events("billing", OPERATOR_TOKEN)) == 300
    assert c.metric("log_app_purges_total", OPERATOR_TOKEN) == 0  # counted since start


def test_purge_needs_an_operator_token_and_a_valid_name(collector: Collector) -> None:
    send(collector, "shop", "keep me")
    status, _ = purge(collector, "shop", token=None)
    assert status == 401
    for token in (TOKENS["shop"], TOKENS["billing"], "wrong"):
        status, body = purge(collector, "shop", token=token)
        assert status == 403, (token, body)
    for bad in ("Shop", "-x", "a_b", "..", "x" * 40):
        status, body = purge(collector, bad)
        assert status in (400, 404), (bad, body)
        if bad not in ("..",):
            assert status == 400, (bad, body)
    status, _ = purge(collector, "shop", method="GET")
    assert status == 405
    assert [e["message"] for e in collector.events("shop", OPERATOR_TOKEN)] == ["keep me"]
    status, _ = purge(collector, "billing")
    assert status == 200
    assert collector.metric("log_app_purges_total", OPERATOR_TOKEN) == 1


def test_purge_is_refused_without_operator_tokens(open_collector: Collector) -> None:
    conn = open_collector.json_conn({"app": "shop", "ack": True})
    conn.send({"message": "keep me"})
    assert conn.wait_ack(1) == []
    conn.close()
    status, _ = purge(open_collector, "shop")
    assert status == 403
    assert len(open_collector.events("shop")) == 1


def test_other_apps_keep_logging_during_purges(collectors: CollectorFactory) -> None:
    collector = collectors.start(tenants=tenants_toml(FAST), operator=True)
    stop = threading.Event()
    sent: list[int] = []
    errors: list[Any] = []

    def billing_logs() -> None:
        conn = collector.json_conn({"app": "billing", "token": TOKENS["billing"], "ack": True})
        i = 0
        while not stop.is_set():
            conn.send(*({"message": f"b{i + k}"} for k in range(50)))
            errs = conn.wait_ack(50)
            if errs:
                errors.append(errs)
            i += 50
            sent.append(i)
        conn.close()

    t = threading.Thread(target=billing_logs)
    t.start()
    try:
        for round_ in range(5):
            send(collector, "shop", *(f"s{round_}-{i}" for i in range(500)))
            status, body = purge(collector, "shop")
            assert status == 200, body
            assert collector.events("shop", OPERATOR_TOKEN) == []
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:2]
    total = sent[-1]
    got = collector.events("billing", OPERATOR_TOKEN)
    assert [e["message"] for e in got] == [f"b{i}" for i in range(total)]
