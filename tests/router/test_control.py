"""The control API berthd uses (PUT/GET /v1/routes on the admin listener): authentication,
validation, generations, the stored table across restarts (SIGTERM and kill -9), and
graceful shutdown."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time

from .conftest import (
    CONTROL_TOKEN,
    OPERATOR_TOKEN,
    BackendFactory,
    Router,
    RouterFactory,
    app_entry,
)


def table(generation: int, *apps: dict) -> dict:
    return {"generation": generation, "apps": list(apps)}


def test_control_endpoint_refuses_missing_and_wrong_tokens(router: Router) -> None:
    t = table(1, app_entry("shop", "127.0.0.1:9"))
    r = router.put_routes(t, token=None)
    assert r.status == 401 and r.headers["www-authenticate"] == "Bearer"
    assert router.put_routes(t, token="wrong-token").status == 403
    # An operator may read the table and metrics, but not replace it.
    assert router.put_routes(t, token=OPERATOR_TOKEN).status == 403
    assert router.admin("GET", "/v1/routes", token=None).status == 401
    assert router.admin("GET", "/v1/routes", token="wrong").status == 403
    assert router.admin("GET", "/v1/routes").json() == {"generation": 0, "apps": []}
    assert router.metric("berth_router_table_generation") == 0
    assert router.put_routes(t).status == 200
    assert router.admin("GET", "/v1/routes", token=OPERATOR_TOKEN).json()["generation"] == 1


def test_without_control_tokens_the_table_cannot_be_pushed(routers: RouterFactory) -> None:
    router = routers.start(control=False)
    r = router.put_routes(table(1))
    assert r.status == 403 and b"no control_tokens" in r.body
    assert router.admin("GET", "/v1/routes").status == 403


def test_validation_and_generations(router: Router) -> None:
    cases = [
        (b"{not json", "invalid route table JSON"),
        (json.dumps(table(1, {"name": "Bad_Name"})).encode(), "invalid app name"),
        (json.dumps(table(1, {"name": "a", "backends": ["nohost"]})).encode(), "host:port"),
        (json.dumps(table(1, {"name": "a", "prefix": "/x/"})).encode(), "prefix"),
        (json.dumps(table(1, {"name": "a"}, {"name": "b", "hosts": ["a.localhost"]})).encode(),
         "claimed by both"),
        (json.dumps({"generation": 1, "apps": [], "extra": 1}).encode(), "unknown field"),
    ]
    for body, want in cases:
        r = router.put_routes(body)
        assert r.status == 400, (body, r.body)
        assert want in r.json()["error"], (want, r.json())
    assert router.admin("GET", "/v1/routes").json()["generation"] == 0

    t5 = table(5, app_entry("shop", "127.0.0.1:9", logs={"addr": "127.0.0.1:5170", "token": "s3cret"}))
    r = router.put_routes(t5)
    assert r.status == 200 and r.json() == {"generation": 5, "applied": True, "apps": 1}
    r = router.put_routes(t5)
    assert r.status == 200 and r.json()["applied"] is False
    r = router.put_routes(table(5))
    assert r.status == 409 and r.json()["generation"] == 5
    r = router.put_routes(table(3))
    assert r.status == 409 and "generation 3" in r.json()["error"]
    # The log token is write-only: reading the table shows its hash.
    got = router.admin("GET", "/v1/routes").json()
    logs = got["apps"][0]["logs"]
    assert "token" not in logs
    assert logs["token_sha256"] == hashlib.sha256(b"s3cret").hexdigest()
    assert router.metric("berth_router_tables_refused_total") == len(cases) + 2


def test_table_survives_restart_and_kill_9(routers: RouterFactory, backends: BackendFactory) -> None:
    a = backends.start("a")
    router = routers.start()
    router.push(table(7, app_entry("shop", a, prefix="/shop")))
    stored = router.data_dir / "routes.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    for kill in (False, True):
        router = routers.restart(router, kill=kill)
        # The first request after the LISTEN lines is served from the stored table.
        r = router.get("/shop/x", host="localhost")
        assert r.status == 200 and r.json()["path"] == "/x", (kill, r.body)
        assert router.admin("GET", "/v1/routes").json()["generation"] == 7
        assert router.metric("berth_router_table_generation") == 7
    r = router.put_routes(table(8, app_entry("shop", a)))
    assert r.status == 200
    router = routers.restart(router, kill=True)
    assert router.get("/shop/x", host="localhost").status == 404
    assert router.get("/x", host="shop.localhost").status == 200


def test_sigterm_lets_in_flight_requests_finish(routers: RouterFactory, backends: BackendFactory) -> None:
    a = backends.start("a")
    router = routers.start('drain_timeout = "10s"\n')
    router.push(table(1, app_entry("shop", a)))
    result: list = []
    th = threading.Thread(target=lambda: result.append(router.get("/sleep?s=1", host="shop.localhost")))
    th.start()
    deadline = time.monotonic() + 5
    while router.metric("berth_router_requests_in_flight", app="shop") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    router.process.send_signal(signal.SIGTERM)
    th.join(10)
    assert result and result[0].status == 200, result
    assert router.process.wait_exit(10) == 0, router.process.describe()
