"""berth.blobs when things go wrong: credentials, limits, quotas, isolation, big streams,
dropped connections, a server that is down or restarts, corrupt data cut short."""

from __future__ import annotations

import hashlib
import random
import shutil
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import BlobServer, BlobServerFactory, DroppingProxy, free_port

from berth import blobs, config

KIB = 1024
MIB = 1024 * KIB


def sha_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rand_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def alpha(blob_server: BlobServer) -> Iterator[blobs.Client]:
    c = blobs.Client(blob_server.url, "tok-alpha")
    yield c
    c.close()


@pytest.fixture
def small(start_blob_server: BlobServerFactory) -> Iterator[blobs.Client]:
    """App `small` (1 MiB quota, 512 KiB objects) on a server of this test's own."""
    c = blobs.Client(start_blob_server().url, "tok-small")
    yield c
    c.close()


def test_wrong_or_missing_token_is_unauthorized(blob_server: BlobServer) -> None:
    for token in ["wrong", ""]:
        c = blobs.Client(blob_server.url, token)
        with pytest.raises(blobs.Unauthorized) as e:
            c.write(b"x")
        assert (e.value.status, e.value.code) == (401, "unauthorized")
        assert "credentials" in e.value.message
        with pytest.raises(blobs.Unauthorized):
            c.stat("b", "k")  # HEAD: the status alone tells
        with pytest.raises(blobs.Unauthorized):
            list(c.list_keys("b"))
        c.close()


def test_too_large_is_refused_before_the_upload(small: blobs.Client, tmp_path: Path) -> None:
    with pytest.raises(blobs.TooLarge) as e:
        small.write(bytes(600 * KIB))
    assert (e.value.status, e.value.code) == (413, "too_large")
    assert "524288" in e.value.message

    # A sized file: the server refuses on Content-Length, before `100 Continue`, so not one
    # byte of the file is read.
    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        for _ in range(5):
            out.write(bytes(MIB))
    with path.open("rb") as f:
        with pytest.raises(blobs.TooLarge):
            small.put("b", "k", f)
        assert f.tell() == 0

    # An unsized stream: refused once past the limit; the client stops sending there.
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        for _ in range(1000):  # 64 MiB if it were all sent
            pulled += 1
            yield bytes(64 * KIB)

    with pytest.raises(blobs.TooLarge):
        small.write(endless())
    assert pulled < 200
    assert small.usage().bytes_used == 0
    assert small.read(small.write(b"still fine")) == b"still fine"


def test_quota_exceeded_stores_nothing(small: blobs.Client) -> None:
    a = small.write(rand_bytes(400 * KIB, 1))
    small.put("b", "k", rand_bytes(400 * KIB, 2))
    used = small.usage().bytes_used
    assert used == 800 * KIB
    with pytest.raises(blobs.QuotaExceeded) as e:
        small.write(rand_bytes(400 * KIB, 3))
    assert (e.value.status, e.value.code) == (507, "quota_exceeded")
    assert "nothing was stored" in e.value.message

    def chunks() -> Iterator[bytes]:
        data = rand_bytes(400 * KIB, 4)
        for i in range(0, len(data), 10 * KIB):
            yield data[i : i + 10 * KIB]

    with pytest.raises(blobs.QuotaExceeded):
        small.write(chunks())  # unsized: refused part way through
    with pytest.raises(blobs.QuotaExceeded):
        small.put("b", "k2", rand_bytes(400 * KIB, 5))
    u = small.usage()
    assert (u.bytes_used, u.bytes_reserved) == (used, 0)
    assert small.delete(a)
    assert small.write(rand_bytes(400 * KIB, 3)) == sha_id(rand_bytes(400 * KIB, 3))


def test_apps_are_isolated(blob_server: BlobServer) -> None:
    alpha = blobs.Client(blob_server.url, "tok-alpha")
    beta = blobs.Client(blob_server.url, "tok-beta")
    secret = b"alpha's secret " + rand_bytes(100, 9)
    blob_id = alpha.write(secret)
    alpha.put("private", "doc", secret)
    assert not beta.exists(blob_id)
    with pytest.raises(blobs.NotFound):
        beta.read(blob_id)
    assert beta.delete(blob_id) is False
    assert beta.stat("private", "doc") is None
    with pytest.raises(blobs.NotFound):
        beta.get("private", "doc")
    assert list(beta.list_keys("private")) == []
    assert "private" not in set(beta.list_buckets())
    # beta storing the same bytes gets the same id but holds its own copy of the claim.
    assert beta.write(secret) == blob_id
    assert beta.delete(blob_id) is True
    assert alpha.read(blob_id) == secret
    beta.put("private", "doc", b"beta's own")
    assert alpha.get("private", "doc").data == secret
    assert beta.usage().app == "beta"
    alpha.close()
    beta.close()


