"""Routing by Host and by path prefix, the headers the app sees, and the answers the router
gives itself (404, 503, 413, 504, 503 for concurrency), against real granian backends."""

from __future__ import annotations

import http.client
import socket
import re
import threading
import time

from .conftest import Backend, BackendFactory, Router, app_entry, free_port


def test_routes_by_host_and_prefix(router: Router, backends: BackendFactory) -> None:
    a, b = backends.start("a"), backends.start("b")
    router.push({
        "generation": 1,
        "apps": [
            app_entry("shop", a, hosts=["shop.example.com"], version="1.0.0"),
            app_entry("blog", b, prefix="/blog"),
        ],
    })
    for host in ["shop.localhost", "SHOP.LocalHost:8080", "shop.localhost.", "shop.example.com"]:
        r = router.get("/cart?x=1", host=host)
        assert r.status == 200, (host, r.body)
        got = r.json()
        assert got["backend"] == "a" and got["path"] == "/cart" and got["query"] == "x=1", got
        assert "x-berth-script-name" not in got["headers"]
    # The blog is reachable by its host too (without a script name) and under its prefix.
    assert router.get("/", host="blog.localhost").json()["backend"] == "b"
    r = router.get("/blog/posts/7?full=1", host="localhost:8080")
    got = r.json()
    assert (got["backend"], got["path"], got["query"]) == ("b", "/posts/7", "full=1")
    assert got["headers"]["x-berth-script-name"] == "/blog"
    assert router.get("/blog", host="127.0.0.1").json()["path"] == "/"
    assert router.get("/blogroll", host="localhost").status == 404
    # A client cannot forge the script name on a host route.
    got = router.get("/", host="shop.localhost", headers={"X-Berth-Script-Name": "/evil"}).json()
    assert "x-berth-script-name" not in got["headers"]

    r = router.get("/", host="nobody.localhost")
    assert r.status == 404
    assert b"nobody.localhost" in r.body
    assert r.headers["content-type"].startswith("text/plain")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_request_id_and_forwarded_headers(router: Router, backends: BackendFactory) -> None:
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry("shop", a)]})
    r = router.get("/", host="shop.localhost:8080")
    got = r.json()["headers"]
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and got["x-request-id"] == rid
    assert got["x-forwarded-for"] == "127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == "shop.localhost:8080"
    assert got["host"] == "shop.localhost:8080"
    # A sane incoming id is kept; forged forwarding headers are replaced.
    r = router.get("/", host="shop.localhost", headers={
        "X-Request-Id": "req-42.abc", "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"})
    got = r.json()["headers"]
    assert r.headers["x-request-id"] == "req-42.abc" == got["x-request-id"]
    assert got["x-forwarded-for"] == "127.0.0.1" and got["x-forwarded-proto"] == "http"
    # An insane one is replaced.
    r = router.get("/", host="shop.localhost", headers={"X-Request-Id": "a b" * 100})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert r.json()["headers"]["x-request-id"] == r.headers["x-request-id"]


def test_unix_socket_backend_and_load_balancing(router: Router, backends: BackendFactory) -> None:
    u = backends.start("unix", uds=True)
    t = backends.start("tcp")
    router.push({"generation": 1, "apps": [app_entry("shop", u, t)]})
    seen = {router.get("/", host="shop.localhost").json()["backend"] for _ in range(20)}
    assert seen == {"unix", "tcp"}


def test_no_healthy_backend_is_503(router: Router) -> None:
    dead = f"127.0.0.1:{free_port()}"
    router.push({"generation": 1, "apps": [app_entry("empty"), app_entry("dead", dead)]})
    for host in ["empty.localhost", "dead.localhost"]:
        r = router.get("/", host=host)
        assert r.status == 503, (host, r.body)
        assert b"no healthy backend" in r.body
        assert r.headers["retry-after"] == "1"
    assert router.metric("berth_router_refused_total", app="dead", reason="no_backend") >= 1


def test_body_limit_is_413(router: Router, backends: BackendFactory) -> None:
    a = backends.start("a")
    router.push({"generation": 1, "apps": [
        app_entry("shop", a, limits={"max_body_bytes": "1KiB"}),
        app_entry("big", a, limits={"max_body_bytes": 200000}),
    ]})
    ok = router.request("POST", "/", host="shop.localhost", body=b"x" * 1024)
    assert ok.status == 200 and ok.json()["body_bytes"] == 1024
    r = router.request("POST", "/", host="shop.localhost", body=b"x" * 1025)
    assert r.status == 413, r.body
    # A chunked body has no declared length: cut off once it passes the limit.
    with socket.create_connection(router.http, timeout=10) as s:
        chunk = b"258\r\n" + b"y" * 600 + b"\r\n"
        s.sendall(b"POST / HTTP/1.1\r\nHost: shop.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunk * 3 + b"0\r\n\r\n")
        assert s.makefile("rb").readline().startswith(b"HTTP/1.1 413 ")
    # Streamed (above the retry buffer) bodies under the limit arrive whole.
    r = router.request("POST", "/", host="big.localhost", body=b"z" * 150000)
    assert r.status == 200 and r.json()["body_bytes"] == 150000
    assert router.metric("berth_router_refused_total", app="shop", reason="body_too_large") == 2
    assert router.metric("berth_router_request_bytes_total", app="big") == 150000


def test_request_timeout_is_504(router: Router, backends: BackendFactory) -> None:
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry("shop", a, limits={"request_timeout": "300ms"})]})
    started = time.monotonic()
    r = router.get("/sleep?s=3", host="shop.localhost")
    took = time.monotonic() - started
    assert r.status == 504, r.body
    assert took < 2.0, took
    assert router.get("/", host="shop.localhost").status == 200


