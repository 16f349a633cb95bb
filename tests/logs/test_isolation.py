"""Two apps cannot read each other's logs; operators read all; nothing without a token."""

from __future__ import annotations

from .conftest import OPERATOR_TOKEN, TOKENS, Collector


def send(c: Collector, app: str, *messages: str) -> None:
    conn = c.json_conn({"app": app, "token": TOKENS[app], "ack": True})
    conn.send(*({"message": m} for m in messages))
    assert conn.wait_ack(len(messages)) == []
    conn.close()


def test_apps_are_isolated(collector: Collector) -> None:
    send(collector, "shop", "shop secret 1", "shop secret 2")
    send(collector, "billing", "billing secret")
    assert [e["message"] for e in collector.events("shop", TOKENS["shop"])] == [
        "shop secret 1", "shop secret 2"]
    assert [e["message"] for e in collector.events("billing", TOKENS["billing"])] == ["billing secret"]
    for path in ("events", "tail"):
        status, body = collector.http_get(f"/v1/apps/billing/{path}", TOKENS["shop"])
        assert status == 403, body
        status_missing, body_missing = collector.http_get(f"/v1/apps/ghost/{path}", TOKENS["shop"])
        assert (status_missing, body_missing) == (status, body), "no existence oracle"
        status, body = collector.http_get(f"/v1/apps/shop/{path}")
        assert status == 401 and "Bearer" in body["error"]
    status, body = collector.http_get("/v1/apps", TOKENS["shop"])
    assert status == 403
    # The operator sees everything.
    assert len(collector.events("shop", OPERATOR_TOKEN)) == 2
    assert len(collector.events("billing", OPERATOR_TOKEN)) == 1
    status, body = collector.http_get("/v1/apps", OPERATOR_TOKEN)
    assert status == 200
    assert {a["app"] for a in body["apps"]} >= {"shop", "billing"}
    status, body = collector.http_get("/v1/apps/..%2Fetc/events", OPERATOR_TOKEN)
    assert status == 400


def test_query_filters_order_and_cursor(collector: Collector) -> None:
    conn = collector.json_conn({"app": "shop", "token": TOKENS["shop"], "ack": True})
    for i in range(30):
        conn.send({"level": ["debug", "info", "error"][i % 3], "logger": f"shop.m{i % 2}",
                   "message": f"Event number {i}"})
    assert conn.wait_ack(30) == []
    conn.close()
    tok = TOKENS["shop"]
    assert len(collector.events("shop", tok, level="error")) == 10
    assert len(collector.events("shop", tok, level="info")) == 20
    assert len(collector.events("shop", tok, logger="shop.m1")) == 15
    assert len(collector.events("shop", tok, logger="shop")) == 30
    assert [e["message"] for e in collector.events("shop", tok, grep="number%2029")] == ["Event number 29"]
    assert collector.events("shop", tok, grep="NUMBER") == []
    assert len(collector.events("shop", tok, since="1m")) == 30
    assert collector.events("shop", tok, until="1m") == []
    # Newest first, paginated by cursor.
    seen = []
    cursor = None
    while True:
        q = "order=desc&limit=7" + (f"&cursor={cursor}" if cursor else "")
        status, body = collector.http_get(f"/v1/apps/shop/events?{q}", tok)
        assert status == 200
        seen += [e["seq"] for e in body["events"]]
        if not body["more"]:
            break
        cursor = body["cursor"]
    assert seen == list(range(30, 0, -1))
    status, body = collector.http_get("/v1/apps/shop/events?level=loud", tok)
    assert status == 400 and "unknown level" in body["error"]
