"""Every endpoint of docs/protocols/blob.md, through http.client and curl: named objects with
their metadata and conditions, ranges, large, empty and chunked bodies, listings and blobs."""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import (
    KIB,
    MIB,
    BlobServer,
    assert_error,
    curl,
    quoted_etag,
    rand_bytes,
    sha256_hex,
)

# The default chunk size of large objects (256 KiB); objects over 64 KiB get their own file.
CHUNK = 256 * KIB


def test_ping_and_resource_map_need_no_credentials(server: BlobServer) -> None:
    r = server.anon.get("/ping")
    assert (r.status, r.body) == (200, b"OK"), r
    r = server.anon.head("/ping")
    assert r.status == 200 and r.body == b"", r
    r = server.anon.get("/")
    assert r.status == 200, r
    assert r.header("content-type") == "application/json", r
    res = r.json()
    assert res["riak_kv_wm_buckets"] == "/buckets", res
    assert res["riak_kv_wm_ping"] == "/ping", res
    assert res["riak_kv_wm_stats"] == "/stats", res
    # Everything else needs a token.
    assert_error(server.anon.get("/stats"), 401, "unauthorized")


def test_stats_app_view_counts_distinct_content(server: BlobServer) -> None:
    a = server.alpha
    s = a.stats()
    assert s["app"] == "alpha", s
    assert (s["bytes_used"], s["bytes_reserved"]) == (0, 0), s
    assert s["quota_bytes"] == 256 * MIB and s["bytes_free"] == 256 * MIB, s
    assert s["max_object_bytes"] == 64 * MIB, s
    assert s["riak_kv_version"].startswith("berth-blob-server "), s
    body = rand_bytes(5000, "stats")
    a.put_ok("/buckets/b/keys/one", body)
    a.put_ok("/buckets/b/keys/two", body)  # same bytes: charged once
    a.put_ok("/buckets/other/keys/three", body)
    s = a.stats()
    assert (s["bytes_used"], s["bytes_free"]) == (5000, 256 * MIB - 5000), s
    a.put_ok("/buckets/b/keys/two", b"12345")
    assert a.stats()["bytes_used"] == 5005
    # Another app's view is its own.
    assert server.beta.stats()["bytes_used"] == 0


def test_stats_operator_view_lists_every_app(server: BlobServer) -> None:
    server.alpha.put_ok("/buckets/b/keys/k", b"x" * 100)
    r = server.operator().get("/stats")
    assert r.status == 200, r
    s = r.json()
    apps = {a["app"]: a for a in s["apps"]}
    assert set(apps) == {"alpha", "beta"}, s
    assert apps["alpha"]["bytes_used"] == 100 and apps["beta"]["bytes_used"] == 0, s
    assert s["riak_kv_version"].startswith("berth-blob-server"), s
    for counter in ("requests", "bytes_in", "bytes_out", "responses_2xx", "responses_4xx"):
        assert isinstance(s[counter], int), (counter, s)
    assert s["bytes_in"] >= 100 and s["responses_2xx"] >= 1, s
    # With X-Berth-App, the operator sees that app's own view.
    s = server.operator("beta").stats()
    assert s["app"] == "beta" and s["bytes_used"] == 0, s