def test_concurrency_limit_is_503_with_retry_after(router: Router, backends: BackendFactory) -> None:
    a = backends.start("a", threads=8)
    router.push({"generation": 1, "apps": [app_entry("shop", a, limits={"max_concurrent_requests": 2})]})
    results: list[int] = []

    def slow() -> None:
        results.append(router.get("/sleep?s=1.5", host="shop.localhost").status)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 5
    while router.metric("berth_router_requests_in_flight", app="shop") < 2:
        assert time.monotonic() < deadline, "the slow requests never got in flight"
        time.sleep(0.02)
    started = time.monotonic()
    r = router.get("/", host="shop.localhost")
    assert r.status == 503 and r.headers["retry-after"] == "1", r.body
    assert time.monotonic() - started < 0.5, "refused at once, not queued"
    for th in threads:
        th.join()
    assert results == [200, 200]
    assert router.get("/", host="shop.localhost").status == 200
    assert router.metric("berth_router_requests_in_flight", app="shop") == 0


def test_header_limits(routers, backends: BackendFactory) -> None:
    router = routers.start('max_header_bytes = "8KiB"\nmax_headers = 20\n')
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry("shop", a)]})
    assert router.get("/", host="shop.localhost", headers={"X-Big": "v" * 4000}).status == 200
    r = router.get("/", host="shop.localhost", headers={"X-Big": "v" * 9000})
    assert r.status == 431
    many = {f"X-H{i}": "1" for i in range(30)}
    assert router.get("/", host="shop.localhost", headers=many).status == 431


def test_metrics_per_app(router: Router, backends: BackendFactory) -> None:
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry("shop", a)]})
    for _ in range(5):
        assert router.get("/", host="shop.localhost").status == 200
    assert router.get("/status/404", host="shop.localhost").status == 404
    assert router.metric("berth_router_requests_total", app="shop", **{"class": "2xx"}) == 5
    assert router.metric("berth_router_requests_total", app="shop", **{"class": "4xx"}) == 1
    assert router.metric("berth_router_request_duration_seconds_count", app="shop") == 6
    assert router.metric("berth_router_response_bytes_total", app="shop") > 0
    assert router.metric("berth_router_table_generation") == 1
    # /metrics needs the operator token when operators are configured.
    assert router.admin("GET", "/metrics", token=None).status == 401
    assert router.admin("GET", "/healthz", token=None).status == 200


def test_http10_backend_keeps_client_keep_alive(router: Router, tmp_path) -> None:
    """Python's http.server answers HTTP/1.0 and closes every connection: the client still
    gets HTTP/1.1 on one kept-alive connection, and every request succeeds."""
    import sys

    from support.procs import ServerProcess

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello\n")
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(tmp_path / "www")], tmp_path / "logs", "http-server")
    try:
        server.wait_port("127.0.0.1", port)
        router.push({"generation": 1, "apps": [app_entry("files", f"127.0.0.1:{port}")]})
        conn = http.client.HTTPConnection(*router.http, timeout=10)
        for _ in range(10):
            conn.request("GET", "/hello.txt", headers={"Host": "files.localhost"})
            resp = conn.getresponse()
            assert (resp.status, resp.version, resp.read()) == (200, 11, b"hello\n")
            assert not resp.will_close
        conn.close()
        assert router.metric("berth_router_connections_total") == 1
    finally:
        server.stop()


def test_connection_limit_and_idle_timeout(routers, backends: BackendFactory) -> None:
    router = routers.start('max_connections = 2\nheader_timeout = "1s"\n')
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry("shop", a)]})
    first = http.client.HTTPConnection(*router.http, timeout=10)
    second = http.client.HTTPConnection(*router.http, timeout=10)
    for c in (first, second):
        c.request("GET", "/", headers={"Host": "shop.localhost"})
        assert c.getresponse().read()
    # Both permits are held by idle keep-alive connections: a third waits in the backlog.
    third = socket.create_connection(router.http, timeout=0.5)
    third.sendall(b"GET / HTTP/1.1\r\nHost: shop.localhost\r\n\r\n")
    try:
        third.recv(100)
        raise AssertionError("a third connection was served past max_connections = 2")
    except socket.timeout:
        pass
    # Idle connections are closed after header_timeout, which frees the permits.
    third.settimeout(5)
    started = time.monotonic()
    assert third.recv(100).startswith(b"HTTP/1.1 200 ")
    assert 0.3 < time.monotonic() - started < 3
    third.close()
    first.close()
    second.close()
    # A client that sends nothing is disconnected after header_timeout.
    with socket.create_connection(router.http, timeout=5) as idle:
        started = time.monotonic()
        assert idle.recv(100) == b""
        assert 0.5 < time.monotonic() - started < 3
