"""Exact quotas under concurrency: bytes are reserved as they arrive, so parallel uploads can
never take an app past its quota together, and a refused upload leaves nothing behind."""

from __future__ import annotations

import threading

from .conftest import KIB, MIB, BlobServer, BlobServerFactory, Reply, assert_error, rand_bytes

TENANTS_1MIB = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "1MiB"
max_connections = 64

[[app]]
name = "beta"
token = "tokB"
blob_bytes = "1MiB"
"""

PIECE = 100 * KIB


def _parallel(n: int, fn) -> list:
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _check_usage(s: BlobServer, bodies: dict[str, bytes]) -> None:
    st = s.alpha.stats()
    assert st["bytes_used"] == sum(len(b) for b in bodies.values()), st
    assert st["bytes_reserved"] == 0, st
    assert st["bytes_used"] <= MIB, st
    assert st["bytes_free"] == MIB - st["bytes_used"], st
    listed = s.alpha.list_keys("q")
    assert sorted(listed) == sorted(bodies), (listed, sorted(bodies))
    for key, body in bodies.items():
        assert s.alpha.get(f"/buckets/q/keys/{key}").body == body, key


def _race(s: BlobServer, n: int, chunked: bool, tag: str) -> tuple[dict[str, bytes], list[Reply]]:
    bodies = {f"{tag}{i:02d}": rand_bytes(PIECE, f"{tag}{i}") for i in range(n)}
    keys = sorted(bodies)

    def upload(i: int) -> Reply:
        body = bodies[keys[i]]
        payload = iter([body[j:j + 8 * KIB] for j in range(0, len(body), 8 * KIB)]) \
            if chunked else body
        return s.alpha.put(f"/buckets/q/keys/{keys[i]}", payload)

    replies = _parallel(n, upload)
    stored = {}
    for key, r in zip(keys, replies, strict=True):
        if r.status == 204:
            stored[key] = bodies[key]
        else:
            assert_error(r, 507, "quota_exceeded")
    return stored, replies


def test_parallel_uploads_never_exceed_the_quota(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(tenants=TENANTS_1MIB)
    stored, _ = _race(s, 32, chunked=False, tag="a")
    assert 1 <= len(stored) <= MIB // PIECE, len(stored)
    _check_usage(s, stored)
    # Sequentially, the quota fills to exactly what fits (10 pieces of 100 KiB in 1 MiB).
    i = 0
    while True:
        key = f"seq{i:02d}"
        body = rand_bytes(PIECE, key)
        r = s.alpha.put(f"/buckets/q/keys/{key}", body)
        if r.status != 204:
            assert_error(r, 507, "quota_exceeded")
            break
        stored[key] = body
        i += 1
    assert len(stored) == MIB // PIECE, len(stored)
    _check_usage(s, stored)
    # beta is untouched by alpha's race.
    assert s.beta.stats()["bytes_used"] == 0
    # Deleting frees room; uploads succeed again, up to the quota again.
    for key in sorted(stored)[:3]:
        assert s.alpha.delete(f"/buckets/q/keys/{key}").status == 204
        del stored[key]
    assert s.alpha.stats()["bytes_used"] == 7 * PIECE
    again, _ = _race(s, 8, chunked=True, tag="b")
    assert 1 <= len(again) <= 3, len(again)
    stored.update(again)
    _check_usage(s, stored)


def test_parallel_chunked_uploads_never_exceed_the_quota(blob_servers: BlobServerFactory) -> None:
    """Without Content-Length the quota can only be checked as bytes arrive."""
    s = blob_servers.start(tenants=TENANTS_1MIB)
    stored, _ = _race(s, 32, chunked=True, tag="c")
    assert 1 <= len(stored) <= MIB // PIECE, len(stored)
    _check_usage(s, stored)
    assert list((s.data_dir / "tmp").iterdir()) == []


def test_refused_uploads_leave_nothing(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(tenants=TENANTS_1MIB)
    a = s.alpha
    # Declared up front: refused before the body is read.
    assert_error(a.put("/buckets/q/keys/big", rand_bytes(MIB + 1, "big")), 507, "quota_exceeded")
    assert_error(a.post("/blobs", rand_bytes(MIB + 1, "big")), 507, "quota_exceeded")
    # Streamed: refused when the bytes pass the quota.
    big = rand_bytes(2 * MIB, "stream")
    pieces = [big[i:i + 64 * KIB] for i in range(0, len(big), 64 * KIB)]
    r = a.put("/buckets/q/keys/big", iter(pieces))
    assert_error(r, 507, "quota_exceeded")
    r = a.post("/buckets/q/keys", iter([big[:700 * KIB], big[700 * KIB:]]))
    assert_error(r, 507, "quota_exceeded")
    st = a.stats()
    assert (st["bytes_used"], st["bytes_reserved"]) == (0, 0), st
    assert_error(a.get("/buckets/q/keys/big"), 404, "not_found")
    assert list((s.data_dir / "tmp").iterdir()) == []
    # Exactly the quota fits.
    a.put_ok("/buckets/q/keys/exact", rand_bytes(MIB, "exact"))
    st = a.stats()
    assert (st["bytes_used"], st["bytes_free"]) == (MIB, 0), st
    assert_error(a.put("/buckets/q/keys/one-more", b"x"), 507, "quota_exceeded")
    # Overwriting a key with new content needs room for the new bytes while they stream.
    assert a.delete("/buckets/q/keys/exact").status == 204
    a.put_ok("/buckets/q/keys/one-more", b"x")