def test_multi_mib_streams_are_never_held_whole(alpha: blobs.Client, tmp_path: Path) -> None:
    size = 24 * MIB
    src = tmp_path / "src.bin"
    digest = hashlib.sha256()
    rng = random.Random(42)
    with src.open("wb") as out:
        for _ in range(size // MIB):
            piece = rng.randbytes(MIB)
            digest.update(piece)
            out.write(piece)
    expected = "sha256:" + digest.hexdigest()
    dst = tmp_path / "dst.bin"

    tracemalloc.start()
    try:
        with src.open("rb") as f:
            assert alpha.write(f) == expected
        with src.open("rb") as f:
            info = alpha.put("big", "file", f)
        assert info.size == size and info.etag == digest.hexdigest()
        with alpha.open(expected) as stream, dst.open("wb") as sink:
            assert stream.size == size
            shutil.copyfileobj(stream, sink, 256 * KIB)
        with alpha.open_object("big", "file") as stream:
            streamed = hashlib.sha256()
            while piece := stream.read(MIB):
                streamed.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB, f"peak Python memory {peak} bytes for a {size}-byte stream"
    assert streamed.hexdigest() == digest.hexdigest()
    with dst.open("rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()

    # A generator (unsized, sent chunked) of the same bytes, hashed as it is produced.
    produced = hashlib.sha256()

    def generate() -> Iterator[bytes]:
        rng = random.Random(42)
        for _ in range(size // MIB):
            piece = rng.randbytes(MIB)
            produced.update(piece)
            yield piece

    tracemalloc.start()
    try:
        assert alpha.write(generate()) == expected
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert produced.hexdigest() == digest.hexdigest()
    assert peak < 4 * MIB
    assert alpha.delete(expected) and alpha.delete("big", "file")


def test_server_down_is_server_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    c = blobs.Client(url, "tok-alpha", timeout=2)
    with pytest.raises(blobs.ServerUnavailable) as e:
        c.write(b"x")
    assert e.value.status is None and e.value.code == "unavailable"
    text = str(e.value)
    assert url in text and "refused" in text and "BERTH_BLOB_URL" in text, text
    config.reload({"BERTH_BLOB_URL": url})
    with pytest.raises(blobs.ServerUnavailable):
        blobs.exists("sha256:" + "0" * 64)
    with pytest.raises(blobs.BlobError):  # the base class catches it too
        list(blobs.list_buckets())


def test_restart_and_outage(start_blob_server: BlobServerFactory) -> None:
    server = start_blob_server()
    c = blobs.Client(server.url, "tok-alpha", timeout=5)
    blob_id = c.write(b"durable")
    server.restart()  # the pooled connection is now closed by the old process
    assert c.read(blob_id) == b"durable"
    server.stop()
    with pytest.raises(blobs.ServerUnavailable):
        c.read(blob_id)
    server.start()
    assert c.read(blob_id) == b"durable"
    c.close()


def test_a_dropped_keep_alive_connection_is_retried_once(blob_server: BlobServer) -> None:
    proxy = DroppingProxy(blob_server.port)
    c = blobs.Client(proxy.url, "tok-alpha")
    try:
        blob_id = c.write(b"first")  # leaves one pooled connection behind
        steps: list[Callable[[], object]] = [
            lambda: c.read(blob_id) == b"first",
            lambda: c.write(b"second") == sha_id(b"second"),
            lambda: c.put("retry", "k", b"v").size == 1,
            lambda: c.put("retry", "k", b"w", if_match=hashlib.sha256(b"v").hexdigest()).size,
            lambda: c.write(iter([b"gen", b"erator"])) == sha_id(b"generator"),
            lambda: c.delete("retry", "k"),
            lambda: c.stat("retry", "k") is None,
        ]
        for i, step in enumerate(steps, 1):
            proxy.arm()  # the pooled connection dies as it is reused
            assert step(), i
            assert proxy.dropped == i
    finally:
        c.close()
        proxy.close()


def test_corrupt_data_is_cut_short_never_wrong(start_blob_server: BlobServerFactory) -> None:
    server = start_blob_server()
    c = blobs.Client(server.url, "tok-alpha")
    data = rand_bytes(MIB, 7)
    blob_id = c.write(data)
    (path,) = server.data_dir.rglob(blob_id.removeprefix("sha256:"))
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # inside the last chunk: the first ones are sent, then the body stops
    path.write_bytes(bytes(raw))
    with c.open(blob_id) as stream:
        got = bytearray()
        with pytest.raises(blobs.BlobError) as e:
            while piece := stream.read(64 * KIB):
                got += piece
    assert e.value.code == "truncated"
    assert data.startswith(bytes(got)) and len(got) < len(data)
    with pytest.raises(blobs.BlobError) as e:
        c.read(blob_id)
    assert e.value.code == "truncated"
    assert c.read(c.write(b"healthy")) == b"healthy"
    c.close()