def test_put_get_head_delete_round_trip_with_metadata(server: BlobServer) -> None:
    a = server.alpha
    body = b"hello, berth"
    before = time.time()
    r = a.put("/buckets/notes/keys/first", body, {
        "Content-Type": "text/plain; charset=utf-8",
        "X-Riak-Meta-Author": "ann",
        "X-RIAK-META-Mood": "Cheerful Mood",
    })
    assert r.status == 204 and r.body == b"", r
    assert r.header("etag") == quoted_etag(body), r
    put_lm = r.header("last-modified")
    assert put_lm is not None, r
    lm = email.utils.parsedate_to_datetime(put_lm).timestamp()
    assert before - 2 <= lm <= time.time() + 1, (before, put_lm)

    r = a.get("/buckets/notes/keys/first")
    assert r.status == 200 and r.body == body, r
    assert r.header("content-type") == "text/plain; charset=utf-8", r
    assert r.header("content-length") == str(len(body)), r
    assert r.header("etag") == quoted_etag(body), r
    assert r.header("last-modified") == put_lm, r
    assert r.header("accept-ranges") == "bytes", r
    assert r.header("x-riak-meta-author") == "ann", r
    assert r.header("x-riak-meta-mood") == "Cheerful Mood", r
    meta_names = sorted(k.lower() for k, _ in r.headers if k.lower().startswith("x-riak-meta-"))
    assert meta_names == ["x-riak-meta-author", "x-riak-meta-mood"], r

    h = a.head("/buckets/notes/keys/first")
    assert h.status == 200 and h.body == b"", h
    for name in ("content-type", "content-length", "etag", "last-modified", "accept-ranges",
                 "x-riak-meta-author"):
        assert h.header(name) == r.header(name), (name, h, r)

    # POST with a key is the same as PUT; it replaces bytes, type and metadata.
    r = a.post("/buckets/notes/keys/first", b"v2")
    assert r.status == 204 and r.header("etag") == quoted_etag(b"v2"), r
    r = a.get("/buckets/notes/keys/first")
    assert (r.status, r.body) == (200, b"v2"), r
    assert r.header("content-type") == "application/octet-stream", r
    assert r.header("x-riak-meta-author") is None, r

    r = a.delete("/buckets/notes/keys/first")
    assert r.status == 204, r
    assert_error(a.get("/buckets/notes/keys/first"), 404, "not_found")
    assert a.head("/buckets/notes/keys/first").status == 404
    assert_error(a.delete("/buckets/notes/keys/first"), 404, "not_found")
    assert a.stats()["bytes_used"] == 0


def test_riak_quorum_and_vclock_are_ignored(server: BlobServer) -> None:
    a = server.alpha
    r = a.put("/buckets/b/keys/k?w=3&dw=2&returnbody=false", b"data",
              {"X-Riak-Vclock": "a85hYGBgzGDKBVIcypz/fgaUHjmdwZTImMfKkD3z10m+LAA="})
    assert r.status == 204, r
    r = a.get("/buckets/b/keys/k?r=2")
    assert (r.status, r.body) == (200, b"data"), r


def test_server_assigned_key(server: BlobServer) -> None:
    a = server.alpha
    body = rand_bytes(3000, "auto")
    r = a.post("/buckets/auto/keys", body, {"Content-Type": "image/png", "X-Riak-Meta-K": "v"})
    assert r.status == 201, r
    assert r.json() == {"key": sha256_hex(body), "size": 3000}, r
    loc = r.header("location")
    assert loc == f"/buckets/auto/keys/{sha256_hex(body)}", r
    g = a.get(loc)
    assert g.status == 200 and g.body == body, g
    assert g.header("content-type") == "image/png" and g.header("x-riak-meta-k") == "v", g
    # The Location of a bucket that needs escaping is escaped.
    r3 = a.post("/buckets/a%20b%2Fc/keys", b"escaped")
    assert r3.status == 201, r3
    assert r3.header("location") == f"/buckets/a%20b%2Fc/keys/{sha256_hex(b'escaped')}", r3
    assert a.get(r3.header("location") or "").body == b"escaped"
    a.delete(r3.header("location") or "")
    # The same bytes again: the same key, nothing more charged.
    r2 = a.post("/buckets/auto/keys", body)
    assert r2.status == 201 and r2.json()["key"] == sha256_hex(body), r2
    assert a.stats()["bytes_used"] == 3000


