"""Signed URLs (POST /sign): read one object or blob without a token, for GET and HEAD only,
until the expiry. Expired URLs are crafted with the server's own key file
(HMAC-SHA256 over "berth-blob-url-v1\\n{app}\\n{path}\\n{expires}")."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs, quote, urlsplit

from .conftest import BlobServer, assert_error, curl, rand_bytes, sha256_hex


def _craft(server: BlobServer, app: str, path: str, expires: int) -> str:
    msg = f"berth-blob-url-v1\n{app}\n{path}\n{expires}".encode()
    sig = hmac.new(server.signing_key(), msg, hashlib.sha256).hexdigest()
    return f"{path}?app={app}&expires={expires}&signature={sig}"


def test_signed_object_url_reads_without_a_token(server: BlobServer) -> None:
    a = server.alpha
    a.put_ok("/buckets/notes/keys/first", b"hello", {"Content-Type": "text/plain",
                                                     "X-Riak-Meta-Author": "ann"})
    before = int(time.time())
    r = a.sign({"bucket": "notes", "key": "first", "expires_in": 600})
    assert r.status == 200, r
    minted = r.json()
    assert set(minted) == {"url", "expires"}, minted
    assert before + 600 <= minted["expires"] <= int(time.time()) + 601, minted
    url = minted["url"]
    parts = urlsplit(url)
    assert parts.path == "/buckets/notes/keys/first", url
    q = parse_qs(parts.query)
    assert q["app"] == ["alpha"] and q["expires"] == [str(minted["expires"])], url
    assert len(q["signature"][0]) == 64, url

    c = curl(server.base + url)
    assert (c.status, c.body) == (200, b"hello"), c
    assert c.headers["content-type"] == "text/plain" and c.headers["x-riak-meta-author"] == "ann"
    c = curl("-I", server.base + url)
    assert c.status == 200 and c.headers["content-length"] == "5", c
    assert c.raw_headers.count("HTTP/1.1") == 1 and not c.body.endswith(b"hello"), c
    c = curl("-H", "Range: bytes=1-3", server.base + url)
    assert (c.status, c.body) == (206, b"ell"), c
    # A signed URL reads what the name points at when it is used.
    a.put_ok("/buckets/notes/keys/first", b"overwritten")
    assert curl(server.base + url).body == b"overwritten"
    # Default lifetime: one hour.
    r = a.sign({"bucket": "notes", "key": "first"}).json()
    assert abs(r["expires"] - (time.time() + 3600)) < 5, r
    # Once deleted: 404 like any missing object.
    a.delete("/buckets/notes/keys/first")
    c = curl(server.base + url)
    assert c.status == 404 and b'"not_found"' in c.body, c


def test_signed_blob_url(server: BlobServer) -> None:
    data = rand_bytes(70_000, "signed-blob")
    bid = server.alpha.post_blob(data)
    url = server.alpha.sign({"blob": bid, "expires_in": 60}).json()["url"]
    assert url.startswith(f"/blobs/{bid}?"), url
    c = curl(server.base + url)
    assert c.status == 200 and sha256_hex(c.body) == sha256_hex(data), c.status
    assert c.headers["cache-control"] == "private, max-age=31536000, immutable"
    c = curl("-I", server.base + url)
    assert c.status == 200 and c.headers["content-length"] == "70000", c


def test_signed_url_with_awkward_names(server: BlobServer) -> None:
    key = "photos/2024/a cat ü?#&=.jpg"
    path = f"/buckets/b%20x/keys/{quote(key, safe='')}"
    server.alpha.put_ok(path, b"meow")
    url = server.alpha.sign({"bucket": "b x", "key": key}).json()["url"]
    assert url.split("?")[0] == path, url
    assert curl(server.base + url).body == b"meow"
    # The same name spelled with other (valid) escapes is the same object, and still verifies.
    respelled = url.replace("/buckets/b%20x/", "/buckets/%62%20%78/")
    assert curl("--path-as-is", server.base + respelled).body == b"meow"


def test_signed_url_allows_only_get_and_head_of_its_path(server: BlobServer) -> None:
    a = server.alpha
    a.put_ok("/buckets/b/keys/k", b"original")
    a.put_ok("/buckets/b/keys/other", b"other")
    url = a.sign({"bucket": "b", "key": "k"}).json()["url"]
    query = url.split("?", 1)[1]
    anon = server.anon
    assert_error(anon.put(url, b"replaced"), 403, "forbidden")
    assert_error(anon.request("POST", url, b"replaced"), 403, "forbidden")
    assert_error(anon.delete(url), 403, "forbidden")
    assert a.get("/buckets/b/keys/k").body == b"original"
    c = curl("-X", "DELETE", server.base + url)
    assert c.status == 403 and b'"forbidden"' in c.body, c
    # The same signature on another path, another app, or a listing.
    for other in (f"/buckets/b/keys/other?{query}", f"/buckets/b/keys?keys=true&{query}",
                  f"/buckets?{query}", f"/stats?{query}", f"/sign?{query}",
                  f"/blobs/sha256:{sha256_hex(b'original')}?{query}"):
        r = anon.request("POST" if other.startswith("/sign") else "GET", other)
        assert_error(r, 403, "forbidden")
    assert_error(anon.get(url.replace("app=alpha", "app=beta")), 403, "forbidden")
    # A signed URL cannot mint others.
    assert_error(anon.request("POST", f"/sign?{query}", b'{"bucket":"b","key":"k"}'), 403,
                 "forbidden")


def test_tampered_signatures_are_forbidden(server: BlobServer) -> None:
    server.alpha.put_ok("/buckets/b/keys/k", b"v")
    minted = server.alpha.sign({"bucket": "b", "key": "k", "expires_in": 600}).json()
    url, expires = minted["url"], minted["expires"]
    sig = parse_qs(urlsplit(url).query)["signature"][0]
    flipped = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    for bad in (url.replace(sig, flipped), url.replace(sig, sig[:-2]), url.replace(sig, "zz" * 32),
                url.replace(sig, ""),
                url.replace(f"expires={expires}", f"expires={expires + 3600}"),
                url.replace("&expires=", "&x=")):
        r = server.anon.get(bad)
        assert_error(r, 403, "forbidden")
    assert server.anon.get(url).status == 200


def test_expired_signed_urls(server: BlobServer) -> None:
    server.alpha.put_ok("/buckets/b/keys/k", b"v")
    now = int(time.time())
    # The crafted signature is right: the same recipe with a future expiry is accepted.
    good = _craft(server, "alpha", "/buckets/b/keys/k", now + 120)
    assert server.anon.get(good).status == 200
    minted = server.alpha.sign({"bucket": "b", "key": "k", "expires_in": 120}).json()["url"]
    assert parse_qs(urlsplit(minted).query)["signature"] == \
        parse_qs(urlsplit(_craft(server, "alpha", "/buckets/b/keys/k",
                                 int(parse_qs(urlsplit(minted).query)["expires"][0]))).query)[
            "signature"]
    for expires in (now - 5, now - 86400, 0):
        r = server.anon.get(_craft(server, "alpha", "/buckets/b/keys/k", expires))
        assert_error(r, 403, "expired")
        h = server.anon.head(_craft(server, "alpha", "/buckets/b/keys/k", expires))
        assert h.status == 403, h
    c = curl(server.base + _craft(server, "alpha", "/buckets/b/keys/k", now - 1))
    assert c.status == 403 and b'"expired"' in c.body, c
    # Signed for an app that does not exist: forbidden, even with a valid HMAC.
    assert_error(server.anon.get(_craft(server, "ghost", "/buckets/b/keys/k", now + 60)), 403,
                 "forbidden")


def test_expires_in_is_capped(server: BlobServer, blob_servers) -> None:
    week = 7 * 24 * 3600
    ok = server.alpha.sign({"bucket": "b", "key": "k", "expires_in": week})
    assert ok.status == 200, ok
    assert_error(server.alpha.sign({"bucket": "b", "key": "k", "expires_in": week + 1}), 400,
                 "invalid_body")
    short = blob_servers.start(config={"max_signed_url_ttl": "1h"})
    assert short.alpha.sign({"bucket": "b", "key": "k", "expires_in": 3600}).status == 200
    assert_error(short.alpha.sign({"bucket": "b", "key": "k", "expires_in": 3601}), 400,
                 "invalid_body")
    assert_error(short.alpha.sign({"blob": "sha256:" + "0" * 64, "expires_in": 99999}), 400,
                 "invalid_body")
