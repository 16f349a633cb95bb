"""berth.blobs: content-addressed blobs and named objects in buckets."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator

from berth import blobs


def main() -> None:
    # ANCHOR: blobs
    blob_id = blobs.write(b"hello")  # durable when it returns
    assert blob_id == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert blobs.read(blob_id) == b"hello"
    assert blobs.exists(blob_id) and blobs.size(blob_id) == 5
    assert blobs.write(b"hello") == blob_id  # the same bytes: the same id, no more quota
    # ANCHOR_END: blobs

    # ANCHOR: streaming
    def chunks() -> Iterator[bytes]:  # e.g. an upload read piece by piece
        for _ in range(64):
            yield b"x" * 65536

    big = blobs.write(chunks())  # sent chunked, never whole in memory
    with tempfile.TemporaryFile() as copy:
        with blobs.open(big) as stream:  # a readable binary stream
            shutil.copyfileobj(stream, copy)
            assert stream.size == 64 * 65536
        copy.seek(0)
        assert blobs.write(copy) == big  # a file is streamed too
    # ANCHOR_END: streaming

    # ANCHOR: objects
    info = blobs.put(
        "notes", "2024/first.txt", b"hello", content_type="text/plain", metadata={"author": "ann"}
    )
    obj = blobs.get("notes", "2024/first.txt")
    assert (obj.data, obj.content_type, obj.metadata) == (b"hello", "text/plain", {"author": "ann"})
    assert obj.etag == info.etag == hashlib.sha256(b"hello").hexdigest()
    assert blobs.get_range("notes", "2024/first.txt", 1, 4) == b"ell"
    stat = blobs.stat("notes", "2024/first.txt")  # metadata only; None when absent
    assert stat is not None and stat.size == 5 and blobs.stat("notes", "nope") is None
    # ANCHOR_END: objects

    # ANCHOR: conditional
    blobs.put("notes", "counter", b"1", if_absent=True)  # create only
    current = blobs.stat("notes", "counter")
    assert current is not None
    blobs.put("notes", "counter", b"2", if_match=current.etag)  # replace only that version
    try:
        blobs.put("notes", "counter", b"3", if_match=current.etag)  # someone got there first
    except blobs.PreconditionFailed as e:
        assert (e.status, e.code) == (412, "precondition_failed")
    else:
        raise AssertionError("a stale if_match must fail")
    assert blobs.get("notes", "counter").data == b"2"
    # ANCHOR_END: conditional

    # ANCHOR: listing
    for name in ["a.txt", "photos/1.jpg", "photos/2.jpg"]:
        blobs.put("listing-demo", name, b"")
    keys = list(blobs.list_keys("listing-demo", page_size=2))  # fetched a page at a time
    assert keys == ["a.txt", "photos/1.jpg", "photos/2.jpg"]
    assert {"notes", "listing-demo"} <= set(blobs.list_buckets())
    # ANCHOR_END: listing

    # ANCHOR: signed-url
    blobs.put("photos", "cat.jpg", b"meow", content_type="image/jpeg")
    url = blobs.signed_url("photos", "cat.jpg", expires_in=600)  # no token needed to GET it
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"meow"
        assert response.headers["Content-Type"] == "image/jpeg"
    # ANCHOR_END: signed-url

    # ANCHOR: errors
    try:
        blobs.get("notes", "nothing-here")
    except blobs.NotFound as e:  # also a KeyError
        assert e.status == 404 and e.code == "not_found"
    else:
        raise AssertionError("a missing object must raise NotFound")
    assert blobs.delete("notes", "counter") is True
    assert blobs.delete("notes", "counter") is False  # nothing there: no exception
    # ANCHOR_END: errors

    # ANCHOR: usage
    u = blobs.usage()
    assert u.bytes_used > 0 and u.bytes_free <= u.quota_bytes - u.bytes_used
    print(f"{u.app} uses {u.bytes_used} of {u.quota_bytes} bytes")
    # ANCHOR_END: usage
    print("blobs_basics: ok")


if __name__ == "__main__":
    main()
