"""The blob protocol's wire forms for `berth.blobs`: blob ids, names as path segments, entity
tags, HTTP dates and `X-Riak-Meta-*` user metadata (see docs/protocols/blob.md)."""

from __future__ import annotations

import email.utils
import re
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from berth._http import Response

BLOB_ID_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")
META_NAME_RE: Final = re.compile(r"[0-9A-Za-z!#$%&'*+.^_`|~-]+")
META_PREFIX: Final = "x-riak-meta-"


def check_id(blob_id: str) -> str:
    """The id itself if it is `sha256:` and 64 lowercase hex digits; `ValueError` otherwise."""
    if not isinstance(blob_id, str) or not BLOB_ID_RE.fullmatch(blob_id):
        raise ValueError(
            f"berth.blobs: {blob_id!r} is not a blob id (sha256: and 64 lowercase hex digits); "
            "for a named object pass the bucket and the key"
        )
    return blob_id


def segment(name: str, what: str) -> str:
    """A bucket or key as one percent-encoded path segment (`/` becomes `%2F`)."""
    if not isinstance(name, str):
        raise TypeError(f"berth.blobs: the {what} name must be a str, got {type(name).__name__}")
    return urllib.parse.quote(name, safe="")


def object_path(bucket: str, key: str) -> str:
    """The path of a named object."""
    return f"/buckets/{segment(bucket, 'bucket')}/keys/{segment(key, 'key')}"


def etag_header(etag: str) -> str:
    """An entity tag as a header wants it: quoted, or `*`."""
    if etag == "*" or (etag.startswith('"') and etag.endswith('"')):
        return etag
    return f'"{etag}"'


def unquote_etag(value: str | None) -> str:
    """The bare tag (the content's SHA-256 in hex) of an `ETag` header."""
    value = (value or "").strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def http_date(value: str | None) -> datetime:
    """An HTTP date as an aware UTC datetime (the epoch when absent or unreadable)."""
    if value:
        try:
            return email.utils.parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.fromtimestamp(0, UTC)


def meta_headers(metadata: Mapping[str, str] | None) -> list[tuple[str, str | bytes]]:
    """User metadata as `X-Riak-Meta-*` headers (values UTF-8); `ValueError` for bad names."""
    headers: list[tuple[str, str | bytes]] = []
    for name, value in (metadata or {}).items():
        if not isinstance(name, str) or not META_NAME_RE.fullmatch(name):
            raise ValueError(
                f"berth.blobs: metadata name {name!r} must be a non-empty HTTP token "
                "(letters, digits and !#$%&'*+.^_`|~-)"
            )
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"berth.blobs: metadata {name!r} must be text without line breaks")
        headers.append((f"X-Riak-Meta-{name}", value.encode("utf-8")))
    return headers


def meta_from(response: Response) -> dict[str, str]:
    """The user metadata of a response, names lower-cased without the prefix."""
    meta: dict[str, str] = {}
    for name, value in response.headers():
        if name.lower().startswith(META_PREFIX):
            # http.client decodes header bytes as ISO-8859-1; the server sends UTF-8.
            text = value.encode("latin-1", "replace").decode("utf-8", "replace")
            meta[name[len(META_PREFIX) :].lower()] = text
    return meta


def int_header(response: Response, name: str) -> int:
    """A numeric header's value, 0 when absent or unreadable."""
    try:
        return int(response.header(name) or 0)
    except ValueError:
        return 0
