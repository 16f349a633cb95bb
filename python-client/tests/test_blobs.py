"""berth.blobs against a real blob-server: blobs, named objects, listing, signed URLs, usage."""

from __future__ import annotations

import hashlib
import http.client
import io
import itertools
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import BlobServer

from berth import blobs, config


def sha_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def use_app(server: BlobServer, tmp_path: Path, token: str = "tok-alpha") -> None:
    """Installs a berth.config like the deployer's: BERTH_BLOB_URL and a secrets file."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'token = "{token}"\n')
    secrets.chmod(0o600)
    config.reload(
        {
            "BERTH_APP": "alpha",
            "BERTH_BLOB_URL": server.url,
            "BERTH_SECRETS_FILE": str(secrets),
        }
    )


@pytest.fixture
def app(blob_server: BlobServer, tmp_path: Path) -> Iterator[BlobServer]:
    """The module's server, with berth.config set up for app alpha."""
    use_app(blob_server, tmp_path)
    yield blob_server
    blobs.close()


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> str:
    """A bucket of this test's own (the module shares one server)."""
    return "b-" + re.sub(r"[^0-9A-Za-z_-]", "_", request.node.name)


@pytest.fixture
def client(blob_server: BlobServer) -> Iterator[blobs.Client]:
    c = blobs.Client(blob_server.url, "tok-alpha")
    yield c
    c.close()


# -- content-addressed blobs ------------------------------------------------------------------


def test_write_read_exists_size_delete(app: BlobServer) -> None:
    data = b"hello, blobs"
    blob_id = blobs.write(data)
    assert blob_id == sha_id(data)
    assert blobs.read(blob_id) == data
    assert blobs.exists(blob_id)
    assert blobs.size(blob_id) == len(data)
    assert blobs.write(bytearray(data)) == blob_id  # same bytes, same id
    assert blobs.delete(blob_id) is True
    assert not blobs.exists(blob_id)
    assert blobs.delete(blob_id) is False
    with pytest.raises(blobs.NotFound) as e:
        blobs.read(blob_id)
    assert (e.value.status, e.value.code) == (404, "not_found")
    assert isinstance(e.value, KeyError)
    assert blob_id in str(e.value)
    with pytest.raises(blobs.NotFound):
        blobs.size(blob_id)
    with pytest.raises(blobs.NotFound):
        blobs.open(blob_id)


def test_empty_blob(app: BlobServer) -> None:
    blob_id = blobs.write(b"")
    assert blob_id == sha_id(b"")
    assert blobs.read(blob_id) == b""
    assert blobs.size(blob_id) == 0


def test_write_from_file_generator_and_memoryview(app: BlobServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000  # 256000 bytes: several chunks
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        assert blobs.write(f) == sha_id(data)
    with path.open("rb") as f:
        f.seek(1000)  # a file is read from its current position
        assert blobs.write(f) == sha_id(data[1000:])
    assert blobs.write(io.BytesIO(data)) == sha_id(data)
    assert blobs.write(memoryview(data)[5:]) == sha_id(data[5:])

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 7777):
            yield data[i : i + 7777]
        yield b""  # empty pieces are skipped, not taken as the end of a chunked body

    assert blobs.write(pieces()) == sha_id(data)
    assert blobs.read(sha_id(data[1000:])) == data[1000:]


def test_bad_data_and_ids_are_programming_errors(app: BlobServer, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="bytes"):
        blobs.write("text")  # type: ignore[arg-type]
    path = tmp_path / "t.txt"
    path.write_text("hello")
    with path.open("r") as f, pytest.raises(TypeError, match="binary mode"):
        blobs.write(f)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="yield bytes"):
        blobs.write(iter(["a", "b"]))  # type: ignore[arg-type]
    for bad in ["abc", "sha256:XYZ", "sha256:" + "A" * 64, "md5:" + "0" * 64]:
        with pytest.raises(ValueError, match="not a blob id"):
            blobs.read(bad)
    with pytest.raises(ValueError, match="bucket and the key"):
        blobs.delete("photos")  # a bucket alone is not a blob id
    # The client is still fine afterwards.
    assert blobs.read(blobs.write(b"ok")) == b"ok"


