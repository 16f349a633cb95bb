"""Purging an app's data on the admin listener (`DELETE /v1/apps/{app}/data`, what berthd calls
when an app is destroyed): everything of the app goes (keys, blobs by id, usage), other apps
keep theirs, only an operator token may do it, it is idempotent, it survives a restart, and
the server keeps serving other apps while a large purge runs."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

from .conftest import (
    KIB,
    OPERATOR_TOKEN,
    BlobServer,
    BlobServerFactory,
    rand_bytes,
)


def purge(server: BlobServer, app: str, token: str | None = OPERATOR_TOKEN,
          method: str = "DELETE") -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*server.admin, timeout=120)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request(method, f"/v1/apps/{app}/data", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, body


def test_purge_removes_one_apps_data_and_nothing_else(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start()
    a, b = s.alpha, s.beta
    small, large = rand_bytes(3 * KIB, "small"), rand_bytes(700 * KIB, "large")
    shared = rand_bytes(200 * KIB, "shared")
    a.put_ok("/buckets/photos/keys/small", small)
    a.put_ok("/buckets/photos/keys/large", large)
    a.put_ok("/buckets/docs/keys/shared", shared)
    blob_id = a.post_blob(rand_bytes(50 * KIB, "by-id"))
    b.put_ok("/buckets/mine/keys/shared", shared)
    b_own = rand_bytes(90 * KIB, "beta-own")
    b.put_ok("/buckets/mine/keys/own", b_own)
    b_blob = b.post_blob(rand_bytes(10 * KIB, "beta-blob"))
    a_used = a.stats()["bytes_used"]
    b_used = b.stats()["bytes_used"]
    assert a_used == 3 * KIB + 700 * KIB + 200 * KIB + 50 * KIB

    status, body = purge(s, "alpha")
    assert status == 200, body
    assert body == {"app": "alpha", "purged": True, "objects": 4, "bytes": a_used,
                    "keys": 3, "blobs": 1}

    # alpha's namespace is empty: no keys, no buckets, no blob by id, no usage.
    assert a.get("/buckets/photos/keys/small").status == 404
    assert a.get("/buckets/docs/keys/shared").status == 404
    assert a.list_keys("photos") == []
    assert a.get(f"/blobs/{blob_id}").status == 404
    assert a.stats()["bytes_used"] == 0
    # beta is untouched, including the content it shared with alpha.
    assert b.get("/buckets/mine/keys/shared").body == shared
    assert b.get("/buckets/mine/keys/own").body == b_own
    assert b.get(f"/blobs/{b_blob}").status == 200
    assert b.stats()["bytes_used"] == b_used

    # Idempotent: nothing left is 200 with zeros; so is an app that never stored anything.
    for app in ("alpha", "never-existed"):
        status, body = purge(s, app)
        assert status == 200, body
        assert (body["purged"], body["objects"], body["bytes"]) == (True, 0, 0)

    # The same name writes again from nothing, and the purge survives a restart.
    a.put_ok("/buckets/photos/keys/new", b"fresh")
    assert a.stats()["bytes_used"] == 5
    s.process.stop(timeout=15)
    s = blob_servers.restart(s)
    assert s.alpha.get("/buckets/photos/keys/small").status == 404
    assert s.alpha.get("/buckets/photos/keys/new").body == b"fresh"
    assert s.alpha.get(f"/blobs/{blob_id}").status == 404
    assert s.alpha.stats()["bytes_used"] == 5
    assert s.beta.get("/buckets/mine/keys/shared").body == shared
    assert s.beta.stats()["bytes_used"] == b_used


def test_purge_needs_an_operator_token_and_a_valid_name(server: BlobServer) -> None:
    server.alpha.put_ok("/buckets/b/keys/k", b"keep me")
    status, _ = purge(server, "alpha", token=None)
    assert status == 401
    for token in ("tokA", "tokB", "wrong"):
        status, body = purge(server, "alpha", token=token)
        assert status == 403, (token, body)
    assert server.alpha.get("/buckets/b/keys/k").body == b"keep me"
    for bad in ("Alpha", "-x", "a_b", "x" * 40):
        status, body = purge(server, bad)
        assert status == 400, (bad, body)
    status, _ = purge(server, "alpha", method="GET")
    assert status == 405
    # The data API does not offer it.
    r = server.operator("alpha").delete("/v1/apps/alpha/data")
    assert r.status in (400, 404, 405), r
    assert server.alpha.get("/buckets/b/keys/k").body == b"keep me"
    # metrics count completed purges
    purge(server, "beta")
    conn = http.client.HTTPConnection(*server.admin, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    text = conn.getresponse().read().decode()
    conn.close()
    assert "berth_blob_app_purges_total 1" in text


def test_purge_is_refused_without_operator_tokens(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(config={"operator_tokens": []})
    s.alpha.put_ok("/buckets/b/keys/k", b"keep me")
    status, _ = purge(s, "alpha")
    assert status == 403
    assert s.alpha.get("/buckets/b/keys/k").body == b"keep me"


def test_other_apps_are_served_during_a_large_purge(server: BlobServer) -> None:
    a, b = server.alpha, server.beta
    n = 3000
    # Many small keys, written by a few threads.
    def fill(lo: int, hi: int) -> None:
        c = server.alpha
        for i in range(lo, hi):
            c.put_ok(f"/buckets/bulk/keys/k{i:05}", f"value {i}".encode())
    threads = [threading.Thread(target=fill, args=(i, min(i + 750, n))) for i in range(0, n, 750)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.get(f"/buckets/bulk/keys/k{n - 1:05}").status == 200

    done = threading.Event()
    served: list[int] = []
    errors: list[Any] = []

    def keep_serving() -> None:
        i = 0
        while not done.is_set() or i < 5:
            body = f"beta {i}".encode()
            r = b.put(f"/buckets/live/keys/k{i}", body)
            g = b.get(f"/buckets/live/keys/k{i}")
            if r.status != 204 or g.body != body:
                errors.append((r, g))
            served.append(i)
            i += 1

    t = threading.Thread(target=keep_serving)
    t.start()
    status, body = purge(server, "alpha")
    done.set()
    t.join()
    assert status == 200, body
    assert body["objects"] == n and body["keys"] == n
    assert not errors, errors[:3]
    assert len(served) >= 5
    assert a.list_keys("bulk") == []
    assert a.stats()["bytes_used"] == 0
    assert len(b.list_keys("live")) == len(served)
