"""Isolation between apps: nothing one app can observe depends on what another stores, and
every way of naming an app (Bearer, Basic via curl -u, operator + X-Berth-App) reaches only it."""

from __future__ import annotations

from .conftest import (
    OPERATOR_TOKEN,
    BlobServer,
    Reply,
    assert_error,
    curl,
    rand_bytes,
    sha256_hex,
)


def _same(a: Reply, b: Reply) -> None:
    """Two replies an observer cannot tell apart (the Date header aside)."""
    strip = [(k.lower(), v) for k, v in a.headers if k.lower() != "date"]
    other = [(k.lower(), v) for k, v in b.headers if k.lower() != "date"]
    assert (a.status, strip, a.body) == (b.status, other, b.body), (a, b)


def test_another_apps_blob_looks_exactly_like_a_missing_one(server: BlobServer) -> None:
    data = rand_bytes(100_000, "alpha-secret")
    bid = server.alpha.post_blob(data)
    never = "sha256:" + sha256_hex(b"never stored by anyone")
    b = server.beta
    for method, headers in (("GET", {}), ("HEAD", {}), ("DELETE", {}),
                            ("GET", {"Range": "bytes=0-9"}),
                            ("GET", {"If-None-Match": f'"{bid[7:]}"'}),
                            ("GET", {"If-None-Match": "*"})):
        theirs = b.request(method, f"/blobs/{bid}", headers=headers)
        missing = b.request(method, f"/blobs/{never}", headers=headers)
        assert theirs.status == 404, theirs
        if method != "HEAD":
            assert_error(theirs, 404, "not_found")
        _same(theirs, missing)
    # A signed URL for it minted by beta reads nothing either.
    url = b.sign({"blob": bid}).json()["url"]
    assert server.anon.get(url).status == 404
    assert server.alpha.get(f"/blobs/{bid}").body == data


def test_shared_content_is_charged_to_each_app(server: BlobServer) -> None:
    a, b = server.alpha, server.beta
    data = rand_bytes(300_000, "shared")
    bid = a.post_blob(data)
    a_before = a.stats()
    assert a_before["bytes_used"] == 300_000
    assert b.stats()["bytes_used"] == 0
    assert b.post_blob(data) == bid
    assert b.stats()["bytes_used"] == 300_000
    assert a.stats() == a_before
    b.put_ok("/buckets/x/keys/k", data)  # beta holds it twice: charged once
    assert b.stats()["bytes_used"] == 300_000
    # alpha's delete leaves beta's copy whole, and beta's usage alone.
    assert a.delete(f"/blobs/{bid}").status == 204
    assert a.stats()["bytes_used"] == 0
    assert_error(a.get(f"/blobs/{bid}"), 404, "not_found")
    r = b.get(f"/blobs/{bid}")
    assert r.status == 200 and r.body == data, r.status
    assert b.get("/buckets/x/keys/k").body == data
    assert b.stats()["bytes_used"] == 300_000
    # And the other way round.
    assert a.post_blob(data) == bid
    assert b.delete(f"/blobs/{bid}").status == 204
    b.delete("/buckets/x/keys/k")
    assert b.stats()["bytes_used"] == 0
    assert a.get(f"/blobs/{bid}").body == data


def test_names_and_listings_are_per_app(server: BlobServer) -> None:
    a, b = server.alpha, server.beta
    a.put_ok("/buckets/secret/keys/plan", b"alpha's plan")
    a.put_ok("/buckets/shared-name/keys/k", b"alpha")
    b.put_ok("/buckets/shared-name/keys/k", b"beta")
    assert a.get("/buckets/shared-name/keys/k").body == b"alpha"
    assert b.get("/buckets/shared-name/keys/k").body == b"beta"
    assert b.get("/buckets").json() == {"buckets": ["shared-name"]}
    assert a.get("/buckets").json()["buckets"] == ["secret", "shared-name"]
    assert b.get("/buckets/secret/keys?keys=true").json() == {"keys": []}
    assert b.get("/buckets/secret/keys?keys=stream").body == b'{"keys":[]}'
    _same(b.get("/buckets/secret/keys/plan"), b.get("/buckets/secret/keys/nothing"))
    _same(b.delete("/buckets/secret/keys/plan"), b.delete("/buckets/secret/keys/nothing"))
    # Conditions see only the app's own object.
    assert b.put("/buckets/secret/keys/plan", b"beta's", {"If-None-Match": "*"}).status == 204
    assert a.get("/buckets/secret/keys/plan").body == b"alpha's plan"
    b.delete("/buckets/secret/keys/plan")
    assert a.get("/buckets/secret/keys/plan").body == b"alpha's plan"