def test_open_streams_in_pieces(app: BlobServer) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    blob_id = blobs.write(data)
    with blobs.open(blob_id) as stream:
        assert stream.size == len(data)
        assert stream.info is None
        got = bytearray()
        while piece := stream.read(100_000):
            assert len(piece) <= 100_000
            got += piece
    assert bytes(got) == data
    # Closing a stream half way drops its connection; the client carries on.
    stream = blobs.open(blob_id)
    assert stream.read(10) == data[:10]
    stream.close()
    with pytest.raises(ValueError):
        stream.read(1)
    assert blobs.read(blob_id) == data


# -- named objects ----------------------------------------------------------------------------


def test_put_get_stat_delete(app: BlobServer, bucket: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    info = blobs.put(
        bucket,
        "first",
        b"hello",
        content_type="text/plain",
        metadata={"Author": "ann", "Note": "Zoë ✓"},
    )
    assert info.etag == hashlib.sha256(b"hello").hexdigest()
    assert (info.bucket, info.key, info.size, info.content_type) == (
        bucket,
        "first",
        5,
        "text/plain",
    )
    assert info.metadata == {"author": "ann", "note": "Zoë ✓"}
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=2)

    obj = blobs.get(bucket, "first")
    assert obj.data == b"hello" and obj.size == 5
    assert obj.content_type == "text/plain"
    assert obj.metadata == {"author": "ann", "note": "Zoë ✓"}
    assert (obj.etag, obj.last_modified) == (info.etag, info.last_modified)

    assert blobs.stat(bucket, "first") == info
    assert blobs.head(bucket, "first") == info
    assert blobs.stat(bucket, "nothing") is None

    default = blobs.put(bucket, "plain", b"x")
    assert default.content_type == "application/octet-stream"
    assert blobs.get(bucket, "plain").metadata == {}

    assert blobs.delete(bucket, "first") is True
    assert blobs.delete(bucket, "first") is False
    with pytest.raises(blobs.NotFound) as e:
        blobs.get(bucket, "first")
    assert e.value.code == "not_found" and f"{bucket}/first" in str(e.value)
    with pytest.raises(KeyError):
        blobs.open_object(bucket, "first")


def test_put_replaces_and_conditions(app: BlobServer, bucket: str) -> None:
    v1 = blobs.put(bucket, "doc", b"v1", if_absent=True)
    with pytest.raises(blobs.PreconditionFailed) as e:
        blobs.put(bucket, "doc", b"other", if_absent=True)
    assert (e.value.status, e.value.code) == (412, "precondition_failed")
    assert blobs.get(bucket, "doc").data == b"v1"

    v2 = blobs.put(bucket, "doc", b"v2", if_match=v1.etag)
    with pytest.raises(blobs.PreconditionFailed):
        blobs.put(bucket, "doc", b"v3", if_match=v1.etag)  # stale tag
    assert blobs.get(bucket, "doc").data == b"v2"
    blobs.put(bucket, "doc", b"v3", if_match=f'"{v2.etag}"')  # a quoted tag works too
    blobs.put(bucket, "doc", b"v4", if_match="*")
    with pytest.raises(blobs.PreconditionFailed):
        blobs.put(bucket, "absent", b"x", if_match="*")
    assert blobs.stat(bucket, "absent") is None

    with pytest.raises(blobs.PreconditionFailed):
        blobs.delete(bucket, "doc", if_match=v1.etag)
    current = blobs.stat(bucket, "doc")
    assert current is not None
    assert blobs.delete(bucket, "doc", if_match=current.etag) is True
    with pytest.raises(ValueError):
        blobs.put(bucket, "doc", b"x", if_absent=True, if_match="*")


def test_concurrent_create_only_has_one_winner(client: blobs.Client, bucket: str) -> None:
    results: list[str] = []

    def create(i: int) -> None:
        try:
            client.put(bucket, "lock", f"owner-{i}".encode(), if_absent=True)
            results.append("won")
        except blobs.PreconditionFailed:
            results.append("lost")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * 7 + ["won"]