def test_conditional_writes(server: BlobServer) -> None:
    a = server.alpha
    path = "/buckets/cond/keys/k"
    assert_error(a.put(path, b"v0", {"If-Match": "*"}), 412, "precondition_failed")
    assert a.put(path, b"v1", {"If-None-Match": "*"}).status == 204
    assert_error(a.put(path, b"v1b", {"If-None-Match": "*"}), 412, "precondition_failed")
    assert a.get(path).body == b"v1"
    # Update-only.
    assert a.put(path, b"v2", {"If-Match": "*"}).status == 204
    assert_error(a.put(path, b"v3", {"If-Match": quoted_etag(b"v1")}), 412, "precondition_failed")
    r = a.put(path, b"v3", {"If-Match": quoted_etag(b"v2")})
    assert r.status == 204 and r.header("etag") == quoted_etag(b"v3"), r
    # A list of tags matches any of them; weak tags compare by value.
    r = a.put(path, b"v4", {"If-Match": f'"{"0" * 64}", W/{quoted_etag(b"v3")}'})
    assert r.status == 204, r
    # If-None-Match with the current tag fails; with another tag it goes through.
    assert_error(a.put(path, b"v5", {"If-None-Match": quoted_etag(b"v4")}), 412,
                 "precondition_failed")
    assert a.put(path, b"v5", {"If-None-Match": quoted_etag(b"v1")}).status == 204
    assert a.get(path).body == b"v5"
    # Conditional delete.
    assert_error(a.delete(path, {"If-Match": quoted_etag(b"v4")}), 412, "precondition_failed")
    assert a.get(path).body == b"v5"
    assert a.delete(path, {"If-Match": quoted_etag(b"v5")}).status == 204
    assert_error(a.delete(path, {"If-Match": "*"}), 412, "precondition_failed")
    assert a.stats()["bytes_used"] == 0


def test_racing_create_only_writers_exactly_one_wins(server: BlobServer) -> None:
    a = server.alpha
    n = 12
    results: list[tuple[int, bytes]] = [(0, b"")] * n
    barrier = threading.Barrier(n)

    def writer(i: int) -> None:
        body = f"writer {i} ".encode() * 50
        barrier.wait()
        r = a.put("/buckets/race/keys/once", body, {"If-None-Match": "*"})
        results[i] = (r.status, body)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(s for s, _ in results)
    assert statuses == [204] + [412] * (n - 1), statuses
    winner = next(b for s, b in results if s == 204)
    r = a.get("/buckets/race/keys/once")
    assert r.body == winner, r
    assert a.stats()["bytes_used"] == len(winner)


def test_racing_compare_and_swap_updates_exactly_one_wins(server: BlobServer) -> None:
    """Writers that all hold the same ETag and update with If-Match: one wins per round."""
    a = server.alpha
    path = "/buckets/race/keys/cas"
    current = b"round 0"
    a.put_ok(path, current)
    n = 8
    for round_no in range(1, 6):
        results: list[tuple[int, bytes]] = [(0, b"")] * n
        barrier = threading.Barrier(n)
        tag = quoted_etag(current)

        def writer(i: int, tag: str = tag, round_no: int = round_no,
                    results: list[tuple[int, bytes]] = results,
                    barrier: threading.Barrier = barrier) -> None:
            body = f"round {round_no} by {i}".encode() * 40
            barrier.wait()
            results[i] = (a.put(path, body, {"If-Match": tag}).status, body)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(st for st, _ in results)
        assert statuses == [204] + [412] * (n - 1), (round_no, statuses)
        current = next(b for st, b in results if st == 204)
        assert a.get(path).body == current
    assert a.stats()["bytes_used"] == len(current)


def test_conditional_reads(server: BlobServer) -> None:
    a = server.alpha
    path = "/buckets/cond/keys/read"
    put = a.put_ok(path, b"content")
    etag, lm = put.header("etag"), put.header("last-modified")
    r = a.get(path, {"If-None-Match": etag})
    assert r.status == 304 and r.body == b"" and r.header("etag") == etag, r
    assert a.get(path, {"If-None-Match": "*"}).status == 304
    r = a.get(path, {"If-None-Match": quoted_etag(b"other")})
    assert r.status == 200 and r.body == b"content", r
    r = a.get(path, {"If-Modified-Since": lm})
    assert r.status == 304, r
    day_before = email.utils.formatdate(time.time() - 86400, usegmt=True)
    day_after = email.utils.formatdate(time.time() + 86400, usegmt=True)
    assert a.get(path, {"If-Modified-Since": day_before}).status == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    r = a.get(path, {"If-None-Match": quoted_etag(b"other"), "If-Modified-Since": lm})
    assert r.status == 200, r
    assert_error(a.get(path, {"If-Unmodified-Since": day_before}), 412, "precondition_failed")
    assert a.get(path, {"If-Unmodified-Since": day_after}).status == 200
    assert a.get(path, {"If-Unmodified-Since": lm}).status == 200
    assert_error(a.get(path, {"If-Match": quoted_etag(b"other")}), 412, "precondition_failed")
    assert a.get(path, {"If-Match": etag}).status == 200
    assert a.head(path, {"If-None-Match": etag}).status == 304


