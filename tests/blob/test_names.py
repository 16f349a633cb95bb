"""Names are opaque: traversal attempts are refused or stay names, over-long names are
`400 invalid_name`, `%2F` stays inside a key, and no request creates or reads a file outside
the data directory (nor a file named after a bucket or key inside it)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import BlobServer, BlobServerFactory, assert_error, curl


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("segment", ["..", ".", "%2e%2e", "%2E%2E", "%2e", ".%2e", "%2e.",
                                     "a%00b", "%00", "%0a", "a%0Db", "%7F", "%C0%AE%C0%AE",
                                     "%FF", "%e2%80", "%C2%85"])
def test_bad_names_are_invalid_name(server: BlobServer, segment: str) -> None:
    a = server.alpha
    for path in (f"/buckets/{segment}/keys/k", f"/buckets/b/keys/{segment}",
                 f"/buckets/{segment}/keys"):
        for method in ("GET", "PUT", "DELETE", "HEAD"):
            if method == "PUT" and path.endswith("/keys"):
                continue
            r = a.request(method, path, b"x" if method == "PUT" else None)
            if method == "HEAD":
                assert r.status == 400, (path, r)
            else:
                assert_error(r, 400, "invalid_name")
    assert a.get("/buckets").json() == {"buckets": []}


def test_name_length_limit(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(config={"max_name_bytes": 64})
    a = s.alpha
    a.put_ok(f"/buckets/{'b' * 64}/keys/{'k' * 64}", b"at the limit")
    assert a.get(f"/buckets/{'b' * 64}/keys/{'k' * 64}").body == b"at the limit"
    assert_error(a.put(f"/buckets/{'b' * 65}/keys/k", b"x"), 400, "invalid_name")
    assert_error(a.put(f"/buckets/b/keys/{'k' * 65}", b"x"), 400, "invalid_name")
    assert_error(a.get(f"/buckets/{'b' * 65}/keys?keys=true"), 400, "invalid_name")
    # The limit counts bytes after decoding: 32 times "é" is 64 bytes, 33 is 66.
    a.put_ok(f"/buckets/b/keys/{quote('é' * 32)}", b"64 bytes of name")
    assert_error(a.put(f"/buckets/b/keys/{quote('é' * 33)}", b"x"), 400, "invalid_name")
    # ... and not the encoded length: 64 bytes sent as 192 characters of escapes is fine.
    a.put_ok("/buckets/b/keys/" + "%6B" * 64, b"escaped")
    assert a.get(f"/buckets/b/keys/{'k' * 64}").body == b"escaped"
    assert_error(a.sign({"bucket": "b", "key": "k" * 65}), 400, "invalid_name")
    # The default limit is 1024 bytes.
    d = blob_servers.start()
    d.alpha.put_ok(f"/buckets/b/keys/{'k' * 1024}", b"x")
    assert_error(d.alpha.put(f"/buckets/b/keys/{'k' * 1025}", b"x"), 400, "invalid_name")
    assert_error(d.alpha.get(f"/buckets/b/keys/{'k' * 20000}"), 400, "invalid_name")


def test_traversal_never_reaches_the_file_system(server: BlobServer, tmp_path: Path) -> None:
    a = server.alpha
    outside_before = _tree(tmp_path)
    base = server.base
    auth = ["-H", "Authorization: Bearer tokA"]
    for raw in ("/buckets/../../etc/passwd", "/buckets/b/keys/../../../etc/passwd",
                "/buckets/b/keys/..", "/../../etc/passwd", "/blobs/../../etc/passwd",
                "/buckets/b/keys/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/buckets//etc"):
        c = curl("--path-as-is", *auth, base + raw)
        assert c.status in (400, 404), (raw, c)
        assert b"root:" not in c.body, raw
        assert c.body.startswith(b'{"error":"'), (raw, c.body)
        c = curl("--path-as-is", *auth, "-X", "PUT", "--data-binary", "pwned", base + raw)
        assert c.status in (400, 404), (raw, c)
    for bucket, key in (("..", "k"), ("b", "."), ("b", "a\x00b"), ("b", ""), ("b\n", "k")):
        assert_error(a.sign({"bucket": bucket, "key": key}), 400, "invalid_name")
    # Encoded slashes and dots that are not exactly "." or "..": ordinary, opaque keys.
    evil = ["../../etc/passwd", "/etc/passwd", "..\\..\\windows", "...", "..a", "a/../b",
            "zzmarker/../../zzescape"]
    for key in evil:
        path = f"/buckets/trav/keys/{quote(key, safe='')}"
        assert_error(a.get(path), 404, "not_found")  # never the file's bytes
        a.put_ok(path, f"value of {key}".encode())
    a.put_ok(f"/buckets/{quote('../../zzbucket', safe='')}/keys/zzkey", b"bucket with dots")
    for key in evil:
        assert a.get(f"/buckets/trav/keys/{quote(key, safe='')}").body == f"value of {key}".encode()
    assert sorted(a.list_keys("trav")) == sorted(evil, key=lambda k: k.encode())
    assert sorted(a.get("/buckets").json()["buckets"]) == sorted(["trav", "../../zzbucket"])
    # A key with %2F is one key; the unencoded slash is a path separator.
    a.put_ok("/buckets/trav/keys/photos%2F2024%2Fcat.jpg", b"cat")
    assert_error(a.get("/buckets/trav/keys/photos/2024/cat.jpg"), 404, "no_such_resource")
    assert a.get("/buckets/trav/keys/photos%2f2024%2fcat.jpg").body == b"cat"
    assert "photos/2024/cat.jpg" in a.list_keys("trav")
    # Nothing was created outside the data directory, and no file inside it is named after
    # a bucket or key.
    created = _tree(tmp_path) - outside_before
    data_rel = str(server.data_dir.relative_to(tmp_path))
    logs = "logs"
    assert all(p.startswith(data_rel + "/") or p.startswith(logs) for p in created), created
    inside = _tree(server.data_dir)
    assert not [p for p in inside if "zz" in p or "passwd" in p or "trav" in p], inside
    assert not Path("/etc/zzescape").exists() and not Path("/zzescape").exists()