def test_get_range_slices_like_python(app: BlobServer, bucket: str) -> None:
    data = bytes(range(256)) * 4
    blobs.put(bucket, "r", data)
    for start, end in [(0, 10), (1, 4), (100, None), (1000, 1024), (1020, 5000), (0, None)]:
        assert blobs.get_range(bucket, "r", start, end) == data[start:end], (start, end)
    assert blobs.get_range(bucket, "r", -10) == data[-10:]
    assert blobs.get_range(bucket, "r", 5000) == b""
    assert blobs.get_range(bucket, "r", 3, 3) == b""
    with pytest.raises(blobs.NotFound):
        blobs.get_range(bucket, "missing", 0, 5)
    with pytest.raises(blobs.NotFound):
        blobs.get_range(bucket, "missing", 3, 3)
    with pytest.raises(ValueError):
        blobs.get_range(bucket, "r", 5, 2)


def test_open_object_streams_with_info(app: BlobServer, bucket: str) -> None:
    data = b"0123456789" * 50_000
    put = blobs.put(bucket, "big", io.BytesIO(data), content_type="text/plain")
    with blobs.open_object(bucket, "big") as stream:
        assert stream.size == len(data)
        assert stream.info is not None and stream.info.etag == put.etag
        assert stream.info.content_type == "text/plain"
        assert stream.read(7) == data[:7]
        assert stream.read() == data[7:]


@pytest.mark.parametrize(
    "key",
    [
        "photos/2024/cat.jpg",
        "with space",
        "100%",
        "q?x=1&y=2#frag",
        "plus+sign",
        "ünïcødé/日本",
        "..dots..",
        "~tilde",
    ],
)
def test_names_are_one_path_segment(app: BlobServer, bucket: str, key: str) -> None:
    blobs.put(bucket, key, key.encode())
    assert blobs.get(bucket, key).data == key.encode()
    assert key in list(blobs.list_keys(bucket))
    # The server sees exactly the encoding its protocol describes (`/` as %2F).
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    quoted = "".join(
        c
        if c.isascii() and (c.isalnum() or c in "-_.~")
        else "".join(f"%{b:02X}" for b in c.encode())
        for c in key
    )
    conn.request(
        "GET", f"/buckets/{bucket}/keys/{quoted}", headers={"Authorization": "Bearer tok-alpha"}
    )
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, key.encode())
    conn.close()
    assert blobs.delete(bucket, key)


def test_invalid_names_are_bad_requests(app: BlobServer, bucket: str) -> None:
    for b, k in [(bucket, "."), (bucket, ".."), (bucket, ""), ("", "k"), (bucket, "a\nb")]:
        with pytest.raises(blobs.BadRequest) as e:
            blobs.put(b, k, b"x")
        assert (e.value.status, e.value.code) == (400, "invalid_name"), (b, k)
    with pytest.raises(ValueError, match="metadata name"):
        blobs.put(bucket, "k", b"x", metadata={"bad name": "v"})
    with pytest.raises(ValueError, match="line breaks"):
        blobs.put(bucket, "k", b"x", metadata={"n": "a\r\nInjected: yes"})
    with pytest.raises(blobs.BadRequest) as e:
        blobs.put(bucket, "k", b"x", metadata={"big": "v" * 9000})
    assert e.value.code == "invalid_header"


# -- listing ----------------------------------------------------------------------------------


def test_list_keys_follows_continuations_lazily(app: BlobServer, bucket: str) -> None:
    keys = [f"k{i:03d}" for i in range(25)]  # the server pages by 10
    for k in keys:
        blobs.put(bucket, k, b"v")
    assert list(blobs.list_keys(bucket)) == keys
    assert list(blobs.list_keys(bucket, page_size=3)) == keys
    assert list(blobs.list_keys("b-never-used")) == []

    it = blobs.list_keys(bucket)
    first = list(itertools.islice(it, 12))  # two pages fetched so far
    assert first == keys[:12]
    blobs.put(bucket, "z-late", b"v")  # sorts last: seen only if later pages are fetched later
    assert list(it) == [*keys[12:], "z-late"]
    with pytest.raises(ValueError):
        blobs.list_keys(bucket, page_size=0)