def test_range_reads(server: BlobServer) -> None:
    a = server.alpha
    small = bytes(range(256)) * 4  # 1024 bytes, a volume record
    big = rand_bytes(3 * CHUNK + 777, "range")  # its own chunked file
    a.put_ok("/buckets/r/keys/small", small)
    a.put_ok("/buckets/r/keys/big", big)
    for key, data in (("small", small), ("big", big)):
        path = f"/buckets/r/keys/{key}"
        size = len(data)
        cases = [
            ("bytes=1-3", 1, 4),
            ("bytes=0-0", 0, 1),
            (f"bytes={size - 10}-", size - 10, size),
            ("bytes=-5", size - 5, size),
            (f"bytes=-{size + 100}", 0, size),
            (f"bytes={size - 3}-{size + 1000}", size - 3, size),
        ]
        if key == "big":  # across chunk boundaries
            cases += [(f"bytes={CHUNK - 5}-{CHUNK + 4}", CHUNK - 5, CHUNK + 5),
                      (f"bytes={CHUNK}-{3 * CHUNK}", CHUNK, 3 * CHUNK + 1)]
        for spec, start, end in cases:
            r = a.get(path, {"Range": spec})
            assert r.status == 206, (spec, r)
            assert r.body == data[start:end], (key, spec, len(r.body))
            assert r.header("content-range") == f"bytes {start}-{end - 1}/{size}", (spec, r)
            assert r.header("content-length") == str(end - start), (spec, r)
        for spec in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
            r = a.get(path, {"Range": spec})
            assert_error(r, 416, "range_not_satisfiable")
            assert r.header("content-range") == f"bytes */{size}", (spec, r)
        # Several ranges, another unit or a malformed one: the whole object.
        for spec in ("bytes=0-1,5-6", "items=0-1", "bytes=5-2"):
            r = a.get(path, {"Range": spec})
            assert r.status == 200 and r.body == data, (spec, r.status)
        h = a.head(path, {"Range": "bytes=2-9"})
        assert h.status == 206 and h.header("content-length") == "8" and h.body == b"", h


def test_large_objects_and_blobs_keep_every_byte(server: BlobServer) -> None:
    a = server.alpha
    data = rand_bytes(6 * MIB + 12345, "large")
    r = a.put("/buckets/big/keys/six", data)
    assert r.status == 204 and r.header("etag") == quoted_etag(data), r
    r = a.get("/buckets/big/keys/six")
    assert r.status == 200 and len(r.body) == len(data), (r.status, len(r.body))
    assert sha256_hex(r.body) == sha256_hex(data)
    blob = rand_bytes(5 * MIB + 1, "largeblob")
    bid = a.post_blob(blob)
    assert bid == "sha256:" + sha256_hex(blob)
    r = a.get(f"/blobs/{bid}")
    assert r.status == 200 and sha256_hex(r.body) == sha256_hex(blob), r.status
    assert a.stats()["bytes_used"] == len(data) + len(blob)
    # curl reads them the same way.
    c = curl("-H", "Authorization: Bearer tokA", f"{server.base}/buckets/big/keys/six")
    assert c.status == 200 and hashlib.sha256(c.body).hexdigest() == sha256_hex(data), c.status


