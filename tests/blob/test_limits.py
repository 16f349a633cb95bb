"""Every limit is configurable and enforced: the object size (413), an app's requests in flight
(429), the body idle timeout (408, nothing stored) and the header timeout (which must not
disturb normal clients)."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest

from .conftest import (
    KIB,
    BlobServer,
    BlobServerFactory,
    assert_error,
    curl,
    rand_bytes,
    upload_headers,
    wait_until,
)

TENANTS_LIMITED = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "64MiB"
max_object_bytes = "256KiB"
max_connections = 2

[[app]]
name = "beta"
token = "tokB"
blob_bytes = "64MiB"
"""


def _nothing_left(s: BlobServer, used: int) -> None:
    st = s.alpha.stats()
    assert (st["bytes_used"], st["bytes_reserved"]) == (used, 0), st
    assert list((s.data_dir / "tmp").iterdir()) == []


def test_max_object_bytes(blob_servers: BlobServerFactory, tmp_path: Path) -> None:
    s = blob_servers.start(tenants=TENANTS_LIMITED)
    a = s.alpha
    limit = 256 * KIB
    assert a.stats()["max_object_bytes"] == limit
    # Declared too large: refused from the headers alone, before any body byte is sent.
    raw = s.raw()
    raw.send(upload_headers("/buckets/b/keys/big", "tokA", limit + 1))
    assert_error(raw.read_response(timeout=5), 413, "too_large")
    raw.close()
    raw = s.raw()
    raw.send(upload_headers("/blobs", "tokA", 10 * 1024 * 1024 * 1024, method="POST"))
    assert_error(raw.read_response(timeout=5), 413, "too_large")
    raw.close()
    # Exactly the limit is fine.
    a.put_ok("/buckets/b/keys/exact", rand_bytes(limit, "exact"))
    # Chunked: refused once the bytes pass the limit.
    big = rand_bytes(limit + 1, "chunked")
    pieces = [big[i:i + 16 * KIB] for i in range(0, len(big), 16 * KIB)]
    assert_error(a.put("/buckets/b/keys/big", iter(pieces)), 413, "too_large")
    assert_error(a.post("/blobs", iter(pieces)), 413, "too_large")
    assert_error(a.post("/buckets/b/keys", iter(pieces)), 413, "too_large")
    assert_error(a.get("/buckets/b/keys/big"), 404, "not_found")
    _nothing_left(s, limit)
    # curl with Expect: 100-continue never gets the go-ahead for a body that is too large.
    f = tmp_path / "big.bin"
    f.write_bytes(big)
    c = curl("-v", "-X", "PUT", "-H", "Authorization: Bearer tokA", "-H", "Expect: 100-continue",
             "--expect100-timeout", "30", "--data-binary", f"@{f}", f"{s.base}/buckets/b/keys/c")
    assert c.status == 413 and b'"too_large"' in c.body, c
    assert "100 Continue" not in c.stderr, c.stderr[-1500:]
    # beta's own limit (the default) is larger.
    s.beta.put_ok("/buckets/b/keys/big", big)
    # The server-wide max_object_size caps every app, whatever its tenant entry says.
    s2 = blob_servers.start(tenants=TENANTS_LIMITED, args=["--max-object-size", "100KiB"])
    assert s2.alpha.stats()["max_object_bytes"] == 100 * KIB
    assert s2.beta.stats()["max_object_bytes"] == 100 * KIB
    s2.beta.put_ok("/buckets/b/keys/ok", rand_bytes(100 * KIB, "ok"))
    assert_error(s2.beta.put("/buckets/b/keys/no", rand_bytes(100 * KIB + 1, "no")), 413,
                 "too_large")


TENANTS_TWO_SLOTS = TENANTS_LIMITED.replace('max_object_bytes = "256KiB"',
                                            'max_object_bytes = "4MiB"')

# The server hands the body to the store a chunk (256 KiB) at a time and reserves quota as it
# does: a slow upload is visibly in flight once its first chunk is reserved.
CHUNK = 256 * KIB


def _slow_upload(s: BlobServer, key: str, total: int, first: int) -> object:
    raw = s.raw(timeout=20)
    raw.send(upload_headers(f"/buckets/slow/keys/{key}", "tokA", total))
    raw.send(b"s" * first)
    return raw


