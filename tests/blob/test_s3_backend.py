"""The S3-compatible content backend (`[storage] backend = "s3"`), against a real S3 server:
moto's (`moto_server`, from tests/requirements.txt), started once for this module. Every test
gets its own bucket; boto3 looks at the bucket behind the blob-server's back.

Needs a blob-server built with the `s3` cargo feature:
    cargo build --release -p blob-server --features s3
"""

from __future__ import annotations

import hashlib
import http.client
import re
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.procs import ServerProcess

from .conftest import (
    KIB,
    MIB,
    OPERATOR_TOKEN,
    BlobServer,
    BlobServerFactory,
    assert_error,
    rand_bytes,
    sha256_hex,
    to_toml,
    upload_headers,
    wait_until,
)

ACCESS_KEY = "berth-test-access"
SECRET_KEY = "berth-test-secret-5f3a9c"  # must never show up in logs or --print-config
S3_BUILD_HINT = "cargo build --release -p blob-server --features s3"
PREFIX = "blobs/"
CHUNK = 256 * KIB
HEADER = 24


def stored_len(size: int, chunk: int = CHUNK) -> int:
    """Bytes of the bucket object holding `size` content bytes (header, CRC per chunk)."""
    return HEADER + -(-size // chunk) * 4 + size


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a port of its choosing; yields its endpoint URL."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: .venv/bin/pip install -r tests/requirements.txt "
                    "(moto[server])", pytrace=False)
    log_dir = tmp_path_factory.mktemp("moto")
    proc = ServerProcess([str(exe), "-H", "127.0.0.1", "-p", "0"], log_dir, "moto")
    deadline = time.monotonic() + 30
    url = None
    while url is None and time.monotonic() < deadline:
        m = re.search(r"Running on (http://127\.0\.0\.1:\d+)", proc.stderr_tail())
        if m:
            url = m.group(1)
        elif proc.proc.poll() is not None:
            break
        else:
            time.sleep(0.1)
    if url is None:
        proc.stop(timeout=5)
        pytest.fail("moto_server did not start:\n" + proc.describe(), pytrace=False)
    yield url
    proc.stop(timeout=10)


@pytest.fixture(scope="module")
def s3(moto: str) -> Any:
    import boto3  # installed with moto[server]

    return boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"berth-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def storage(moto: str, bucket: str, **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"backend": "s3", "bucket": bucket, "endpoint": moto,
                             "region": "us-east-1", "prefix": PREFIX, "allow_http": True,
                             "part_size": "5MiB"}
    table.update(extra)
    return table


ENV = ["env", f"AWS_ACCESS_KEY_ID={ACCESS_KEY}", f"AWS_SECRET_ACCESS_KEY={SECRET_KEY}"]


def start(factory: BlobServerFactory, moto: str, bucket: str, *, tenants: str | None = None,
          config: dict[str, Any] | None = None, data_dir: Path | None = None,
          **extra: Any) -> BlobServer:
    check_s3_support(factory)
    cfg = {"storage": storage(moto, bucket, **extra)}
    cfg.update(config or {})
    kw: dict[str, Any] = {"config": cfg, "wrapper": ENV, "data_dir": data_dir}
    if tenants is not None:
        kw["tenants"] = tenants
    return factory.start(**kw)


def check_s3_support(factory: BlobServerFactory) -> None:
    """Fails (with how to build it) when the binary has no S3 backend."""
    cfg = factory.tmp / "s3-check.toml"
    cfg.write_text('[storage]\nbackend = "s3"\nbucket = "b"\n')
    p = subprocess.run([str(factory.binary()), "--config", str(cfg), "--check-config"],
                       check=False, capture_output=True, text=True, timeout=30)
    if "--features s3" in p.stderr:
        pytest.fail(f"{factory.bin} was built without S3 support: run `{S3_BUILD_HINT}`",
                    pytrace=False)


def data_objects(s3: Any, bucket: str) -> dict[str, int]:
    """Key -> size of every object the server stored (under its prefix)."""
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX):
        for o in page.get("Contents", []):
            out[o["Key"]] = o["Size"]
    return out