def test_basic_auth_with_curl(server: BlobServer) -> None:
    url = f"{server.base}/buckets/basic/keys/k"
    c = curl("-u", "alpha:tokA", "-X", "PUT", "--data-binary", "via basic", url)
    assert c.status == 204, c
    c = curl("-u", "alpha:tokA", url)
    assert (c.status, c.body) == (200, b"via basic"), c
    assert server.alpha.get("/buckets/basic/keys/k").body == b"via basic"
    for user in ("alpha:wrong", "beta:tokA", "alpha:", "nobody:tokA"):
        c = curl("-u", user, url)
        assert c.status == 401, (user, c)
        assert c.headers.get("www-authenticate", "").startswith("Bearer"), c.headers
    c = curl("-H", "Authorization: Bearer wrong-token", url)
    assert c.status == 401 and b'"unauthorized"' in c.body, c
    c = curl(url)
    assert c.status == 401, c
    # beta with its own token sees nothing of alpha's.
    c = curl("-u", "beta:tokB", url)
    assert c.status == 404 and b'"not_found"' in c.body, c


def test_operator_acts_for_the_named_app_only(server: BlobServer) -> None:
    op_a = server.operator("alpha")
    assert op_a.put("/buckets/ops/keys/k", b"written by the operator").status == 204
    assert server.alpha.get("/buckets/ops/keys/k").body == b"written by the operator"
    assert server.beta.get("/buckets/ops/keys/k").status == 404
    assert server.operator("beta").get("/buckets/ops/keys/k").status == 404
    assert op_a.get("/buckets").json() == {"buckets": ["ops"]}
    assert op_a.stats()["bytes_used"] == len(b"written by the operator")
    # The operator token is not an app token, and an app token does not make an operator.
    assert_error(server.operator().get("/buckets/ops/keys/k"), 400, "app_required")
    r = server.alpha.get("/stats", {"X-Berth-App": "beta"})
    assert r.json()["app"] == "alpha", r  # X-Berth-App is ignored for app tokens
    r = server.alpha.get("/buckets/ops/keys/k", {"X-Berth-App": "beta"})
    assert r.status == 200, r
    c = curl("-u", f"alpha:{OPERATOR_TOKEN}", f"{server.base}/stats")
    assert c.status == 401, c


def test_quota_answers_do_not_depend_on_other_apps(blob_servers) -> None:
    tenants = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "1MiB"

[[app]]
name = "beta"
token = "tokB"
blob_bytes = "1MiB"
"""
    s = blob_servers.start(tenants=tenants)
    big = rand_bytes(900 * 1024, "fill")
    s.alpha.put_ok("/buckets/b/keys/fill", big)
    # alpha is nearly full; beta can still store those same bytes and more of its own.
    assert s.beta.stats()["bytes_free"] == 1024 * 1024
    s.beta.put_ok("/buckets/b/keys/fill", big)
    s.beta.put_ok("/buckets/b/keys/more", rand_bytes(100 * 1024, "more"))
    assert_error(s.alpha.put("/buckets/b/keys/more", rand_bytes(200 * 1024, "x")), 507,
                 "quota_exceeded")
    assert_error(s.beta.put("/buckets/b/keys/more2", rand_bytes(200 * 1024, "x")), 507,
                 "quota_exceeded")
