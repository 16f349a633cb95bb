"""Access logs reach the app's stream in a real log collector (JSON lines, hello with the app
and its token) and can be read back through the collector's HTTP API; a collector that is
down costs requests nothing and is counted as dropped events."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from logs.conftest import TOKENS, CollectorFactory, tenants_toml

from .conftest import BackendFactory, Router, app_entry, free_port


@pytest.fixture
def collectors(request: pytest.FixtureRequest, tmp_path: Path):
    (tmp_path / "collector").mkdir()
    factory = CollectorFactory(request.config, tmp_path / "collector")
    yield factory
    factory.stop_all()


def test_access_logs_arrive_in_the_apps_stream(
    router: Router, backends: BackendFactory, collectors: CollectorFactory
) -> None:
    collector = collectors.start(tenants=tenants_toml())
    host, port = collector.addr("json")
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry(
        "shop", a, version="2.1.0", release="v4",
        logs={"addr": f"{host}:{port}", "token": TOKENS["shop"]})]})
    ids = [f"req-{i}" for i in range(5)]
    for i, rid in enumerate(ids):
        path = f"/page/{i}?q={i}" if i < 4 else "/status/404"
        r = router.get(path, host="shop.localhost", headers={"X-Request-Id": rid})
        assert r.headers["x-request-id"] == rid
    events = collector.wait_events("shop", 5, token=TOKENS["shop"])
    by_id = {e["extra"]["request_id"]: e for e in events}
    assert set(by_id) == set(ids), events
    e = by_id["req-2"]
    assert e["stream"] == "router" and e["version"] == "2.1.0", e
    x = e["extra"]
    assert (x["method"], x["path"], x["status"], x["release"]) == ("GET", "/page/2?q=2", 200, "v4")
    assert x["bytes"] > 0 and x["duration_ms"] >= 0 and x["remote_addr"].startswith("127.0.0.1:")
    assert x["host"] == "shop.localhost"
    assert by_id["req-4"]["extra"]["status"] == 404
    # The other app's stream got nothing.
    assert collector.events("billing", TOKENS["billing"]) == []
    assert router.metric("berth_router_access_log_sent_total") >= 5


def test_unreachable_collector_drops_events_without_failing_requests(
    router: Router, backends: BackendFactory
) -> None:
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry(
        "shop", a, logs={"addr": f"127.0.0.1:{free_port()}", "token": "t"})]})
    started = time.monotonic()
    for _ in range(20):
        assert router.get("/", host="shop.localhost").status == 200
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 10
    while router.metric("berth_router_access_log_dropped_total") < 20:
        assert time.monotonic() < deadline, "dropped events were not counted"
        time.sleep(0.05)


def test_client_gone_before_the_answer_is_logged_as_499(
    router: Router, backends: BackendFactory, collectors: CollectorFactory
) -> None:
    collector = collectors.start(tenants=tenants_toml())
    host, port = collector.addr("json")
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry(
        "shop", a, logs={"addr": f"{host}:{port}", "token": TOKENS["shop"]})]})
    with pytest.raises(OSError):
        router.get("/sleep?s=1", host="shop.localhost", headers={"X-Request-Id": "gone"}, timeout=0.2)
    events = collector.wait_events("shop", 1, token=TOKENS["shop"])
    assert [(e["extra"]["request_id"], e["extra"]["status"]) for e in events] == [("gone", 499)]
    assert router.metric("berth_router_requests_total", app="shop", **{"class": "4xx"}) == 1
    assert router.metric("berth_router_requests_in_flight", app="shop") == 0