def test_zero_byte_objects_and_blobs(server: BlobServer) -> None:
    a = server.alpha
    r = a.put("/buckets/z/keys/empty", b"")
    assert r.status == 204 and r.header("etag") == quoted_etag(b""), r
    r = a.get("/buckets/z/keys/empty")
    assert (r.status, r.body, r.header("content-length")) == (200, b"", "0"), r
    assert a.head("/buckets/z/keys/empty").header("content-length") == "0"
    r = a.get("/buckets/z/keys/empty", {"Range": "bytes=0-0"})
    assert_error(r, 416, "range_not_satisfiable")
    assert r.header("content-range") == "bytes */0", r
    r = a.post("/blobs", b"")
    assert r.status == 201 and r.json() == {"id": "sha256:" + sha256_hex(b""), "size": 0}, r
    r = a.get("/blobs/sha256:" + sha256_hex(b""))
    assert (r.status, r.body) == (200, b""), r
    # Chunked with no data at all is an empty object too.
    r = a.put("/buckets/z/keys/chunked-empty", iter([]))
    assert r.status == 204, r
    assert a.get("/buckets/z/keys/chunked-empty").body == b""
    assert a.stats()["bytes_used"] == 0
    assert a.get("/buckets/z/keys?keys=true").json()["keys"] == ["chunked-empty", "empty"]


def test_chunked_uploads(server: BlobServer) -> None:
    a = server.alpha
    # Irregular pieces, small and large, so pieces straddle every internal boundary.
    pieces = [rand_bytes(n, f"piece{i}") for i, n in
              enumerate([1, 100, 65535, 2, 70000, 300000, 17, 1 << 20, 5])]
    data = b"".join(pieces)
    r = a.put("/buckets/ch/keys/big", iter(pieces))
    assert r.status == 204 and r.header("etag") == quoted_etag(data), r
    assert sha256_hex(a.get("/buckets/ch/keys/big").body) == sha256_hex(data)
    small = [b"ab", b"cd", b"e"]
    assert a.put("/buckets/ch/keys/small", iter(small)).status == 204
    assert a.get("/buckets/ch/keys/small").body == b"abcde"
    r = a.post("/blobs", iter(pieces))
    assert r.status == 201, r
    assert r.json() == {"id": "sha256:" + sha256_hex(data), "size": len(data)}, r
    r = a.post("/buckets/ch/keys", iter(small))
    assert r.status == 201 and r.json()["key"] == sha256_hex(b"abcde"), r
    assert a.stats()["bytes_used"] == len(data) + 5


def test_expect_100_continue_with_curl(server: BlobServer, tmp_path: Path) -> None:
    data = rand_bytes(3 * MIB, "expect")
    f = tmp_path / "upload.bin"
    f.write_bytes(data)
    c = curl("-v", "-X", "PUT", "-H", "Authorization: Bearer tokA", "-H", "Expect: 100-continue",
             "--expect100-timeout", "30", "--data-binary", f"@{f}",
             f"{server.base}/buckets/exp/keys/k")
    assert c.status == 204, (c.status, c.stderr[-2000:])
    assert "HTTP/1.1 100 Continue" in c.stderr, c.stderr[-2000:]
    assert c.headers["etag"] == quoted_etag(data), c.headers
    assert sha256_hex(server.alpha.get("/buckets/exp/keys/k").body) == sha256_hex(data)
    # Keep-alive: several requests on one curl connection.
    c = curl("-v", "-H", "Authorization: Bearer tokA", f"{server.base}/ping",
             f"{server.base}/buckets/exp/keys?keys=true")
    assert c.status == 200 and "Re-using existing connection" in c.stderr, c.stderr[-2000:]


def _pages(server: BlobServer, path: str, field: str, max_results: int) -> list[list[str]]:
    pages = []
    token = None
    for _ in range(1000):
        q = f"{path}?max_results={max_results}" + (f"&continuation={token}" if token else "")
        if field == "keys":
            q += "&keys=true"
        r = server.alpha.get(q)
        assert r.status == 200, r
        v = r.json()
        assert set(v) <= {field, "continuation"}, v
        pages.append(v[field])
        token = v.get("continuation")
        if token is None:
            return pages
        assert len(v[field]) == max_results, v
    raise AssertionError("listing never ended")