def test_keys_come_in_byte_order(app: BlobServer, bucket: str) -> None:
    keys = ["b", "a", "B", "é", "a/b", "a b", "0"]
    for k in keys:
        blobs.put(bucket, k, b"")
    assert list(blobs.list_keys(bucket)) == sorted(keys, key=lambda k: k.encode())


def test_list_buckets_pages(client: blobs.Client, bucket: str) -> None:
    names = [f"{bucket}-{i:02d}" for i in range(13)]
    for name in names:
        client.put(name, "k", b"")
    listed = list(client.list_buckets())
    assert set(names) <= set(listed)
    assert len(listed) == len(set(listed))
    assert set(names) <= set(client.list_buckets(page_size=4))
    client.delete(names[0], "k")
    assert names[0] not in set(client.list_buckets())


# -- signed URLs, usage, config ---------------------------------------------------------------


def test_signed_urls_read_without_a_token(app: BlobServer, bucket: str) -> None:
    blobs.put(bucket, "photos/cat.jpg", b"meow", content_type="image/jpeg")
    url = blobs.signed_url(bucket, "photos/cat.jpg", expires_in=600)
    assert url.startswith(app.url + f"/buckets/{bucket}/keys/photos%2Fcat.jpg?")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"meow"
        assert resp.headers["Content-Type"] == "image/jpeg"
    blobs.put(bucket, "photos/cat.jpg", b"purr")  # the URL reads what the name points at now
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"purr"

    blob_id = blobs.write(b"blob bytes")
    blob_url = blobs.signed_url(blob_id)
    with urllib.request.urlopen(blob_url, timeout=10) as resp:
        assert resp.read() == b"blob bytes"

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("signature=", "signature=00"), timeout=10)
    assert e.value.code == 403
    e.value.close()
    with pytest.raises(blobs.BadRequest):
        blobs.signed_url(bucket, "photos/cat.jpg", expires_in=10 * 365 * 86400)


def test_usage_counts_distinct_content(app: BlobServer) -> None:
    before = blobs.usage()
    assert before.app == "alpha"
    assert before.quota_bytes == 64 * 1024 * 1024
    assert before.max_object_bytes == 32 * 1024 * 1024
    data = b"usage-" + bytes(1000)
    blob_id = blobs.write(data)
    blobs.write(data)  # the same content again costs nothing more
    after = blobs.usage()
    assert after.bytes_used == before.bytes_used + len(data)
    assert after.bytes_free == after.quota_bytes - after.bytes_used - after.bytes_reserved
    blobs.delete(blob_id)
    assert blobs.usage().bytes_used == before.bytes_used


def test_client_configuration(blob_server: BlobServer, tmp_path: Path) -> None:
    config.reload({"BERTH_APP": "alpha"})
    with pytest.raises(config.ConfigError, match="BERTH_BLOB_URL"):
        blobs.Client()
    with pytest.raises(config.ConfigError, match="BERTH_BLOB_URL"):
        blobs.write(b"x")
    for bad in ["https://127.0.0.1:1", "127.0.0.1:8098", "http://:80", "http://h:99999"]:
        with pytest.raises(config.ConfigError):
            blobs.Client(bad, "")
    use_app(blob_server, tmp_path)
    first = blobs.default_client()
    assert blobs.default_client() is first and first.url == blob_server.url
    blobs.write(b"from config")
    use_app(blob_server, tmp_path)  # a reload rebuilds the default client
    assert blobs.default_client() is not first
    # A path prefix is kept (for a server behind a proxy): here it names nothing on the server.
    prefixed = blobs.Client(blob_server.url + "/prefix/", "tok-alpha")
    with pytest.raises(blobs.BlobError) as e:
        prefixed.usage()
    assert e.value.code == "no_such_resource" and not isinstance(e.value, blobs.NotFound)
    prefixed.close()
    blobs.close()


def test_one_client_many_threads(client: blobs.Client, bucket: str) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(15):
                data = f"{t}-{i}".encode() * (1 + i * 300)
                client.put(bucket, f"{t}/{i}", data)
                assert client.get(bucket, f"{t}/{i}").data == data
                assert client.read(client.write(data)) == data
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(client.list_keys(bucket))) == 8 * 15
