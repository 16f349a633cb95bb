"""Boundaries and races: sizes at every internal edge (small/large, chunk multiples), volume
rollover, metadata limits to the byte, shared content being deleted and re-stored at once,
and state that must survive a restart (usage, signing key, deletes)."""

from __future__ import annotations

import os
import stat
import threading
from urllib.parse import quote

import pytest

from .conftest import (
    KIB,
    BlobServer,
    BlobServerFactory,
    assert_error,
    quoted_etag,
    rand_bytes,
    sha256_hex,
)

SMALL_MAX = 64 * KIB
CHUNK = 256 * KIB


@pytest.mark.parametrize("size", [1, SMALL_MAX - 1, SMALL_MAX, SMALL_MAX + 1, CHUNK - 1, CHUNK,
                                  CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1])
def test_sizes_at_internal_boundaries(server: BlobServer, size: int) -> None:
    a = server.alpha
    data = rand_bytes(size, f"edge{size}")
    for chunked in (False, True):
        key = f"s{size}-{chunked}"
        body = iter([data[i:i + 10_000] for i in range(0, size, 10_000)]) if chunked else data
        r = a.put(f"/buckets/edge/keys/{key}", body)
        assert r.status == 204 and r.header("etag") == quoted_etag(data), r
        g = a.get(f"/buckets/edge/keys/{key}")
        assert g.status == 200 and g.body == data, (key, len(g.body))
    assert a.stats()["bytes_used"] == size
    for spec, lo, hi in ((f"bytes={size - 1}-", size - 1, size), ("bytes=-1", size - 1, size),
                         (f"bytes=0-{size - 1}", 0, size),
                         (f"bytes={max(0, size - CHUNK)}-{size - 1}", max(0, size - CHUNK), size)):
        r = a.get(f"/buckets/edge/keys/s{size}-False", {"Range": spec})
        assert r.status == 206 and r.body == data[lo:hi], (spec, r.status, len(r.body))
    bid = a.post_blob(data)
    assert a.get(f"/blobs/{bid}").body == data
    assert a.stats()["bytes_used"] == size