def test_listing_keys_and_buckets_pages_through_everything(server: BlobServer) -> None:
    a = server.alpha
    keys = [f"k{i:03d}" for i in range(23)] + ["a b", "Z", "photos/2024/cat.jpg", "ü", "é"]
    for k in keys:
        a.put_ok(f"/buckets/list/keys/{quote(k, safe='')}", k.encode())
    want = sorted(keys, key=lambda k: k.encode())
    for page_size in (1, 4, 10):
        pages = _pages(server, "/buckets/list/keys", "keys", page_size)
        flat = [k for p in pages for k in p]
        assert flat == want, (page_size, pages)
    # Default page: the configured max_list_page (10).
    r = a.get("/buckets/list/keys?keys=true")
    assert r.json()["keys"] == want[:10] and "continuation" in r.json(), r
    # Buckets: those holding at least one key, shorter names first.
    buckets = ["list", "b", "bb", "a", "zzz", "aaaa", "m2", "m10", "bücket", "x" * 30, "c", "d"]
    for b in buckets[1:]:
        a.put_ok(f"/buckets/{quote(b, safe='')}/keys/k", b"1")
    want_b = sorted(buckets, key=lambda b: (len(b.encode()), b.encode()))
    for page_size in (1, 5, 10):
        flat = [b for p in _pages(server, "/buckets", "buckets", page_size) for b in p]
        assert flat == want_b, (page_size, flat)
    full = a.get("/buckets?buckets=true&max_results=10").json()
    assert full["buckets"] == want_b[:10], full
    # A bucket whose last key went away is no longer listed.
    a.delete("/buckets/zzz/keys/k")
    flat = [b for p in _pages(server, "/buckets", "buckets", 10) for b in p]
    assert "zzz" not in flat and len(flat) == len(buckets) - 1, flat
    assert a.get("/buckets/empty/keys?keys=true").json() == {"keys": []}


def test_keys_stream(server: BlobServer) -> None:
    a = server.alpha
    keys = sorted(f"s{i:02d}" for i in range(34))
    for k in keys:
        a.put_ok(f"/buckets/stream/keys/{k}", b"v")
    r = a.get("/buckets/stream/keys?keys=stream")
    assert r.status == 200, r
    assert r.header("transfer-encoding") == "chunked", r
    assert (r.header("content-type") or "").startswith("application/json"), r
    dec = json.JSONDecoder()
    text = r.body.decode()
    objs, pos = [], 0
    while pos < len(text):
        obj, pos = dec.raw_decode(text, pos)
        objs.append(obj)
    assert len(objs) >= 4, objs  # 34 keys in pages of 10
    assert all(set(o) == {"keys"} and len(o["keys"]) <= 10 for o in objs), objs
    assert [k for o in objs for k in o["keys"]] == keys
    # curl sees the same.
    c = curl("-H", "Authorization: Bearer tokA", f"{server.base}/buckets/stream/keys?keys=stream")
    assert c.status == 200 and c.body == r.body


def test_blobs_api(server: BlobServer) -> None:
    a = server.alpha
    data = rand_bytes(10000, "blob")
    r = a.post("/blobs", data)
    assert r.status == 201, r
    bid = "sha256:" + sha256_hex(data)
    assert r.json() == {"id": bid, "size": 10000}, r
    assert r.header("location") == f"/blobs/{bid}", r
    assert r.header("etag") == quoted_etag(data), r
    # PUT /blobs is accepted as POST.
    assert a.put("/blobs", data).json()["id"] == bid
    r = a.get(f"/blobs/{bid}")
    assert r.status == 200 and r.body == data, r
    assert r.header("etag") == quoted_etag(data), r
    assert r.header("cache-control") == "private, max-age=31536000, immutable", r
    assert r.header("content-type") == "application/octet-stream", r
    assert r.header("accept-ranges") == "bytes", r
    assert a.get(f"/blobs/{bid.replace(':', '%3A')}").body == data
    h = a.head(f"/blobs/{bid}")
    assert h.status == 200 and h.body == b"" and h.header("content-length") == "10000", h
    r = a.get(f"/blobs/{bid}", {"If-None-Match": quoted_etag(data)})
    assert r.status == 304 and r.body == b"", r
    r = a.get(f"/blobs/{bid}", {"Range": "bytes=100-199"})
    assert r.status == 206 and r.body == data[100:200], r
    assert r.header("content-range") == "bytes 100-199/10000", r
    assert_error(a.get(f"/blobs/{bid}", {"Range": "bytes=10000-"}), 416, "range_not_satisfiable")
    # Storing again costs nothing.
    assert a.stats()["bytes_used"] == 10000
    # A named object holding the same bytes keeps them after the blob is dropped.
    a.put_ok("/buckets/b/keys/same", data)
    assert a.stats()["bytes_used"] == 10000
    assert a.delete(f"/blobs/{bid}").status == 204
    assert a.get("/buckets/b/keys/same").body == data
    assert a.stats()["bytes_used"] == 10000
    a.delete("/buckets/b/keys/same")
    assert a.stats()["bytes_used"] == 0
    # With no hold left at all, the id is gone.
    assert_error(a.get(f"/blobs/{bid}"), 404, "not_found")
    assert a.head(f"/blobs/{bid}").status == 404
    assert_error(a.delete(f"/blobs/{bid}"), 404, "not_found")


