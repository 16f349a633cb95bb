"""A 2 GiB object through a server whose memory is capped far below that.

The cap is a real one: the server runs under `prlimit --as=512MiB` (RLIMIT_AS, its whole
address space) with `MALLOC_ARENA_MAX=2` (so glibc's per-thread arenas do not reserve address
space the server never uses). RLIMIT_AS was chosen over a cgroup because it needs no
cgroup-v2 delegation and does not count the page cache the 2 GiB write goes through; a server
that buffered the object would fail its allocations and the upload with it. On top of the
cap, the server's peak resident set (VmHWM in /proc/PID/status) must stay under 256 MiB.

The body is generated on the fly in 1 MiB pieces (never held whole by the test), hashed as it
is sent, and the download is hashed as it is read.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import struct
import time

import pytest

from .conftest import MIB, BlobServerFactory

SIZE = 2 * 1024 * MIB
ADDRESS_SPACE_CAP = 512 * MIB
RSS_LIMIT = 256 * MIB

TENANTS = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "3GiB"
max_object_bytes = "3GiB"
"""


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _pieces(hasher: hashlib._Hash) -> iter[bytes]:
    block = os.urandom(MIB)
    for i in range(SIZE // MIB):
        piece = struct.pack("<Q", i) + block[8:]
        hasher.update(piece)
        yield piece


@pytest.mark.slow
def test_two_gib_object_with_capped_memory(blob_servers: BlobServerFactory, tmp_path) -> None:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.fail("prlimit(1) is missing: apt-get install util-linux", pytrace=False)
    free = shutil.disk_usage(tmp_path).free
    assert free > SIZE + 2 * 1024 * MIB, f"need > 4 GiB free under {tmp_path}, have {free}"
    s = blob_servers.start(
        tenants=TENANTS,
        config={"max_object_size": "3GiB"},
        wrapper=["env", "MALLOC_ARENA_MAX=2", prlimit, f"--as={ADDRESS_SPACE_CAP}"],
        args=["--threads", "2"],
    )
    try:
        _run(s)
    finally:
        # pytest keeps the last runs' tmp dirs: do not leave 2 GiB behind each time.
        blob_servers.stop_all()
        shutil.rmtree(s.data_dir, ignore_errors=True)


def _run(s) -> None:
    with open(f"/proc/{s.pid}/limits") as f:
        line = next(ln for ln in f if ln.startswith("Max address space"))
    assert str(ADDRESS_SPACE_CAP) in line.split(), f"the cap is not applied: {line!r}"

    sent = hashlib.sha256()
    started = time.monotonic()
    conn = http.client.HTTPConnection(s.host, s.port, timeout=120)
    conn.request("PUT", "/buckets/huge/keys/two-gib", body=_pieces(sent),
                 headers={"Authorization": "Bearer tokA", "Content-Length": str(SIZE)})
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 204, (resp.status, body, s.status_line())
    assert resp.getheader("etag") == f'"{sent.hexdigest()}"'
    conn.close()
    up = time.monotonic() - started

    st = s.alpha.stats()
    assert (st["bytes_used"], st["bytes_reserved"]) == (SIZE, 0), st

    got = hashlib.sha256()
    n = 0
    conn = http.client.HTTPConnection(s.host, s.port, timeout=120)
    conn.request("GET", "/buckets/huge/keys/two-gib", headers={"Authorization": "Bearer tokA"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-length") == str(SIZE)
    while True:
        piece = resp.read(4 * MIB)
        if not piece:
            break
        got.update(piece)
        n += len(piece)
    conn.close()
    assert n == SIZE
    assert got.hexdigest() == sent.hexdigest(), "the 2 GiB object came back different"

    # A range deep inside it, across a chunk boundary.
    r = s.alpha.get("/buckets/huge/keys/two-gib",
                    {"Range": f"bytes={SIZE - MIB - 5}-{SIZE - MIB + 4}"})
    assert r.status == 206 and len(r.body) == 10, r

    hwm = _status_kib(s.pid, "VmHWM") * 1024
    assert hwm < RSS_LIMIT, f"peak RSS {hwm / MIB:.1f} MiB >= {RSS_LIMIT / MIB:.0f} MiB"
    print(f"2 GiB: upload {up:.1f}s, total {time.monotonic() - started:.1f}s, "
          f"peak RSS {hwm / MIB:.1f} MiB")
