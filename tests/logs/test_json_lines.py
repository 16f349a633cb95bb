"""Raw JSON lines: hello, acks after fsync, bad input answered per line while the connection
stays usable, authentication."""

from __future__ import annotations

import json

from .conftest import OPERATOR_TOKEN, TOKENS, Collector


def test_ack_mode_and_fields(collector: Collector) -> None:
    c = collector.json_conn({"app": "shop", "token": TOKENS["shop"], "ack": True})
    c.send(
        {"timestamp": 1700000000.25, "level": "ERROR", "logger": "shop.db", "message": "db down",
         "exception": "Traceback (most recent call last):\n  ...\nOSError: boom",
         "version": "1.4.0", "instance": "web.2", "stream": "stderr", "extra": {"order": 17},
         "request_id": "r-9"},
        {"level": 20, "message": "python numeric level"},
    )
    assert c.wait_ack(2) == []
    # Acknowledged means durable and readable.
    got = collector.events("shop", TOKENS["shop"])
    c.close()
    assert len(got) == 2
    e = got[0]
    assert e["timestamp"] == "2023-11-14T22:13:20.250000Z"
    assert (e["level"], e["logger"], e["version"], e["instance"], e["stream"]) == (
        "error", "shop.db", "1.4.0", "web.2", "stderr")
    assert e["exception"].endswith("OSError: boom")
    assert e["extra"] == {"order": 17, "request_id": "r-9"}
    assert got[1]["level"] == "info"
    assert got[1]["seq"] == got[0]["seq"] + 1


def test_bad_lines_are_answered_and_the_connection_goes_on(collectors) -> None:
    c0 = collectors.start(config="max_message_bytes = \"1KiB\"\nmax_buffer_bytes = \"64KiB\"\n")
    c = c0.json_conn({"app": "shop", "ack": True})
    c.send_raw(b"{broken json\n")
    c.send_raw(b'{"message": "caf\xe9"}\n')
    c.send_raw(b'{"message": "' + b"x" * 5000 + b'"}\n')
    c.send_raw(b"[1, 2]\n")
    c.send_raw(b'{"level": "loud", "message": "x"}\n')
    c.send({"message": "still fine"})
    errors = c.wait_ack(6)
    assert [e["line"] for e in errors] == [1, 2, 3, 4, 5]
    assert "invalid JSON" in errors[0]["error"]
    assert "UTF-8" in errors[1]["error"]
    assert "limit of 1024 bytes" in errors[2]["error"]
    assert "unknown level" in errors[4]["error"]
    got = c0.events("shop")
    assert [e["message"] for e in got] == ["still fine"]
    c.close()
    assert c0.metric("log_invalid_json_total") == 4
    assert c0.metric("log_bad_frames_total") == 1


def test_tenants_require_a_hello_with_a_valid_token(collector: Collector) -> None:
    c = collector.json_conn()
    c.send({"app": "shop", "message": "no hello"})
    r = c.reply()
    assert "authentication required" in r["error"], r
    assert c.file.readline() == b"", "connection closed after refusing"
    c.close()
    c = collector.json_conn()
    r = c.hello({"app": "shop", "token": TOKENS["billing"]})
    assert r["error"] == "authentication failed"
    c.close()
    # A token of app B does not open app A, and the app does not leak through the answer.
    c = collector.json_conn()
    r2 = c.hello({"app": "nosuchapp", "token": "x"})
    assert r2 == r
    c.close()
    assert collector.events("shop", TOKENS["shop"]) == []


def test_without_tenants_events_may_name_their_app(open_collector: Collector) -> None:
    c = open_collector.json_conn()
    c.send({"app": "alpha", "message": "a"}, {"app": "beta", "message": "b"}, {"message": "d"})
    c.close()
    assert [e["message"] for e in open_collector.wait_events("alpha", 1)] == ["a"]
    assert [e["message"] for e in open_collector.wait_events("beta", 1)] == ["b"]
    assert [e["message"] for e in open_collector.wait_events("default", 1)] == ["d"]


def test_many_connections_many_events(open_collector: Collector) -> None:
    conns = [open_collector.json_conn({"app": "bulk", "ack": True}) for _ in range(8)]
    for i, c in enumerate(conns):
        c.send_raw(b"".join(json.dumps({"message": f"c{i} e{j}"}).encode() + b"\n" for j in range(500)))
    for c in conns:
        assert c.wait_ack(500) == []
        c.close()
    got = open_collector.events("bulk")
    assert len(got) == 4000
    assert [e["seq"] for e in got] == list(range(1, 4001))


def test_revoked_token_closes_the_connection_on_reload(collector: Collector) -> None:
    import signal as _signal
    import time as _time
    from pathlib import Path as _Path

    c = collector.json_conn({"app": "shop", "token": TOKENS["shop"], "ack": True})
    c.send({"message": "before"})
    assert c.wait_ack(1) == []
    tenants = _Path(collector.argv[collector.argv.index("--tenants") + 1])
    tenants.write_text(tenants.read_text().replace(TOKENS["shop"], "a-new-shop-token"))
    collector.process.send_signal(_signal.SIGHUP)
    # The reload runs in the background: once it is in, the old token is refused.
    deadline = _time.monotonic() + 10
    while True:
        probe = collector.json_conn()
        r = probe.hello({"app": "shop", "token": TOKENS["shop"]})
        probe.close()
        if "error" in r:
            break
        assert _time.monotonic() < deadline, "tenants were not reloaded on SIGHUP"
        _time.sleep(0.05)
    c.send({"message": "after revocation"})
    r = c.reply()
    assert "revoked" in r["error"], r
    assert c.file.readline() == b""
    c.close()
    assert [e["message"] for e in collector.events("shop", OPERATOR_TOKEN)] == ["before"]