def test_blob_ids_read_content_the_app_holds_by_id_or_by_key(server: BlobServer) -> None:
    """An object's ETag is its content id: the app may read its own bytes by that id too.
    DELETE /blobs/{id} drops only the direct hold; another app never sees the id."""
    a, b = server.alpha, server.beta
    data = rand_bytes(2000, "named-only")
    bid = "sha256:" + sha256_hex(data)
    # Stored only as a named object: readable by id for this app, 404 for any other.
    a.put_ok("/buckets/b/keys/named", data)
    assert a.get(f"/blobs/{bid}").body == data
    assert_error(b.get(f"/blobs/{bid}"), 404, "not_found")
    # There is no direct hold to delete.
    assert_error(a.delete(f"/blobs/{bid}"), 404, "not_found")
    # Stored as a blob too, then the blob dropped: the key keeps the bytes readable by id.
    assert a.post_blob(data) == bid
    assert a.delete(f"/blobs/{bid}").status == 204
    assert a.get("/buckets/b/keys/named").body == data
    assert a.get(f"/blobs/{bid}").body == data
    assert_error(a.delete(f"/blobs/{bid}"), 404, "not_found")
    a.delete("/buckets/b/keys/named")
    assert_error(a.get(f"/blobs/{bid}"), 404, "not_found")


def test_dev_mode_without_tenants(blob_servers) -> None:
    s = blob_servers.start(tenants=None)
    r = s.anon.put("/buckets/b/keys/k", b"dev")
    assert r.status == 204, r
    assert s.anon.get("/buckets/b/keys/k").body == b"dev"
    st = s.anon.stats()
    assert st["app"] == "_dev" and st["bytes_used"] == 3, st


def test_pipelined_requests_and_http_1_0(server: BlobServer) -> None:
    a = server.alpha
    a.put_ok("/buckets/pipe/keys/one", b"first")
    a.put_ok("/buckets/pipe/keys/two", b"second!")
    raw = server.raw()
    auth = b"Authorization: Bearer tokA\r\n"
    raw.send(b"GET /buckets/pipe/keys/one HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
             b"PUT /buckets/pipe/keys/three HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Content-Length: 5\r\n\r\nthree"
             b"GET /buckets/pipe/keys/two HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
             b"GET /buckets/pipe/keys/three HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
    replies = [raw.read_response() for _ in range(4)]
    raw.close()
    assert [(r.status, r.body) for r in replies] == [
        (200, b"first"), (204, b""), (200, b"second!"), (200, b"three")], replies
    c = curl("--http1.0", "-H", "Authorization: Bearer tokA",
             f"{server.base}/buckets/pipe/keys/two")
    assert (c.status, c.body) == (200, b"second!"), c
    c = curl("--http1.0", "-X", "PUT", "-H", "Authorization: Bearer tokA", "--data-binary",
             "via 1.0", f"{server.base}/buckets/pipe/keys/four")
    assert c.status == 204, c
    assert a.get("/buckets/pipe/keys/four").body == b"via 1.0"
