"""The error table of docs/protocols/blob.md: each code, from a real request, with the JSON body
`{"error": CODE, "message": TEXT}`; the server keeps serving after every one.

Codes covered elsewhere: 408/413/429 in test_limits.py, 507 quota_exceeded in test_quota.py,
507 disk_full in test_disk_full.py, 403 forbidden/expired in test_signed.py, 412/416 in
test_api.py.
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
from pathlib import Path

import pytest

from .conftest import (
    KIB,
    OPERATOR_TOKEN,
    BlobServer,
    Client,
    Reply,
    assert_error,
    rand_bytes,
    sha256_hex,
    upload_headers,
    wait_until,
)

HEX = "ab" * 32
ID = f"sha256:{HEX}"


def _auth(server: BlobServer, who: str) -> Client:
    return {"alpha": server.alpha, "anon": server.anon, "op": server.operator(),
            "op-ghost": server.operator("ghost"), "bad": server.client("nope"),
            }[who]


# (who, method, path, headers, body, status, code)
TABLE = [
    # 400 invalid_name
    ("alpha", "GET", "/buckets/../keys/k", {}, None, 400, "invalid_name"),
    ("alpha", "GET", "/buckets/b/keys/.", {}, None, 400, "invalid_name"),
    ("alpha", "PUT", "/buckets/b/keys/%2E%2E", {}, b"x", 400, "invalid_name"),
    ("alpha", "PUT", "/buckets/b/keys/a%00b", {}, b"x", 400, "invalid_name"),
    ("alpha", "PUT", "/buckets/b/keys/%FF%FE", {}, b"x", 400, "invalid_name"),
    ("alpha", "GET", "/buckets//keys", {}, None, 400, "invalid_name"),
    # 400 invalid_id
    ("alpha", "GET", "/blobs/nope", {}, None, 400, "invalid_id"),
    ("alpha", "GET", f"/blobs/sha256:{HEX[:-1]}", {}, None, 400, "invalid_id"),
    ("alpha", "GET", f"/blobs/sha256:{HEX.upper()}", {}, None, 400, "invalid_id"),
    ("alpha", "DELETE", f"/blobs/md5:{HEX}", {}, None, 400, "invalid_id"),
    ("alpha", "GET", f"/blobs/sha256:{'g' * 64}", {}, None, 400, "invalid_id"),
    # 400 invalid_header
    ("alpha", "PUT", "/buckets/b/keys/k", {"If-Match": "abc"}, b"x", 400, "invalid_header"),
    ("alpha", "PUT", "/buckets/b/keys/k", {"If-None-Match": "abc"}, b"x", 400, "invalid_header"),
    ("alpha", "PUT", "/buckets/b/keys/k", {f"X-Riak-Meta-M{i}": "v" * 1000 for i in range(9)},
     b"x", 400, "invalid_header"),
    ("alpha", "PUT", "/buckets/b/keys/k", {"X-Riak-Meta-": "v"}, b"x", 400, "invalid_header"),
    # 400 invalid_query
    ("alpha", "GET", "/buckets/b/keys?keys=true&max_results=0", {}, None, 400, "invalid_query"),
    ("alpha", "GET", "/buckets/b/keys?keys=true&max_results=11", {}, None, 400, "invalid_query"),
    ("alpha", "GET", "/buckets/b/keys?keys=true&max_results=x", {}, None, 400, "invalid_query"),
    ("alpha", "GET", "/buckets/b/keys?keys=true&continuation=%25%25", {}, None, 400,
     "invalid_query"),
    ("alpha", "GET", "/buckets/b/keys?keys=maybe", {}, None, 400, "invalid_query"),
    ("alpha", "GET", "/buckets?max_results=-1", {}, None, 400, "invalid_query"),
    ("alpha", "GET", "/buckets?continuation=!!", {}, None, 400, "invalid_query"),
    ("alpha", "GET", "/buckets?x=%FF", {}, None, 400, "invalid_query"),
    # 400 invalid_body (POST /sign)
    ("alpha", "POST", "/sign", {}, b"not json", 400, "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "b"}', 400, "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "b", "key": "k", "blob": "' + ID.encode() + b'"}',
     400, "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "b", "key": "k", "colour": 1}', 400,
     "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "b", "key": "k", "expires_in": 0}', 400,
     "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "b", "key": "k", "expires_in": -5}', 400,
     "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "b", "key": "k", "pad": "' + b"x" * 20000 + b'"}',
     400, "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "b", "key": "k", "expires_in": "60"}', 400,
     "invalid_body"),
    ("alpha", "POST", "/sign", {}, b"null", 400, "invalid_body"),
    ("alpha", "POST", "/sign", {}, b"[]", 400, "invalid_body"),
    ("alpha", "POST", "/sign", {}, b"", 400, "invalid_body"),
    ("alpha", "POST", "/sign", {}, b'{"blob": "sha256:nope"}', 400, "invalid_id"),
    ("alpha", "POST", "/sign", {}, b'{"bucket": "..", "key": "k"}', 400, "invalid_name"),
    # 400 app_required
    ("op", "GET", "/buckets", {}, None, 400, "app_required"),
    ("op", "PUT", "/buckets/b/keys/k", {}, b"x", 400, "app_required"),
    ("op", "POST", "/blobs", {}, b"x", 400, "app_required"),
    ("op", "POST", "/sign", {}, b'{"bucket": "b", "key": "k"}', 400, "app_required"),
    ("op", "GET", f"/blobs/{ID}", {}, None, 400, "app_required"),
    # 401 unauthorized
    ("anon", "GET", "/buckets", {}, None, 401, "unauthorized"),
    ("anon", "PUT", "/buckets/b/keys/k", {}, b"x", 401, "unauthorized"),
    ("bad", "GET", "/stats", {}, None, 401, "unauthorized"),
    ("anon", "GET", "/buckets", {"Authorization": "Token tokA"}, None, 401, "unauthorized"),
    ("anon", "GET", "/buckets", {"Authorization": "Basic !!!"}, None, 401, "unauthorized"),
    ("anon", "GET", "/buckets", {"Authorization": "Basic YWxwaGE6bm9wZQ=="}, None, 401,
     "unauthorized"),  # alpha:nope
    ("anon", "GET", "/buckets", {"Authorization": "Basic YmV0YTp0b2tB"}, None, 401,
     "unauthorized"),  # beta:tokA (alpha's token under beta's name)
    ("anon", "GET", "/buckets", {"Authorization": "Bearer"}, None, 401, "unauthorized"),
    # 404 not_found / no_such_resource / no_such_app
    ("alpha", "GET", "/buckets/b/keys/absent", {}, None, 404, "not_found"),
    ("alpha", "DELETE", "/buckets/b/keys/absent", {}, None, 404, "not_found"),
    ("alpha", "GET", f"/blobs/{ID}", {}, None, 404, "not_found"),
    ("alpha", "GET", "/nothing", {}, None, 404, "no_such_resource"),
    ("alpha", "GET", "/buckets/b/keys/a/b", {}, None, 404, "no_such_resource"),
    ("alpha", "GET", "/buckets/b", {}, None, 404, "no_such_resource"),
    ("alpha", "GET", "/riak/b/k", {}, None, 404, "no_such_resource"),
    ("op-ghost", "GET", "/buckets", {}, None, 404, "no_such_app"),
    # 405 method_not_allowed
    ("alpha", "DELETE", "/buckets", {}, None, 405, "method_not_allowed"),
    ("alpha", "PUT", "/buckets/b/keys", {}, b"x", 405, "method_not_allowed"),
    ("alpha", "PATCH", "/buckets/b/keys/k", {}, b"x", 405, "method_not_allowed"),
    ("alpha", "GET", "/blobs", {}, None, 405, "method_not_allowed"),
    ("alpha", "PUT", f"/blobs/{ID}", {}, b"x", 405, "method_not_allowed"),
    ("alpha", "GET", "/sign", {}, None, 405, "method_not_allowed"),
    ("alpha", "DELETE", "/stats", {}, None, 405, "method_not_allowed"),
]


@pytest.mark.parametrize("who,method,path,headers,body,status,code", TABLE,
                         ids=[f"{t[5]}-{t[6]}-{t[1]}-{t[2][:40]}" for t in TABLE])
def test_error_table(server: BlobServer, who: str, method: str, path: str,
                     headers: dict[str, str], body: bytes | None, status: int, code: str) -> None:
    r = _auth(server, who).request(method, path, body, headers)
    assert_error(r, status, code)
    if status == 401:
        assert (r.header("www-authenticate") or "").startswith("Bearer"), r
    # Nothing was stored by a refused write, and the server still answers.
    assert server.alpha.get("/buckets/b/keys/k").status == 404
    assert server.alpha.stats()["bytes_used"] == 0
    assert server.anon.get("/ping").status == 200


def test_errors_keep_the_connection_alive(blob_servers) -> None:
    """The bodyless rows of the table back to back on one keep-alive connection: an error
    reply never poisons the next request on the same connection."""
    server = blob_servers.start()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    prev = None
    for who, method, path, headers, body, status, code in TABLE:
        if body is not None:
            continue
        h = dict(_auth(server, who)._headers(headers))
        try:
            conn.request(method, path, headers=h)
            resp = conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as e:
            raise AssertionError(f"{method} {path}: connection closed after {prev}") from e
        data = resp.read()
        prev = (method, path, resp.status, resp.getheaders())
        assert not resp.will_close, prev
        assert resp.status == status, (method, path, resp.status, data)
        assert json.loads(data)["error"] == code, (method, path, data)
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"OK"
    conn.close()


def test_error_with_unread_body_announces_close(server: BlobServer) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("PUT", "/buckets/b/keys/%2E%2E", body=b"x" * 100000,
                 headers={"Authorization": "Bearer tokA"})
    resp = conn.getresponse()
    assert_error(Reply(resp.status, resp.getheaders(), resp.read()), 400, "invalid_name")
    if resp.will_close:
        return  # announced: the client opens a new connection
    time.sleep(0.2)
    conn.request("GET", "/ping")  # not announced: the connection must still work
    assert conn.getresponse().read() == b"OK"
    conn.close()


def test_non_utf8_metadata_is_invalid_header(server: BlobServer) -> None:
    raw = server.raw()
    raw.send(b"PUT /buckets/b/keys/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tokA\r\n"
             b"Content-Length: 3\r\nX-Riak-Meta-Bin: \xff\xfe\r\n\r\nabc")
    assert_error(raw.read_response(), 400, "invalid_header")
    raw.close()
    assert server.alpha.get("/buckets/b/keys/k").status == 404


HEAD_START = b"PUT /buckets/b/keys/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tokA\r\n"


@pytest.mark.parametrize("request_bytes,status", [
    (HEAD_START + b"Content-Length: abc\r\n\r\n", 400),
    (HEAD_START + b"Content-Length: 1\r\n"
     + b"".join(b"X-Riak-Meta-H%d: v\r\n" % i for i in range(120)) + b"\r\nx", 431),
    (b"GET /buckets/b/keys/" + b"k" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
], ids=["bad-content-length", "too-many-headers", "uri-too-long"])
def test_parser_level_errors_get_a_bare_status(server: BlobServer, request_bytes: bytes,
                                               status: int) -> None:
    """Bytes that are not a readable HTTP/1.1 request are refused by the HTTP layer itself
    with a bare status (documented in docs/protocols/blob.md); the server keeps serving."""
    raw = server.raw()
    raw.send(request_bytes)
    reply = raw.read_response()
    raw.close()
    assert reply.status == status, reply
    assert server.anon.get("/ping").status == 200
    assert server.alpha.get("/buckets/b/keys/k").status == 404


@pytest.mark.parametrize("size", [1000, 300 * KIB])
def test_cut_off_upload_is_incomplete_body_and_leaves_nothing(server: BlobServer,
                                                              size: int) -> None:
    raw = server.raw()
    raw.send(upload_headers("/buckets/b/keys/cut", "tokA", size))
    raw.send(b"x" * (size // 2))
    raw.shutdown_write()
    assert_error(raw.read_response(), 400, "incomplete_body")
    raw.close()
    assert_error(server.alpha.get("/buckets/b/keys/cut"), 404, "not_found")
    s = server.alpha.stats()
    assert (s["bytes_used"], s["bytes_reserved"]) == (0, 0), s
    assert list((server.data_dir / "tmp").iterdir()) == []
    # Chunked, cut off between chunks.
    raw = server.raw()
    raw.send(upload_headers("/blobs", "tokA", None, method="POST"))
    raw.send(b"%x\r\n%s\r\n" % (size // 2, b"y" * (size // 2)))
    raw.shutdown_write()
    assert_error(raw.read_response(), 400, "incomplete_body")
    raw.close()
    assert server.alpha.stats()["bytes_used"] == 0
    assert server.alpha.get("/buckets/b/keys?keys=true").json() == {"keys": []}


def _object_file(server: BlobServer, data: bytes) -> Path:
    hexid = sha256_hex(data)
    matches = [p for p in (server.data_dir / "objects").rglob(hexid) if p.is_file()]
    assert len(matches) == 1, (hexid, list((server.data_dir / "objects").rglob("*")))
    return matches[0]


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_corrupt_bytes_are_never_sent(server: BlobServer) -> None:
    """500 corrupt when the first piece fails its checksum; a short body (never wrong bytes)
    when a later chunk does. Checked by flipping bytes in the files on disk."""
    a = server.alpha
    chunk = 256 * KIB
    first = rand_bytes(3 * chunk, "corrupt-first")
    later = rand_bytes(3 * chunk, "corrupt-later")
    small = rand_bytes(1000, "corrupt-small")
    a.put_ok("/buckets/c/keys/first", first)
    a.put_ok("/buckets/c/keys/later", later)
    a.put_ok("/buckets/c/keys/small", small)
    bid = a.post_blob(first)
    # Content file: 24-byte header, then (crc32, chunk) pairs.
    _flip(_object_file(server, first), 24 + 4 + 100)
    _flip(_object_file(server, later), 24 + 2 * (4 + chunk) + 4 + 100)
    vols = sorted((server.data_dir / "volumes").iterdir())
    volume = vols[-1].read_bytes()
    at = volume.index(small[:64])
    _flip(vols[-1], at + 10)

    assert_error(a.get("/buckets/c/keys/first"), 500, "corrupt")
    assert_error(a.get(f"/blobs/{bid}"), 500, "corrupt")
    assert_error(a.get("/buckets/c/keys/small"), 500, "corrupt")
    # The intact chunk of `first` can still be read by range; the damaged one cannot.
    r = a.get("/buckets/c/keys/first", {"Range": f"bytes={chunk}-{2 * chunk - 1}"})
    assert r.status == 206 and r.body == first[chunk:2 * chunk], r.status

    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/buckets/c/keys/later", headers={"Authorization": "Bearer tokA"})
    resp = conn.getresponse()
    assert resp.status == 200
    try:
        got = resp.read()
    except http.client.IncompleteRead as e:
        got = e.partial
    conn.close()
    assert len(got) < len(later), "a corrupt chunk was sent"
    assert got == later[:len(got)], "wrong bytes were sent"
    assert len(got) <= 2 * chunk
    s = server.operator().get("/stats").json()
    assert s["corrupt_reads"] >= 1, s
    assert server.anon.get("/ping").status == 200


def test_internal_errors_do_not_leak_details(server: BlobServer) -> None:
    """Take away the store's tmp/ directory: a large upload fails with 500 internal, the
    message names no path, the server keeps serving, and works again once it is back."""
    a = server.alpha
    tmp = server.data_dir / "tmp"
    shutil.rmtree(tmp)
    try:
        r = a.put("/buckets/i/keys/big", rand_bytes(200 * KIB, "internal"))
        body = assert_error(r, 500, "internal")
        assert str(server.data_dir) not in body["message"] and "tmp" not in body["message"], body
        assert a.stats()["bytes_reserved"] == 0
        a.put_ok("/buckets/i/keys/small", b"small ones go to the volume")
    finally:
        tmp.mkdir()
    a.put_ok("/buckets/i/keys/big", rand_bytes(200 * KIB, "internal"))
    assert a.stats()["bytes_used"] == 200 * KIB + len(b"small ones go to the volume")


def test_operator_basic_auth_and_unknown_app(server: BlobServer) -> None:
    from base64 import b64encode

    basic = "Basic " + b64encode(f"_operator:{OPERATOR_TOKEN}".encode()).decode()
    r = server.anon.get("/stats", {"Authorization": basic})
    assert r.status == 200 and "apps" in r.json(), r
    r = server.anon.get("/buckets", {"Authorization": basic, "X-Berth-App": "nobody"})
    assert_error(r, 404, "no_such_app")


def _metric(server: BlobServer, name: str) -> int | None:
    conn = http.client.HTTPConnection(*server.admin, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    body = conn.getresponse().read().decode()
    conn.close()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def test_background_scrub_finds_rot(blob_servers) -> None:
    """The scrub (every second here) reads everything back: clean content counts no corruption;
    bytes flipped on disk in a small and a large object are found without any client read."""
    s = blob_servers.start(config={"scrub_interval": "1s", "scrub_rate": "1GiB"})
    a = s.alpha
    small, large = rand_bytes(3000, "scrub-small"), rand_bytes(600 * KIB, "scrub-large")
    a.put_ok("/buckets/s/keys/small", small)
    a.put_ok("/buckets/s/keys/large", large)
    a.put_ok("/buckets/s/keys/clean", rand_bytes(200 * KIB, "scrub-clean"))
    passes = _metric(s, "berth_blob_scrub_passes_total")
    assert passes is not None, "no berth_blob_scrub_passes_total in /metrics"
    wait_until("a scrub over the stored content",
               lambda: (_metric(s, "berth_blob_scrub_passes_total") or 0) >= passes + 2)
    assert _metric(s, "berth_blob_scrub_corrupt") == 0
    assert (_metric(s, "berth_blob_scrub_bytes_total") or 0) >= len(small) + len(large)
    _flip(_object_file(s, large), 24 + 4 + 256 * KIB + 4 + 7)  # second chunk
    vol = sorted((s.data_dir / "volumes").iterdir())[-1]
    _flip(vol, vol.read_bytes().index(small[:64]) + 1)
    wait_until("the scrub to count both corrupt contents",
               lambda: _metric(s, "berth_blob_scrub_corrupt") == 2, timeout=15)
    assert "corrupt" in s.process.stderr_tail(20000)
    assert_error(a.get("/buckets/s/keys/small"), 500, "corrupt")
    assert a.get("/buckets/s/keys/clean").status == 200


def test_scrub_catches_rot_that_keeps_the_crc(blob_servers) -> None:
    """Rot that keeps a chunk's CRC-32 valid (the CRC rewritten to match) is caught by the
    scrub's SHA-256 check; from then on reads of that content answer 500 corrupt
    (docs/ops/blob-server.md, Integrity), never the wrong bytes."""
    import zlib

    s = blob_servers.start(config={"scrub_interval": "1s", "scrub_rate": "1GiB"})
    a = s.alpha
    chunk = 256 * KIB
    large = rand_bytes(3 * chunk, "crc-valid-rot")
    a.put_ok("/buckets/s/keys/large", large)
    path = _object_file(s, large)
    at = 24 + (4 + chunk)  # the second chunk's CRC
    with open(path, "r+b") as f:
        f.seek(at + 4)
        data = bytearray(f.read(chunk))
        data[100] ^= 0xFF
        f.seek(at)
        f.write(zlib.crc32(bytes(data)).to_bytes(4, "little") + bytes(data))
    wait_until("the scrub to find the rot",
               lambda: _metric(s, "berth_blob_scrub_corrupt") == 1, timeout=15)
    # Quarantined: by key and by id alike, an error and none of the bytes.
    assert_error(a.get("/buckets/s/keys/large"), 500, "corrupt")
    assert_error(a.get("/blobs/sha256:" + sha256_hex(large)), 500, "corrupt")
    # Storing the same bytes again replaces the rotten copy and lifts the quarantine.
    a.put_ok("/buckets/s/keys/again", large)
    assert a.get("/buckets/s/keys/large").body == large
    wait_until("a clean scrub",
               lambda: _metric(s, "berth_blob_scrub_corrupt") == 0, timeout=15)