def test_max_connections_per_app(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(tenants=TENANTS_TWO_SLOTS)
    a = s.alpha
    first, total = CHUNK + 1000, CHUNK + 2000
    held = [_slow_upload(s, f"k{i}", total, first) for i in range(2)]
    # Both are inside the server, reading their bodies (their bytes are reserved).
    wait_until("both slow uploads to be in flight",
               lambda: a.stats()["bytes_reserved"] >= 2 * CHUNK)
    assert_error(a.get("/buckets/slow/keys/k0"), 429, "too_many_requests")
    assert_error(a.put("/buckets/slow/keys/k2", b"x"), 429, "too_many_requests")
    c = curl("-u", "alpha:tokA", f"{s.base}/buckets")
    assert c.status == 429 and b'"too_many_requests"' in c.body, c
    # Other apps are not affected, and /stats stays reachable.
    s.beta.put_ok("/buckets/b/keys/k", b"beta is fine")
    assert a.stats()["bytes_reserved"] >= 2 * CHUNK
    # One finishes: a slot is free again.
    held[0].send(b"s" * 1000)
    r = held[0].read_response()
    assert r.status == 204, r
    held[0].close()
    assert a.get("/buckets/slow/keys/k0").body == b"s" * total
    held[1].send(b"s" * 1000)
    assert held[1].read_response().status == 204
    held[1].close()
    # Slots are given back: many sequential requests work.
    for _ in range(10):
        assert a.get("/buckets/slow/keys/k1").status == 200
    st = s.operator().get("/stats").json()
    assert st["refused_too_many_requests"] >= 3, st


def test_max_connections_under_parallel_load(blob_servers: BlobServerFactory) -> None:
    """Many parallel requests of one app: the answers are 200 or 429, never anything else, and
    at most max_connections are served at once (shown by the slow uploads holding both)."""
    s = blob_servers.start(tenants=TENANTS_TWO_SLOTS)
    s.alpha.put_ok("/buckets/p/keys/k", b"v")
    held = [_slow_upload(s, f"h{i}", CHUNK + 100, CHUNK + 10) for i in range(2)]
    wait_until("two held requests", lambda: s.alpha.stats()["bytes_reserved"] >= 2 * CHUNK)
    statuses: list[int] = []
    lock = threading.Lock()

    def hit() -> None:
        r = s.alpha.get("/buckets/p/keys/k")
        with lock:
            statuses.append(r.status)

    threads = [threading.Thread(target=hit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [429] * 16, statuses
    for h in held:
        h.send(b"s" * 90)
        assert h.read_response().status == 204
        h.close()
    statuses.clear()
    threads = [threading.Thread(target=hit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {200, 429} and 200 in statuses, statuses


def test_abandoned_requests_give_their_slots_back(blob_servers: BlobServerFactory) -> None:
    """Clients that vanish mid-upload or mid-download free their app's slots, their reserved
    bytes and their temp files."""
    s = blob_servers.start(tenants=TENANTS_TWO_SLOTS)
    a = s.alpha
    data = rand_bytes(4 * 1024 * KIB - 1, "abandoned")
    a.put_ok("/buckets/ab/keys/big", data)
    for _ in range(3):
        held = [_slow_upload(s, f"u{i}", 3 * CHUNK, CHUNK + 10) for i in range(2)]
        wait_until("two uploads in flight", lambda: a.stats()["bytes_reserved"] >= 2 * CHUNK)
        assert_error(a.get("/buckets"), 429, "too_many_requests")
        for h in held:
            h.close()
        wait_until("the slots to come back", lambda: a.get("/buckets").status == 200)
        wait_until("the reservations to go", lambda: a.stats()["bytes_reserved"] == 0)
        wait_until("the temp files to go", lambda: not any((s.data_dir / "tmp").iterdir()))
    # Downloads that go away mid-body.
    for _ in range(4):
        raw = s.raw()
        raw.send(b"GET /buckets/ab/keys/big HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer tokA\r\n\r\n")
        raw.sock.recv(100)  # the answer has started
        raw.close()
    wait_until("the slots to come back", lambda: a.get("/buckets").status == 200)
    assert a.get("/buckets/ab/keys/big").body == data
    assert a.list_keys("slow") == []


def test_streaming_downloads_count_as_requests_in_flight(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(tenants=TENANTS_TWO_SLOTS)
    a = s.alpha
    a.put_ok("/buckets/ab/keys/big", rand_bytes(4 * 1024 * KIB - 1, "downloads"))
    readers = []
    try:
        for _ in range(2):
            raw = s.raw()
            raw.send(b"GET /buckets/ab/keys/big HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer tokA\r\n\r\n")
            raw.sock.recv(100)  # the answer has started; the rest waits for us to read it
            readers.append(raw)
        assert_error(a.get("/buckets"), 429, "too_many_requests")
    finally:
        for raw in readers:
            raw.close()


def test_body_idle_timeout(server: BlobServer) -> None:
    """body_idle_timeout is 2s in the test config."""
    for size, sent in ((1000, 100), (600 * KIB, 300 * KIB)):
        raw = server.raw()
        raw.send(upload_headers("/buckets/idle/keys/k", "tokA", size))
        raw.send(b"i" * sent)
        started = time.monotonic()
        r = raw.read_response(timeout=15)
        waited = time.monotonic() - started
        raw.close()
        assert_error(r, 408, "request_timeout")
        assert 1.5 <= waited <= 8, waited
        assert_error(server.alpha.get("/buckets/idle/keys/k"), 404, "not_found")
        _nothing_left(server, 0)
    # Chunked, stalled inside a chunk.
    raw = server.raw()
    raw.send(upload_headers("/blobs", "tokA", None, method="POST"))
    raw.send(b"1000\r\n" + b"c" * 10)
    assert_error(raw.read_response(timeout=15), 408, "request_timeout")
    raw.close()
    _nothing_left(server, 0)


def test_slow_but_steady_uploads_are_not_idle(server: BlobServer) -> None:
    """A byte every 0.5 s keeps a 2 s idle timeout at bay, however long the upload takes."""
    raw = server.raw()
    body = b"0123456789"
    raw.send(upload_headers("/buckets/idle/keys/steady", "tokA", len(body)))
    for b in body:
        raw.send(bytes([b]))
        time.sleep(0.45)
    r = raw.read_response(timeout=10)
    raw.close()
    assert r.status == 204, r
    assert server.alpha.get("/buckets/idle/keys/steady").body == body


def test_header_timeout(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(config={"header_timeout": "1s"})
    # A client that never finishes its headers is dropped.
    raw = s.raw()
    raw.send(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    assert raw.closed_by_peer(6), "a half-sent request head was kept open"
    assert time.monotonic() - started < 5
    raw.close()
    # So is an idle keep-alive connection.
    raw = s.raw()
    raw.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.read_response().body == b"OK"
    assert raw.closed_by_peer(6), "an idle keep-alive connection was kept open"
    raw.close()
    # Normal clients: keep-alive requests with pauses below the timeout...
    conn = http.client.HTTPConnection(s.host, s.port, timeout=10)
    for i in range(5):
        conn.request("PUT", f"/buckets/h/keys/k{i}", body=b"v" * 100,
                     headers={"Authorization": "Bearer tokA"})
        resp = conn.getresponse()
        assert resp.status == 204 and not resp.will_close, resp.status
        resp.read()
        time.sleep(0.5)
    conn.close()
    # ...an upload whose body takes longer than the header timeout...
    raw = s.raw()
    raw.send(upload_headers("/buckets/h/keys/long", "tokA", 6))
    for b in b"abcdef":
        raw.send(bytes([b]))
        time.sleep(0.5)
    assert raw.read_response(timeout=10).status == 204
    raw.close()
    # ...a download that takes longer than it...
    data = rand_bytes(4 * 1024 * KIB, "slow-reader")
    s.alpha.put_ok("/buckets/h/keys/download", data)
    conn = http.client.HTTPConnection(s.host, s.port, timeout=10)
    conn.request("GET", "/buckets/h/keys/download", headers={"Authorization": "Bearer tokA"})
    resp = conn.getresponse()
    got = b""
    while piece := resp.read(512 * KIB):
        got += piece
        time.sleep(0.25)
    assert got == data
    conn.close()
    # ...and curl.
    c = curl("-u", "alpha:tokA", f"{s.base}/buckets/h/keys/long")
    assert (c.status, c.body) == (200, b"abcdef"), c
