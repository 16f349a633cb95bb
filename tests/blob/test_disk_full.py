"""A full disk: the data directory on a 16 MiB tmpfs. Uploads end in 507 disk_full with nothing
stored, reads of earlier objects stay correct, deleting makes room again, and a restart loses
nothing acknowledged. Needs root (mount -t tmpfs); fails saying so otherwise."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import KIB, MIB, BlobServer, BlobServerFactory, Reply, assert_error, rand_bytes

TENANTS_BIG = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "10GiB"
max_object_bytes = "1GiB"
"""


@pytest.fixture
def small_disk(tmp_path: Path, blob_servers: BlobServerFactory) -> Iterator[Path]:
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"cannot mount a 16 MiB tmpfs at {mnt} (this test needs root and "
                    f"mount(8)): {p.stderr.strip()}", pytrace=False)
    try:
        yield mnt
    finally:
        blob_servers.stop_all()  # nothing may hold files on it
        subprocess.run(["umount", str(mnt)], check=False)
        if subprocess.run(["mountpoint", "-q", str(mnt)]).returncode == 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def _check(s: BlobServer, stored: dict[str, bytes]) -> None:
    for key, body in stored.items():
        r = s.alpha.get(f"/buckets/d/keys/{key}")
        assert r.status == 200 and r.body == body, (key, r.status, len(r.body))
    st = s.alpha.stats()
    assert st["bytes_used"] == sum(len(b) for b in stored.values()), st
    assert st["bytes_reserved"] == 0, st


def _fill(s: BlobServer, stored: dict[str, bytes], prefix: str, size: int) -> Reply:
    for i in range(200):
        key = f"{prefix}{i:03d}"
        body = rand_bytes(size, key)
        r = s.alpha.put(f"/buckets/d/keys/{key}", body)
        if r.status != 204:
            return r
        stored[key] = body
    raise AssertionError(f"{prefix}: 200 uploads of {size} bytes fit on a 16 MiB disk")


def test_disk_full(small_disk: Path, blob_servers: BlobServerFactory) -> None:
    # The metadata log is allocated up front (64 MiB by default): a small one fits this disk.
    s = blob_servers.start(tenants=TENANTS_BIG, data_dir=small_disk / "data",
                           config={"meta_log_size": "1MiB"})
    stored: dict[str, bytes] = {}
    for i in range(20):
        key = f"early{i:02d}"
        stored[key] = rand_bytes(3 * KIB + i, key)
        s.alpha.put_ok(f"/buckets/d/keys/{key}", stored[key])

    # Large objects until the disk is full.
    r = _fill(s, stored, "large", 1 * MIB)
    assert_error(r, 507, "disk_full")
    assert len([k for k in stored if k.startswith("large")]) >= 5, sorted(stored)
    _check(s, stored)
    assert list((s.data_dir / "tmp").iterdir()) == []
    # Small ones (appended to a volume) fill the rest, then fail the same way.
    r = _fill(s, stored, "small", 40 * KIB)
    assert_error(r, 507, "disk_full")
    # A streamed (chunked) upload and a blob fail cleanly too.
    body = rand_bytes(2 * MIB, "chunked")
    r = s.alpha.put("/buckets/d/keys/chunked", iter([body[i:i + 64 * KIB]
                                                     for i in range(0, len(body), 64 * KIB)]))
    assert_error(r, 507, "disk_full")
    assert_error(s.alpha.post("/blobs", rand_bytes(MIB, "blob")), 507, "disk_full")
    assert s.alpha.get("/buckets/d/keys/chunked").status == 404
    # Reads keep working, byte for byte, and so do listings and stats.
    _check(s, stored)
    assert sorted(s.alpha.list_keys("d")) == sorted(stored)
    assert s.anon.get("/ping").status == 200

    # Deleting makes room: uploads work again.
    large = sorted(k for k in stored if k.startswith("large"))
    for key in large[:4]:
        r = s.alpha.delete(f"/buckets/d/keys/{key}")
        assert r.status == 204, r
        del stored[key]
    for i in range(2):
        key = f"after{i}"
        stored[key] = rand_bytes(MIB, key)
        r = s.alpha.put(f"/buckets/d/keys/{key}", stored[key])
        assert r.status == 204, r
    stored["after-small"] = b"a small one after the deletes"
    s.alpha.put_ok("/buckets/d/keys/after-small", stored["after-small"])
    _check(s, stored)

    # A restart (on the still nearly full disk) loses nothing acknowledged.
    assert s.process.stop() == 0, s.status_line()
    s2 = blob_servers.restart(s)
    _check(s2, stored)
    assert sorted(s2.alpha.list_keys("d")) == sorted(stored)
    assert list((s2.data_dir / "tmp").iterdir()) == []
    s2.alpha.delete(f"/buckets/d/keys/{large[4]}")
    del stored[large[4]]
    stored["after-restart"] = rand_bytes(MIB // 2, "after-restart")
    s2.alpha.put_ok("/buckets/d/keys/after-restart", stored["after-restart"])
    _check(s2, stored)


def test_disk_full_in_the_metadata(small_disk: Path, blob_servers: BlobServerFactory) -> None:
    """Fill the disk with names only (empty objects under long keys) so the metadata database
    is what runs out of room: 507 disk_full, earlier objects intact, and once there is room
    again (here: a filler file removed; in life: deletes) writes and deletes work again
    without a restart. A restart then finds everything acknowledged."""
    # The metadata log is allocated up front (64 MiB by default): a small one fits this disk.
    s = blob_servers.start(tenants=TENANTS_BIG, data_dir=small_disk / "data",
                           config={"meta_log_size": "1MiB"})
    filler = small_disk / "filler"
    # Leave about 1 MiB free so names, not bytes, fill it.
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(small_disk).free - 1 * MIB))
    stored: dict[str, bytes] = {"first": b"first object"}
    s.alpha.put_ok("/buckets/d/keys/first", stored["first"])
    names: list[str] = []
    last = None
    for i in range(20000):
        key = f"{i:06d}-" + "n" * 1000
        last = s.alpha.put(f"/buckets/d/keys/{key}", b"")
        if last.status != 204:
            break
        names.append(key)
    assert last is not None and last.status != 204, "20000 names fit in 1 MiB?"
    assert_error(last, 507, "disk_full")
    assert len(names) > 10, len(names)
    for key in names[:20] + names[-20:]:
        assert s.alpha.get(f"/buckets/d/keys/{key}").status == 200, key
    assert s.alpha.get("/buckets/d/keys/first").body == stored["first"]
    # Room again: writes and deletes work, without a restart.
    filler.unlink()
    r = s.alpha.delete(f"/buckets/d/keys/{names.pop(0)}")
    assert r.status == 204, r
    r = s.alpha.put("/buckets/d/keys/after", b"room again")
    assert r.status == 204, r
    stored["after"] = b"room again"
    assert s.process.stop() == 0, s.status_line()
    s2 = blob_servers.restart(s)
    assert len(s2.alpha.list_keys("d")) == len(names) + 2
    _check(s2, stored)