# --------------------------------------------------------------------------------------------


def test_objects_and_blobs_live_in_the_bucket(blob_servers: BlobServerFactory, moto: str,
                                              s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    c = srv.alpha
    bodies = {"empty": b"", "one": b"x", "mid": rand_bytes(100 * KIB + 7, "mid"),
              "big": rand_bytes(3 * MIB + 5, "big")}
    for name, body in bodies.items():
        c.put_ok(f"/buckets/b/keys/{name}", body, {"Content-Type": "application/x-test"})
    objs = data_objects(s3, bucket)
    assert sorted(objs.values()) == sorted(stored_len(len(b)) for b in bodies.values()), objs
    assert not list((srv.data_dir / "volumes").glob("*.vol")), "content went to local volumes"
    assert not [p for p in (srv.data_dir / "objects").rglob("*") if p.is_file()]

    for name, body in bodies.items():
        r = c.get(f"/buckets/b/keys/{name}")
        assert r.status == 200 and r.body == body, (name, r.status, len(r.body))
        assert r.header("content-type") == "application/x-test"
        assert r.header("etag") == f'"{sha256_hex(body)}"'
        h = c.head(f"/buckets/b/keys/{name}")
        assert h.status == 200 and h.header("content-length") == str(len(body)) and h.body == b""

    big = bodies["big"]
    for start_, end in [(0, 0), (5, 99), (CHUNK - 3, CHUNK + 3), (2 * CHUNK, 3 * CHUNK - 1),
                        (len(big) - 10, len(big) - 1)]:
        r = c.get("/buckets/b/keys/big", {"Range": f"bytes={start_}-{end}"})
        assert r.status == 206, r
        assert r.body == big[start_:end + 1], (start_, end)
        assert r.header("content-range") == f"bytes {start_}-{end}/{len(big)}"
    r = c.get("/buckets/b/keys/big", {"Range": "bytes=-1000"})
    assert r.status == 206 and r.body == big[-1000:]

    blob = rand_bytes(700 * KIB, "blob")
    bid = c.post_blob(blob)
    assert bid == "sha256:" + sha256_hex(blob)
    r = c.get(f"/blobs/{bid}")
    assert r.status == 200 and r.body == blob
    r = c.get(f"/blobs/{bid}", {"Range": "bytes=300000-300009"})
    assert r.status == 206 and r.body == blob[300000:300010]
    assert srv.beta.get(f"/blobs/{bid}").status == 404  # isolation is metadata: unchanged

    # Deleting the last reference deletes the bucket object (in the background).
    before = len(data_objects(s3, bucket))
    assert c.delete("/buckets/b/keys/big").status == 204
    assert c.delete(f"/blobs/{bid}").status == 204
    assert c.get("/buckets/b/keys/big").status == 404
    wait_until("the deleted objects' keys to leave the bucket",
               lambda: len(data_objects(s3, bucket)) == before - 2)


def test_same_bytes_are_stored_once(blob_servers: BlobServerFactory, moto: str, s3: Any,
                                    bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    body = rand_bytes(400 * KIB, "dup")
    srv.alpha.put_ok("/buckets/b/keys/one", body)
    srv.alpha.put_ok("/buckets/b/keys/two", body)
    assert srv.alpha.post_blob(body) == "sha256:" + sha256_hex(body)
    srv.beta.put_ok("/buckets/other/keys/three", body)
    # The duplicates' uploads are deleted in the background once their commit found the
    # content already stored.
    wait_until("one bucket object for four copies", lambda: len(data_objects(s3, bucket)) == 1)
    assert list(data_objects(s3, bucket).values()) == [stored_len(len(body))]
    srv.alpha.put_ok("/buckets/b/keys/four", body + b"!")
    wait_until("two bucket objects", lambda: len(data_objects(s3, bucket)) == 2)
    # Dropping some references keeps the object; dropping the last one deletes it.
    for path in ["/buckets/b/keys/one", "/buckets/b/keys/two", "/buckets/other/keys/three"]:
        client = srv.beta if "other" in path else srv.alpha
        assert client.delete(path).status == 204
    time.sleep(0.5)
    assert len(data_objects(s3, bucket)) == 2
    assert srv.alpha.get(f"/blobs/sha256:{sha256_hex(body)}").body == body
    assert srv.alpha.delete(f"/blobs/sha256:{sha256_hex(body)}").status == 204
    wait_until("the last reference's object to go", lambda: len(data_objects(s3, bucket)) == 1)


QUOTA_TENANTS = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "1MiB"
"""


def test_quota_is_enforced_and_refused_uploads_leave_nothing(
        blob_servers: BlobServerFactory, moto: str, s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket, tenants=QUOTA_TENANTS)
    c = srv.alpha
    c.put_ok("/buckets/b/keys/first", rand_bytes(600 * KIB, "q1"))
    assert_error(c.put("/buckets/b/keys/second", rand_bytes(600 * KIB, "q2")), 507,
                 "quota_exceeded")
    # Without a declared length the refusal comes mid-stream.
    chunks = (rand_bytes(64 * KIB, f"q3-{i}") for i in range(10))
    r = c.put("/buckets/b/keys/third", chunks)  # http.client sends it chunked
    assert_error(r, 507, "quota_exceeded")
    time.sleep(0.3)
    assert list(data_objects(s3, bucket).values()) == [stored_len(600 * KIB)]
    # Deleting frees the quota.
    assert c.delete("/buckets/b/keys/first").status == 204
    c.put_ok("/buckets/b/keys/second", rand_bytes(600 * KIB, "q2"))


def test_multi_mib_object_goes_up_in_parts(blob_servers: BlobServerFactory, moto: str,
                                           s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    body = rand_bytes(13 * MIB + 123, "multipart")
    chunks = (body[i:i + MIB] for i in range(0, len(body), MIB))
    r = srv.alpha.put("/buckets/b/keys/large", chunks)  # chunked, no declared length
    assert r.status == 204, r
    (key, size), = data_objects(s3, bucket).items()
    assert size == stored_len(len(body))
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    assert etag.endswith("-3"), f"expected a 3-part multipart upload, ETag {etag}"
    r = srv.alpha.get("/buckets/b/keys/large")
    assert r.status == 200 and sha256_hex(r.body) == sha256_hex(body)
    r = srv.alpha.get("/buckets/b/keys/large", {"Range": f"bytes={5 * MIB - 10}-{10 * MIB}"})
    assert r.status == 206 and r.body == body[5 * MIB - 10:10 * MIB + 1]
    # No multipart upload is left open.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_changed_bucket_objects_give_errors_never_wrong_bytes(
        blob_servers: BlobServerFactory, moto: str, s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket,
                config={"scrub_interval": "1s", "scrub_rate": "1GiB"})
    body = rand_bytes(CHUNK * 4, "rot")
    srv.alpha.put_ok("/buckets/b/keys/k", body)
    (key, _), = data_objects(s3, bucket).items()
    good = s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    # A flipped bit in the first chunk: 500 before any byte is sent.
    s3.put_object(Bucket=bucket, Key=key, Body=flip(good, HEADER + 4 + 10))
    r = srv.alpha.get("/buckets/b/keys/k")
    assert_error(r, 500, "corrupt")

    # In the third chunk: the first two go out, then the response is cut short.
    s3.put_object(Bucket=bucket, Key=key, Body=flip(good, HEADER + 2 * (CHUNK + 4) + 4 + 1))
    r = srv.alpha.get("/buckets/b/keys/k", {"Range": f"bytes={2 * CHUNK}-{2 * CHUNK + 9}"})
    assert_error(r, 500, "corrupt")
    r = srv.alpha.get("/buckets/b/keys/k", {"Range": f"bytes=0-{CHUNK - 1}"})
    assert r.status == 206 and r.body == body[:CHUNK]
    try:
        r = srv.alpha.get("/buckets/b/keys/k")
        got = r.body
    except http.client.IncompleteRead as e:  # the body was cut short, as it should be
        got = e.partial
    assert len(got) < len(body) and body.startswith(got), "wrong or too many bytes were sent"

    # A different length (truncated, or replaced by other bytes): refused whole.
    s3.put_object(Bucket=bucket, Key=key, Body=good[:-1])
    assert_error(srv.alpha.get("/buckets/b/keys/k"), 500, "corrupt")
    s3.put_object(Bucket=bucket, Key=key, Body=b"something else entirely")
    assert_error(srv.alpha.get("/buckets/b/keys/k"), 500, "corrupt")

    # Rot that keeps every CRC valid reads "fine" chunk by chunk, but the scrub (every
    # second here) checks the SHA-256 too and quarantines the content: from then on reads
    # fail even though each chunk passes its CRC.
    at = HEADER + (CHUNK + 4)  # the second chunk's CRC
    chunk = bytearray(good[at + 4:at + 4 + CHUNK])
    chunk[100] ^= 0xFF
    rot = good[:at] + zlib.crc32(bytes(chunk)).to_bytes(4, "little") + bytes(chunk) + \
        good[at + 4 + CHUNK:]
    s3.put_object(Bucket=bucket, Key=key, Body=rot)
    wait_until("the scrub to find the rot", lambda: _metric(srv, "berth_blob_scrub_corrupt") == 1,
               timeout=15)
    assert_error(srv.alpha.get("/buckets/b/keys/k"), 500, "corrupt")
    # Storing the same bytes again repairs it: a fresh object replaces the rotten one, which
    # is deleted.
    srv.alpha.put_ok("/buckets/b/keys/again", body)
    r = srv.alpha.get("/buckets/b/keys/k")
    assert r.status == 200 and r.body == body
    wait_until("the rotten object to be deleted", lambda: key not in data_objects(s3, bucket))
    assert len(data_objects(s3, bucket)) == 1


def _metric(server: BlobServer, name: str) -> int | None:
    conn = http.client.HTTPConnection(*server.admin, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    body = conn.getresponse().read().decode()
    conn.close()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def test_kill9_mid_upload_leaves_no_object(blob_servers: BlobServerFactory, moto: str,
                                           s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    kept = rand_bytes(200 * KIB, "kept")
    srv.alpha.put_ok("/buckets/b/keys/kept", kept)
    # Bytes of an upload that completed its bucket object but never committed (the client
    # went away at the very end) and one still streaming parts when the server dies.
    conn = srv.raw()
    size = 16 * MIB
    conn.send(upload_headers("/buckets/b/keys/cut", "tokA", size))
    sent = 0
    piece = rand_bytes(MIB, "cut")
    while sent < 11 * MIB:
        conn.send(piece)
        sent += MIB
    time.sleep(1.0)  # at least one 5 MiB part is in the bucket's multipart upload
    srv.kill9()
    conn.close()
    srv2 = blob_servers.restart(srv)
    assert srv2.alpha.get("/buckets/b/keys/cut").status == 404
    r = srv2.alpha.get("/buckets/b/keys/kept")
    assert r.status == 200 and r.body == kept
    assert list(data_objects(s3, bucket).values()) == [stored_len(len(kept))]
    assert srv2.alpha.stats()  # still serving


def test_orphan_object_from_a_crash_is_swept_at_start(blob_servers: BlobServerFactory,
                                                      moto: str, s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    srv.alpha.put_ok("/buckets/b/keys/kept", b"kept bytes")
    # What a crash between an upload's last byte and its commit leaves: an unreferenced key.
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}data/00000000deadbeef", Body=b"orphan")
    s3.put_object(Bucket=bucket, Key="elsewhere/not-ours", Body=b"not ours")
    srv.process.stop(timeout=15)
    srv2 = blob_servers.restart(srv)
    assert srv2.alpha.get("/buckets/b/keys/kept").body == b"kept bytes"
    assert list(data_objects(s3, bucket).values()) == [stored_len(len(b"kept bytes"))]
    assert s3.get_object(Bucket=bucket, Key="elsewhere/not-ours")["Body"].read() == b"not ours"


def test_client_gone_mid_upload_aborts_the_multipart_upload(
        blob_servers: BlobServerFactory, moto: str, s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    conn = srv.raw()
    conn.send(upload_headers("/buckets/b/keys/gone", "tokA", 20 * MIB))
    for i in range(12):
        conn.send(rand_bytes(MIB, f"gone{i}"))
    wait_until("a multipart upload to start",
               lambda: s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), timeout=20)
    conn.close()
    wait_until("the multipart upload to be aborted",
               lambda: not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), timeout=20)
    assert data_objects(s3, bucket) == {}
    assert srv.alpha.get("/buckets/b/keys/gone").status == 404


def test_acknowledged_writes_survive_kill9(blob_servers: BlobServerFactory, moto: str, s3: Any,
                                           bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    bodies = {f"k{i}": rand_bytes(1000 * i + 1, f"ack{i}") for i in range(20)}
    for k, v in bodies.items():
        srv.alpha.put_ok(f"/buckets/b/keys/{k}", v)
    srv.kill9()
    srv2 = blob_servers.restart(srv)
    for k, v in bodies.items():
        r = srv2.alpha.get(f"/buckets/b/keys/{k}")
        assert r.status == 200 and r.body == v, k
    assert len(data_objects(s3, bucket)) == len(bodies)


def test_secrets_stay_out_of_output(blob_servers: BlobServerFactory, moto: str, s3: Any,
                                    bucket: str, tmp_path: Path) -> None:
    check_s3_support(blob_servers)
    creds = tmp_path / "s3-credentials.toml"
    creds.write_text(f'access_key_id = "{ACCESS_KEY}"\nsecret_access_key = "{SECRET_KEY}"\n')
    creds.chmod(0o600)
    table = storage(moto, bucket, credentials_file=str(creds))
    cfg = tmp_path / "c.toml"
    cfg.write_text(to_toml({"storage": table}))
    p = subprocess.run([str(blob_servers.binary()), "--config", str(cfg), "--print-config"],
                       check=False, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert str(creds) in p.stdout and SECRET_KEY not in p.stdout and ACCESS_KEY not in p.stdout
    # Credentials from the file alone (no environment), with debug logs on.
    srv = blob_servers.start(config={"storage": table}, args=["-vv"])
    srv.alpha.put_ok("/buckets/b/keys/k", b"v")
    assert srv.alpha.get("/buckets/b/keys/k").body == b"v"
    srv.process.stop(timeout=15)
    log = srv.process.stderr_path.read_text() + "\n".join(srv.process.stdout_lines())
    assert SECRET_KEY not in log
    # A broken credentials file is reported without echoing it.
    creds.write_text(f'secret_access_key = {SECRET_KEY}\n')  # not TOML
    p = subprocess.run([str(blob_servers.binary()), "--config", str(cfg), "--check-config"],
                       check=False, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "credentials_file" in p.stderr and SECRET_KEY not in p.stderr


def test_unreachable_or_missing_bucket_fails_at_start(blob_servers: BlobServerFactory,
                                                      moto: str, tmp_path: Path) -> None:
    check_s3_support(blob_servers)
    with pytest.raises(AssertionError) as e:
        blob_servers.start(config={"storage": storage(moto, "no-such-bucket-here")},
                           wrapper=ENV, tenants=None)
    assert "no-such-bucket-here" in str(e.value) and "exited before" in str(e.value)


def test_data_dir_with_bucket_content_refuses_the_local_backend(
        blob_servers: BlobServerFactory, moto: str, s3: Any, bucket: str) -> None:
    srv = start(blob_servers, moto, bucket)
    srv.alpha.put_ok("/buckets/b/keys/k", b"in the bucket")
    srv.process.stop(timeout=15)
    with pytest.raises(AssertionError) as e:
        blob_servers.start(data_dir=srv.data_dir)
    assert 'backend = \\"s3\\"' in str(e.value) or 'backend = "s3"' in str(e.value), e.value


BIG_TENANTS = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "1GiB"
max_object_bytes = "1GiB"
"""


def vm_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM`-style line of /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(f"{field}:"))


@pytest.mark.slow
def test_large_object_streams_through_bounded_memory(blob_servers: BlobServerFactory, moto: str,
                                                     s3: Any, bucket: str) -> None:
    """256 MiB up and down: the server's resident set grows far less than the object (a few
    upload parts and read windows), so nothing buffers it whole. The growth is measured from
    the running server's own size before the transfer (its S3 client, runtimes and allocator
    take some 40 MiB before the first request), so the bound is about the transfer only."""
    size = 256 * MIB
    srv = start(blob_servers, moto, bucket, tenants=BIG_TENANTS,
                config={"max_object_size": "1GiB"})
    base = vm_kib(srv.pid, "VmRSS") * 1024
    block = rand_bytes(MIB, "big-block")
    sent = hashlib.sha256()

    def pieces() -> Iterator[bytes]:
        for i in range(size // MIB):
            piece = i.to_bytes(8, "little") + block[8:]
            sent.update(piece)
            yield piece

    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
    conn.request("PUT", "/buckets/big/keys/k", body=pieces(),
                 headers={"Authorization": "Bearer tokA", "Content-Length": str(size)})
    resp = conn.getresponse()
    assert resp.status == 204, (resp.status, resp.read())
    conn.close()
    got = hashlib.sha256()
    n = 0
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
    conn.request("GET", "/buckets/big/keys/k", headers={"Authorization": "Bearer tokA"})
    resp = conn.getresponse()
    assert resp.status == 200
    while piece := resp.read(4 * MIB):
        got.update(piece)
        n += len(piece)
    conn.close()
    assert n == size and got.hexdigest() == sent.hexdigest()
    hwm = vm_kib(srv.pid, "VmHWM") * 1024
    grew = hwm - base
    print(f"S3 {size // MIB} MiB: peak RSS {hwm / MIB:.1f} MiB, {grew / MIB:.1f} MiB over the idle server")
    # Two parts in flight and one filling (8 MiB each), a read window and the one fetched
    # ahead (4 MiB each), and the HTTP clients' buffers: 80 MiB leaves room for the
    # allocator's caching, and a whole object held in memory would add 256 MiB.
    assert grew < 80 * MIB, (
        f"the server grew by {grew / MIB:.1f} MiB (peak {hwm / MIB:.1f} MiB) "
        f"for a {size // MIB} MiB object"
    )
    assert list(data_objects(s3, bucket).values()) == [stored_len(size)]


def test_switching_a_local_store_to_s3_keeps_its_content(
        blob_servers: BlobServerFactory, moto: str, s3: Any, bucket: str) -> None:
    local = blob_servers.start()
    small, large = b"small, in a volume", rand_bytes(300 * KIB, "local-large")
    local.alpha.put_ok("/buckets/b/keys/small", small)
    local.alpha.put_ok("/buckets/b/keys/large", large)
    local.process.stop(timeout=15)
    srv = start(blob_servers, moto, bucket, data_dir=local.data_dir)
    assert srv.alpha.get("/buckets/b/keys/small").body == small
    assert srv.alpha.get("/buckets/b/keys/large").body == large
    assert data_objects(s3, bucket) == {}
    new = rand_bytes(100 * KIB, "new")
    srv.alpha.put_ok("/buckets/b/keys/new", new)
    assert list(data_objects(s3, bucket).values()) == [stored_len(len(new))]
    # Old content is collected from the disk as before.
    files = [p for p in (srv.data_dir / "objects").rglob("*") if p.is_file()]
    assert len(files) == 1
    assert srv.alpha.delete("/buckets/b/keys/large").status == 204
    assert not files[0].exists()
    assert srv.alpha.stats()["bytes_used"] == len(small) + len(new)
