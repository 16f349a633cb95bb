"""Durable before acknowledged: after `kill -9` and a restart on the same data directory every
acknowledged write is there with its exact bytes, and a write cut off midway leaves no trace."""

from __future__ import annotations

import http.client
import random
import threading
import time

from .conftest import (
    KIB,
    MIB,
    BlobServerFactory,
    assert_error,
    rand_bytes,
    sha256_hex,
    upload_headers,
    wait_until,
)


def test_acknowledged_writes_survive_sigkill(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start()
    work: list[tuple[str, str, bytes]] = []  # (kind, name, body)
    for i in range(240):
        work.append(("key", f"small{i:03d}", rand_bytes(1 + (i * 997) % (12 * KIB), f"s{i}")))
    for i in range(4):
        work.append(("key", f"large{i}", rand_bytes(3 * MIB + i, f"l{i}")))
    for i in range(40):
        work.append(("blob", f"blob{i}", rand_bytes(500 + i * 300, f"b{i}")))
    random.Random(7).shuffle(work)  # blobs, small and large keys interleaved
    # A key written twice: the last acknowledged version must win.
    work.append(("key", "small000", b"second version of small000"))
    acked: dict[str, bytes] = {}
    acked_blobs: dict[str, bytes] = {}
    attempted: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    next_item = iter(range(len(work)))
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            with lock:
                i = next(next_item, None)
            if i is None:
                return
            kind, name, body = work[i]
            with lock:
                attempted.setdefault(name, []).append(body)
            try:
                if kind == "key":
                    r = s.alpha.put(f"/buckets/crash/keys/{name}", body)
                    ok = r.status == 204
                else:
                    r = s.alpha.post("/blobs", body)
                    ok = r.status == 201 and r.json()["id"] == "sha256:" + sha256_hex(body)
            except (OSError, http.client.HTTPException, AttributeError):
                # The server is gone (killed before, or while, it answered). http.client
                # raises AttributeError from getresponse() when the kill closed the socket
                # while the request was being sent (its `sock` is None by then).
                return
            assert ok, r
            with lock:
                (acked if kind == "key" else acked_blobs)[name] = body

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    # Kill while writes are still in flight, once a good share is acknowledged.
    wait_until("150 acknowledged writes", lambda: len(acked) + len(acked_blobs) >= 150, 60)
    s.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    with lock:
        acked_now, blobs_now = dict(acked), dict(acked_blobs)
    assert acked_now and blobs_now
    assert len(acked_now) + len(blobs_now) < len(work), "the kill came after every write"

    s2 = blob_servers.restart(s)
    a = s2.alpha
    for name, body in acked_now.items():
        r = a.get(f"/buckets/crash/keys/{name}")
        assert r.status == 200, (name, r)
        assert r.body == body or (name == "small000" and r.body in attempted[name]), name
    for name, body in blobs_now.items():
        r = a.get(f"/blobs/sha256:{sha256_hex(body)}")
        assert r.status == 200 and r.body == body, (name, r.status)
    # Writes in flight at the kill are either absent or whole.
    keys = set(a.list_keys("crash"))
    assert set(acked_now) <= keys
    held: dict[str, int] = {}
    for name in keys:
        body = a.get(f"/buckets/crash/keys/{name}").body
        assert body in attempted[name], f"{name}: bytes that were never sent"
        held[sha256_hex(body)] = len(body)
    for kind, _name, body in work:
        if kind == "blob" and a.head(f"/blobs/sha256:{sha256_hex(body)}").status == 200:
            held[sha256_hex(body)] = len(body)
    st = a.stats()
    assert st["bytes_used"] == sum(held.values()), st
    assert st["bytes_reserved"] == 0, st
    assert list((s2.data_dir / "tmp").iterdir()) == []


def test_cut_off_upload_leaves_no_trace_after_sigkill(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start()
    s.alpha.put_ok("/buckets/keep/keys/k", b"acknowledged before")
    size = 8 * MIB
    raw = s.raw()
    raw.send(upload_headers("/buckets/cut/keys/half", "tokA", size))
    half = rand_bytes(size // 2, "half")
    raw.send(half)
    # The server is mid-body: it has reserved what it received, and a temp file holds it.
    wait_until("the server to receive the first half",
               lambda: s.alpha.stats()["bytes_reserved"] >= size // 2 - 256 * KIB)
    assert any((s.data_dir / "tmp").iterdir()), "no temp file for the upload in progress"
    s.kill9()
    raw.close()
    s2 = blob_servers.restart(s)
    a = s2.alpha
    assert_error(a.get("/buckets/cut/keys/half"), 404, "not_found")
    assert a.list_keys("cut") == []
    assert a.get("/buckets").json() == {"buckets": ["keep"]}
    st = a.stats()
    assert (st["bytes_used"], st["bytes_reserved"]) == (len(b"acknowledged before"), 0), st
    assert list((s2.data_dir / "tmp").iterdir()) == []
    assert [p for p in (s2.data_dir / "objects").rglob("*") if p.is_file()] == []
    assert a.get("/buckets/keep/keys/k").body == b"acknowledged before"
    # And the same upload, whole, works after the restart.
    a.put_ok("/buckets/cut/keys/half", half + half)
    assert sha256_hex(a.get("/buckets/cut/keys/half").body) == sha256_hex(half + half)


def test_restart_after_sigkill_twice_in_a_row(blob_servers: BlobServerFactory) -> None:
    """Recovery itself must be crash-safe: kill right after a restart, restart again."""
    s = blob_servers.start()
    bodies = {f"k{i}": rand_bytes(100 * KIB + i, f"r{i}") for i in range(6)}
    for k, v in bodies.items():
        s.alpha.put_ok(f"/buckets/r/keys/{k}", v)
    s.kill9()
    s = blob_servers.restart(s)
    s.kill9()
    time.sleep(0.05)
    s = blob_servers.restart(s)
    for k, v in bodies.items():
        assert s.alpha.get(f"/buckets/r/keys/{k}").body == v, k
    assert s.alpha.stats()["bytes_used"] == sum(len(v) for v in bodies.values())



def test_recovery_cleans_crash_leftovers(blob_servers: BlobServerFactory) -> None:
    """What a crash can leave behind (a temp file, a content file whose commit never happened,
    a torn record at the end of a volume) is cleaned at the next start; acknowledged objects
    are intact and new writes land after the cut."""
    s = blob_servers.start()
    bodies = {"small": b"small object " * 10, "large": rand_bytes(300 * KIB, "leftover-large")}
    for k, v in bodies.items():
        s.alpha.put_ok(f"/buckets/l/keys/{k}", v)
    s.kill9()
    data = s.data_dir
    (data / "tmp" / "upload-in-progress").write_bytes(b"half an upload")
    stray_hex = sha256_hex(b"never committed")
    stray = data / "objects" / stray_hex[:2] / stray_hex
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"BERTHBLB" + b"\0" * 100)
    volume = max((data / "volumes").iterdir())
    # The volume holds its header (16 bytes) and the small object's record (44-byte header),
    # then the zeroed room the server keeps written ahead: a torn append lands in that room.
    end = 16 + 44 + len(bodies["small"])
    assert volume.stat().st_size > end
    with open(volume, "r+b") as f:
        f.seek(end)
        f.write(b"BREC\xff\x00\x00\x00" + b"torn")
    s2 = blob_servers.restart(s)
    assert list((data / "tmp").iterdir()) == []
    assert not stray.exists(), "an uncommitted content file survived recovery"
    assert volume.stat().st_size == end, "the torn volume tail was not cut"
    for k, v in bodies.items():
        assert s2.alpha.get(f"/buckets/l/keys/{k}").body == v, k
    s2.alpha.put_ok("/buckets/l/keys/after", b"written after recovery")
    assert s2.process.stop() == 0
    s3 = blob_servers.restart(s2)
    assert s3.alpha.get("/buckets/l/keys/after").body == b"written after recovery"
    assert s3.alpha.stats()["bytes_used"] == sum(map(len, bodies.values())) + 22