def test_volume_rollover_and_restart(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(config={"volume_max": "200KiB", "small_object_max": "16KiB",
                                   "chunk_size": "8KiB"})
    bodies = {f"v{i:03d}": rand_bytes(1 + (i * 4093) % (16 * KIB), f"v{i}") for i in range(120)}
    bodies["big"] = rand_bytes(100 * KIB + 3, "big-8k-chunks")
    for k, v in bodies.items():
        s.alpha.put_ok(f"/buckets/vol/keys/{k}", v)
    vols = sorted((s.data_dir / "volumes").iterdir())
    assert len(vols) >= 4, vols
    assert all(p.stat().st_size <= 200 * KIB for p in vols), [p.stat().st_size for p in vols]
    r = s.alpha.get("/buckets/vol/keys/big", {"Range": f"bytes={8 * KIB - 2}-{8 * KIB + 1}"})
    assert r.body == bodies["big"][8 * KIB - 2:8 * KIB + 2], r
    assert s.process.stop() == 0
    s = blob_servers.restart(s)
    for k, v in bodies.items():
        assert s.alpha.get(f"/buckets/vol/keys/{k}").body == v, k
    assert s.alpha.stats()["bytes_used"] == sum(len(v) for v in bodies.values())


def test_metadata_limit_to_the_byte(server: BlobServer) -> None:
    a = server.alpha
    # 8 KiB of names (without the prefix) and values in all.
    name = "n" * 10
    exact = {f"X-Riak-Meta-{name}": "v" * (8 * KIB - 10)}
    a.put_ok("/buckets/m/keys/exact", b"x", exact)
    assert a.get("/buckets/m/keys/exact").header(f"x-riak-meta-{name}") == "v" * (8 * KIB - 10)
    over = {f"X-Riak-Meta-{name}": "v" * (8 * KIB - 9)}
    assert_error(a.put("/buckets/m/keys/over", b"x", over), 400, "invalid_header")
    assert_error(a.post("/buckets/m/keys", b"x", over), 400, "invalid_header")
    # Many entries, one value each, UTF-8 values echoed byte for byte (raw socket: http.client
    # would encode them as Latin-1).
    raw = server.raw()
    value = "café ☕ ü".encode()
    raw.send(b"PUT /buckets/m/keys/utf8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tokA\r\n"
             b"Content-Length: 1\r\nX-Riak-Meta-Drink: " + value + b"\r\n"
             b"X-Riak-Meta-A: 1\r\nx-riak-meta-b: two words\r\n\r\nx")
    assert raw.read_response().status == 204
    raw.send(b"GET /buckets/m/keys/utf8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tokA\r\n\r\n")
    r = raw.read_response()
    raw.close()
    got = {k.lower(): v for k, v in r.headers}
    assert got["x-riak-meta-drink"].encode("latin-1") == value, r
    assert got["x-riak-meta-a"] == "1" and got["x-riak-meta-b"] == "two words", r


def test_overwrite_and_delete_release_the_old_content(server: BlobServer) -> None:
    a = server.alpha
    a.put_ok("/buckets/o/keys/k", rand_bytes(200 * KIB, "old"))
    a.put_ok("/buckets/o/keys/k", rand_bytes(100, "new"))
    assert a.stats()["bytes_used"] == 100
    assert not [p for p in (server.data_dir / "objects").rglob("*") if p.is_file()], \
        "the old content file outlived its last reference"
    a.put_ok("/buckets/o/keys/k2", rand_bytes(300 * KIB, "k2"))
    a.delete("/buckets/o/keys/k2")
    assert a.stats()["bytes_used"] == 100
    assert not [p for p in (server.data_dir / "objects").rglob("*") if p.is_file()]


def test_shared_content_delete_and_restore_race(server: BlobServer) -> None:
    """Two apps and two keys keep dropping and re-storing the same large content while readers
    check it: a reader that gets a 200 gets the exact bytes, and the final state is exact."""
    data = rand_bytes(300 * KIB, "contended")
    bid = "sha256:" + sha256_hex(data)
    errors: list[str] = []
    stop = threading.Event()

    def churn(client, path: str, rounds: int) -> None:
        for _ in range(rounds):
            r = client.put(path, data) if "/keys/" in path else client.post("/blobs", data)
            if r.status not in (201, 204):
                errors.append(f"store {path}: {r!r}")
            d = client.delete(path if "/keys/" in path else f"/blobs/{bid}")
            if d.status != 204:
                errors.append(f"delete {path}: {d!r}")

    def reader(client, path: str) -> None:
        while not stop.is_set():
            r = client.get(path)
            if r.status == 200 and r.body != data:
                errors.append(f"{path}: wrong bytes ({len(r.body)})")
            elif r.status not in (200, 404):
                errors.append(f"{path}: {r!r}")

    a, b = server.alpha, server.beta
    a.put_ok("/buckets/hold/keys/steady", data)  # one hold that never goes away
    writers = [threading.Thread(target=churn, args=(a, "/buckets/c/keys/k1", 25)),
               threading.Thread(target=churn, args=(a, "/buckets/c/keys/k2", 25)),
               threading.Thread(target=churn, args=(a, "/blobs", 25)),
               threading.Thread(target=churn, args=(b, "/buckets/c/keys/k1", 25)),
               threading.Thread(target=churn, args=(b, "/blobs", 25))]
    readers = [threading.Thread(target=reader, args=(a, "/buckets/hold/keys/steady")),
               threading.Thread(target=reader, args=(b, f"/blobs/{bid}")),
               threading.Thread(target=reader, args=(a, "/buckets/c/keys/k1"))]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(120)
    stop.set()
    for t in readers:
        t.join(30)
    assert not errors, errors[:10]
    assert a.get("/buckets/hold/keys/steady").body == data
    assert a.stats()["bytes_used"] == len(data)
    assert b.stats()["bytes_used"] == 0
    assert b.get("/buckets").json() == {"buckets": []}
    # beta stores it again from scratch: the content file must still (or again) be whole.
    assert b.post_blob(data) == bid
    assert b.get(f"/blobs/{bid}").body == data
    a.delete("/buckets/hold/keys/steady")
    assert b.get(f"/blobs/{bid}").body == data
    b.delete(f"/blobs/{bid}")
    assert not [p for p in (server.data_dir / "objects").rglob("*") if p.is_file()]


def test_state_survives_restart(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start()
    key_file = s.data_dir / "signing.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    a = s.alpha
    a.put_ok("/buckets/p/keys/keep", b"keep me", {"Content-Type": "text/x-keep",
                                                 "X-Riak-Meta-Note": "persisted"})
    a.put_ok("/buckets/p/keys/gone", b"delete me")
    bid = a.post_blob(rand_bytes(100 * KIB, "persist-blob"))
    lm = a.get("/buckets/p/keys/keep").header("last-modified")
    assert a.delete("/buckets/p/keys/gone").status == 204
    url = a.sign({"bucket": "p", "key": "keep", "expires_in": 600}).json()["url"]
    usage = a.stats()
    s.kill9()
    s = blob_servers.restart(s)
    a = s.alpha
    r = a.get("/buckets/p/keys/keep")
    assert r.body == b"keep me" and r.header("content-type") == "text/x-keep", r
    assert r.header("x-riak-meta-note") == "persisted" and r.header("last-modified") == lm, r
    assert_error(a.get("/buckets/p/keys/gone"), 404, "not_found")
    assert a.get(f"/blobs/{bid}").status == 200
    assert a.stats() == usage
    assert s.anon.get(url).body == b"keep me", "the signing key changed across a restart"
    assert a.list_keys("p") == ["keep"]


def test_plus_and_reserved_characters_in_names(server: BlobServer) -> None:
    a = server.alpha
    for key in ("a+b", "a b", "100%", "?x=1&y", "#frag", "ü/ö", "semi;colon", "~tilde", "'\"<>"):
        a.put_ok(f"/buckets/chars/keys/{quote(key, safe='')}", key.encode())
    listed = a.list_keys("chars")
    assert sorted(listed) == sorted(["a+b", "a b", "100%", "?x=1&y", "#frag", "ü/ö",
                                     "semi;colon", "~tilde", "'\"<>"]), listed
    for key in listed:
        assert a.get(f"/buckets/chars/keys/{quote(key, safe='')}").body == key.encode(), key
    # A literal '+' in a path is a plus, not a space.
    assert a.get("/buckets/chars/keys/a+b").body == b"a+b"
    # Signed URLs for each verify.
    for key in listed:
        url = a.sign({"bucket": "chars", "key": key}).json()["url"]
        assert server.anon.get(url).body == key.encode(), (key, url)
