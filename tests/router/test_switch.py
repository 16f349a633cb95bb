"""The hard requirement: switching an app's backends loses no request. Clients keep many
concurrent keep-alive requests (GETs and POSTs) flowing through the router while the table is
switched between backend sets ten times; each old set is stopped after the switch plus a drain
delay. Every single request must succeed."""

from __future__ import annotations

import http.client
import json
import threading
import time

from .conftest import Backend, BackendFactory, Router, app_entry

CLIENTS = 12
SWITCHES = 10
DRAIN = 0.5


def client_loop(router: Router, stop: threading.Event, stats: dict, lock: threading.Lock, n: int) -> None:
    conn = http.client.HTTPConnection(*router.http, timeout=15)
    i = 0
    while not stop.is_set():
        i += 1
        post = i % 3 == 0
        slow = i % 7 == 0
        path = "/sleep?s=0.2" if slow else f"/item/{i}"
        body = json.dumps({"client": n, "i": i}).encode() if post else None
        status, backend, problem = None, None, b""
        try:
            headers = {"Host": "shop.localhost"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request("POST" if post else "GET", path, body=body, headers=headers)
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
            if status == 200:
                got = json.loads(data)
                backend = got["backend"]
                if got["body_bytes"] != len(body or b""):
                    problem = b"body lost: " + data
            else:
                problem = data
        except Exception as e:  # noqa: BLE001 - every failure counts
            problem = repr(e).encode()
            conn.close()
            conn = http.client.HTTPConnection(*router.http, timeout=15)
        with lock:
            stats["total"] += 1
            if status == 200 and not problem:
                stats["by_backend"][backend] = stats["by_backend"].get(backend, 0) + 1
            else:
                stats["failures"].append((status, problem[:200]))
    conn.close()


def test_zero_failures_across_ten_switches(router: Router, backends: BackendFactory) -> None:
    live = [backends.start("set0-a"), backends.start("set0-b")]
    generation = 1
    router.push({"generation": generation, "apps": [app_entry("shop", *live)]})
    stats: dict = {"total": 0, "failures": [], "by_backend": {}}
    lock = threading.Lock()
    stop = threading.Event()
    clients = [
        threading.Thread(target=client_loop, args=(router, stop, stats, lock, n)) for n in range(CLIENTS)
    ]
    for c in clients:
        c.start()
    try:
        time.sleep(0.5)
        for s in range(1, SWITCHES + 1):
            new = [backends.start(f"set{s}-a"), backends.start(f"set{s}-b")]
            generation += 1
            router.push({"generation": generation, "apps": [app_entry("shop", *new)]})
            time.sleep(DRAIN)
            for b in live:
                b.stop()
                backends.running.remove(b)
            live = new
        time.sleep(0.5)
    finally:
        stop.set()
        for c in clients:
            c.join(30)
    assert not stats["failures"], f"{len(stats['failures'])} of {stats['total']} failed: {stats['failures'][:5]}"
    assert stats["total"] > 500, stats["total"]
    # Traffic really moved: the last set served, and every set served something.
    sets = {name.split("-")[0] for name in stats["by_backend"]}
    assert sets == {f"set{i}" for i in range(SWITCHES + 1)}, stats["by_backend"]
    assert router.metric("berth_router_table_generation") == generation
    print(f"requests: {stats['total']}, retries: {router.metric('berth_router_retries_total', app='shop')}")


def test_pooled_connections_to_a_restarted_backend_do_not_fail(
    router: Router, backends: BackendFactory
) -> None:
    """The backend behind an address restarts (its keep-alive connections die): requests on
    the router's pooled connections are resent on fresh ones instead of failing."""
    first = backends.start("first")
    router.push({"generation": 1, "apps": [app_entry("shop", first)]})
    results: list[int] = []

    def burst() -> None:
        results.append(router.get("/sleep?s=0.2", host="shop.localhost").status)

    threads = [threading.Thread(target=burst) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    first.stop()
    backends.running.remove(first)
    second = backends.start("second", port=first.port)
    for i in range(20):
        method = "POST" if i % 2 else "GET"
        r = router.request(method, f"/after/{i}", host="shop.localhost", body=b"x" * i if i % 2 else None)
        assert r.status == 200, (i, r.body)
        assert r.json()["backend"] == "second"
    assert second.port == first.port
