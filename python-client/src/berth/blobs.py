"""The app's persistent storage, over Berth's blob server (`BERTH_BLOB_URL`).

Two views of one per-app store: content-addressed blobs (`write` answers the id
`sha256:<hex>` of the bytes, `read` gives them back) and named objects in buckets (`put`,
`get`, `list_keys`, ...). Every write is durable once it returns. Module functions use one
process-wide `Client` built from `berth.config`, which logs in with the app's token and keeps
a pool of keep-alive connections; it is safe to share between threads.

Failures raise `BlobError` subclasses (`NotFound`, `PreconditionFailed`, `QuotaExceeded`,
`TooLarge`, `Unauthorized`, `BadRequest`, `ServerUnavailable`); lookups that ask a question
(`exists`, `stat`, `delete`) answer it instead of raising `NotFound`.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, overload

from berth import _blobproto as _p
from berth import config
from berth._http import (
    Body,
    BodyData,
    Pool,
    Response,
    ResponseStream,
    TransportError,
    TruncatedResponse,
)

__all__ = [
    "ENV_BLOB_URL",
    "BadRequest",
    "BlobError",
    "BlobStream",
    "Client",
    "NotFound",
    "Object",
    "ObjectInfo",
    "PreconditionFailed",
    "QuotaExceeded",
    "ServerUnavailable",
    "TooLarge",
    "Unauthorized",
    "Usage",
    "close",
    "default_client",
    "delete",
    "exists",
    "get",
    "get_range",
    "head",
    "list_buckets",
    "list_keys",
    "open",
    "open_object",
    "put",
    "read",
    "signed_url",
    "size",
    "stat",
    "usage",
    "write",
]

#: The environment variable naming the blob server, e.g. `http://127.0.0.1:8098`.
ENV_BLOB_URL: Final = "BERTH_BLOB_URL"

#: What `write` and `put` take: bytes, a binary file (read in chunks from its current
#: position) or an iterable of bytes (e.g. a generator; sent chunked).
Data = BodyData

_DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"


class BlobError(Exception):
    """A request the blob server refused or could not serve.

    `status` is the HTTP status (None when no answer came), `code` the server's stable error
    code (see docs/protocols/blob.md: `not_found`, `quota_exceeded`, ...), `message` its text.
    """

    def __init__(self, status: int | None, code: str, message: str, what: str = "") -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.what = what

    def __str__(self) -> str:
        where = f"{self.what}: " if self.what else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"berth.blobs: {where}{self.message} ({status}{self.code})"


class BadRequest(BlobError):
    """400: an invalid bucket or key name, metadata, query or body."""


class Unauthorized(BlobError):
    """401: the server does not accept the app's token (check the secrets file)."""


class NotFound(BlobError, KeyError):
    """404: no such object or blob for this app (also a `KeyError`)."""


class PreconditionFailed(BlobError):
    """412: the object exists (`if_absent`) or no longer has the expected tag (`if_match`)."""


class TooLarge(BlobError):
    """413: the object is larger than the server or the app's `max_object_bytes` allow."""


class QuotaExceeded(BlobError):
    """507 `quota_exceeded`: storing it would take the app past its quota; nothing was stored."""


class ServerUnavailable(BlobError):
    """The server cannot be reached, dropped the connection, timed out, is shutting down (503)
    or has too many of the app's requests in flight (429). Worth retrying later."""


_BY_STATUS: Final[dict[int, type[BlobError]]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    412: PreconditionFailed,
    413: TooLarge,
    429: ServerUnavailable,
    503: ServerUnavailable,
}


@dataclass(frozen=True)
class ObjectInfo:
    """A named object's description (what `stat` and `put` answer).

    `etag` is the SHA-256 of the content in hex (equal bytes have equal tags), as `put`'s
    `if_match` takes it. `metadata` holds the user metadata, names lower-cased.
    """

    bucket: str
    key: str
    etag: str
    size: int
    content_type: str
    last_modified: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Object:
    """A named object read whole by `get`: its bytes and description."""

    data: bytes
    content_type: str
    metadata: Mapping[str, str]
    etag: str
    last_modified: datetime
    bucket: str
    key: str

    @property
    def size(self) -> int:
        """The object's length in bytes."""
        return len(self.data)


@dataclass(frozen=True)
class Usage:
    """The app's storage use, from the server's `/stats` (bytes)."""

    app: str
    bytes_used: int
    bytes_reserved: int
    quota_bytes: int
    bytes_free: int
    max_object_bytes: int


class BlobStream(ResponseStream):
    """A readable binary stream of a blob or object (`open`, `open_object`).

    Read it in pieces (`read(n)`, `readinto`, iteration by lines, `shutil.copyfileobj`); use it
    in a `with` block, or `close()` it: a stream closed before its end drops its connection.
    `size` is the length in bytes; `info` describes a named object (None for a blob).
    A body the server cuts short (its data failed a checksum) raises `BlobError` with code
    `truncated`, never returns wrong bytes silently.
    """

    def __init__(self, response: Response, size: int, info: ObjectInfo | None) -> None:
        super().__init__(response)
        self.size = size
        self.info = info

    def readinto(self, buffer: Any) -> int:
        try:
            return super().readinto(buffer)
        except TransportError as e:
            raise _read_error(e, "", "") from None


def _read_error(e: TransportError, url: str, what: str) -> BlobError:
    """A failure while reading a response body: cut short by the server, or a lost connection."""
    if isinstance(e, TruncatedResponse):
        return BlobError(None, "truncated", str(e), what)
    server = f" from the blob server at {url}" if url else ""
    return ServerUnavailable(None, "unavailable", f"reading{server} failed: {e}", what)


def _info_from(response: Response, bucket: str, key: str) -> ObjectInfo:
    return ObjectInfo(
        bucket=bucket,
        key=key,
        etag=_p.unquote_etag(response.header("ETag")),
        size=_p.int_header(response, "Content-Length"),
        content_type=response.header("Content-Type") or _DEFAULT_CONTENT_TYPE,
        last_modified=_p.http_date(response.header("Last-Modified")),
        metadata=_p.meta_from(response),
    )


def _url_from(cfg: config.Config) -> str:
    url = cfg.get(ENV_BLOB_URL)
    if not url:
        raise config.ConfigError(
            f"berth.blobs: the blob server is not configured: set {ENV_BLOB_URL} "
            "(e.g. http://127.0.0.1:8098)"
        )
    return url


class Client:
    """A blob-server client for one app: token, keep-alive connection pool, typed errors.

    `url` is the server's base URL (`http://host:port`, optionally with a path prefix);
    `None` reads `BERTH_BLOB_URL` through `berth.config`. `token` is sent as
    `Authorization: Bearer`; `None` reads the app's token from the secrets file, and `""`
    sends none (a local development server). `timeout` (seconds) bounds connecting and each
    wait for the server, not a whole transfer; `max_idle` bounds the pooled connections.
    Thread-safe.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        max_idle: int = 8,
    ) -> None:
        if url is None or token is None:
            cfg = config.current()
            url = _url_from(cfg) if url is None else url
            token = cfg.token if token is None else token
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise config.ConfigError(
                f"berth.blobs: {url!r} is not a blob server URL: expected http://host:port "
                f"({ENV_BLOB_URL}; the blob server speaks plain HTTP)"
            )
        try:
            port = parts.port or 80
        except ValueError:
            raise config.ConfigError(f"berth.blobs: {url!r} has an invalid port") from None
        self.url: str = url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._auth: list[tuple[str, str | bytes]] = (
            [("Authorization", f"Bearer {token}")] if token else []
        )
        self._pool = Pool(parts.hostname, port, timeout=timeout, max_idle=max_idle)

    @classmethod
    def from_config(cls, cfg: config.Config | None = None) -> Client:
        """A client for the app described by `cfg` (default: `berth.config.current()`)."""
        cfg = cfg or config.current()
        return cls(_url_from(cfg), cfg.token or "")

    def close(self) -> None:
        """Closes the pooled connections; the client reconnects on its next call."""
        self._pool.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        headers: list[tuple[str, str | bytes]] | None = None,
        body: Body | None = None,
        idempotent: bool = True,
        ok: tuple[int, ...] = (200,),
    ) -> Response:
        """Sends a request; answers the response when its status is in `ok`, else raises."""
        try:
            response = self._pool.request(
                method,
                self._prefix + path,
                [*self._auth, *(headers or [])],
                body,
                idempotent=idempotent,
            )
        except TransportError as e:
            raise ServerUnavailable(
                None,
                "unavailable",
                f"no answer from the blob server at {self.url}: {e} "
                f"(is it running? {ENV_BLOB_URL}={self.url})",
                what,
            ) from None
        if response.status in ok:
            return response
        raise self._error(response, what)

    def _error(self, response: Response, what: str) -> BlobError:
        try:
            raw = response.read()
        except TransportError:
            raw = b""
        code, message = f"http_{response.status}", f"unexpected HTTP status {response.status}"
        try:
            doc = json.loads(raw) if raw else None
            if isinstance(doc, dict) and isinstance(doc.get("error"), str):
                code = doc["error"]
                message = str(doc.get("message") or code)
        except ValueError:
            pass
        kind = _BY_STATUS.get(response.status, BlobError)
        if code == "quota_exceeded":
            kind = QuotaExceeded
        elif response.status == 404 and code not in ("not_found", "no_such_app"):
            kind = BlobError  # the path itself names nothing: a client bug, not a missing key
        return kind(response.status, code, message, what)

    def _read(self, response: Response, what: str) -> bytes:
        try:
            return response.read()
        except TransportError as e:
            raise _read_error(e, self.url, what) from None

    def _json(self, response: Response, what: str) -> dict[str, Any]:
        raw = self._read(response, what)
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise BlobError(response.status, "invalid_response", "the answer is not JSON", what)
        return doc

    # -- content-addressed blobs --------------------------------------------------------------

    def write(self, data: Data) -> str:
        """Stores `data` and returns its id, `sha256:<hex>` of the bytes (computed by the server).

        A file object is read in chunks from its current position and never held whole in
        memory; an iterable of bytes (a generator) is sent chunked. Storing the same bytes
        again returns the same id and costs no more quota. Raises `QuotaExceeded`, `TooLarge`.
        """
        response = self._request("POST", "/blobs", "write blob", body=Body(data), ok=(200, 201))
        doc = self._json(response, "write blob")
        blob_id = doc.get("id")
        if not isinstance(blob_id, str):
            raise BlobError(
                response.status, "invalid_response", "no id in the answer", "write blob"
            )
        return blob_id

    def read(self, blob_id: str) -> bytes:
        """The bytes of a blob this app stored; `NotFound` otherwise."""
        path = f"/blobs/{_p.check_id(blob_id)}"
        what = f"blob {blob_id}"
        return self._read(self._request("GET", path, what), what)

    def open(self, blob_id: str) -> BlobStream:
        """A stream of the blob's bytes, for blobs too large to hold; `NotFound` if absent."""
        path = f"/blobs/{_p.check_id(blob_id)}"
        response = self._request("GET", path, f"blob {blob_id}")
        return BlobStream(response, _p.int_header(response, "Content-Length"), None)

    def exists(self, blob_id: str) -> bool:
        """Whether this app holds the blob (stored it and did not delete it)."""
        return self._head_blob(blob_id) is not None

    def size(self, blob_id: str) -> int:
        """The blob's length in bytes; `NotFound` if this app does not hold it."""
        n = self._head_blob(blob_id)
        if n is None:
            raise NotFound(404, "not_found", "not found", f"blob {blob_id}")
        return n

    def _head_blob(self, blob_id: str) -> int | None:
        path = f"/blobs/{_p.check_id(blob_id)}"
        response = self._request("HEAD", path, f"blob {blob_id}", ok=(200, 404))
        response.read()
        return _p.int_header(response, "Content-Length") if response.status == 200 else None

    # -- named objects ------------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        key: str,
        data: Data,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> ObjectInfo:
        """Stores `data` under `bucket`/`key`, replacing what was there; durable on return.

        `data` is bytes, a binary file (streamed from its current position) or an iterable of
        bytes. `content_type` defaults to `application/octet-stream`; `metadata` is text,
        names are lower-cased by the server (8 KiB in all). `if_absent=True` creates only;
        `if_match=<etag>` replaces only that version (`"*"`: any existing one); either raises
        `PreconditionFailed` when it does not hold, checked atomically with the write.
        """
        if if_absent and if_match is not None:
            raise ValueError("berth.blobs: if_absent and if_match exclude each other")
        headers = _p.meta_headers(metadata)
        ctype = content_type or _DEFAULT_CONTENT_TYPE
        headers.append(("Content-Type", ctype))
        if if_absent:
            headers.append(("If-None-Match", "*"))
        elif if_match is not None:
            headers.append(("If-Match", _p.etag_header(if_match)))
        body = Body(data)
        response = self._request(
            "PUT",
            _p.object_path(bucket, key),
            f"put {bucket}/{key}",
            headers=headers,
            body=body,
            idempotent=not if_absent and if_match is None,
            ok=(200, 201, 204),
        )
        self._read(response, f"put {bucket}/{key}")
        return ObjectInfo(
            bucket=bucket,
            key=key,
            etag=_p.unquote_etag(response.header("ETag")),
            size=body.length if body.length is not None else body.sent,
            content_type=ctype,
            last_modified=_p.http_date(response.header("Last-Modified")),
            metadata={k.lower(): v for k, v in (metadata or {}).items()},
        )

    def get(self, bucket: str, key: str) -> Object:
        """The object at `bucket`/`key`, read whole; `NotFound` when there is none."""
        what = f"{bucket}/{key}"
        response = self._request("GET", _p.object_path(bucket, key), what)
        info = _info_from(response, bucket, key)
        return Object(
            data=self._read(response, what),
            content_type=info.content_type,
            metadata=info.metadata,
            etag=info.etag,
            last_modified=info.last_modified,
            bucket=bucket,
            key=key,
        )

    def get_range(self, bucket: str, key: str, start: int, end: int | None = None) -> bytes:
        """The bytes `data[start:end]` of the object, like slicing: `end` is exclusive, None
        means to the end, a negative `start` (with `end=None`) counts from the end. A range
        past the end is `b""`; a missing object is `NotFound`.
        """
        what = f"{bucket}/{key}"
        if end is not None and (end < 0 or start < 0 or end < start):
            raise ValueError(
                "berth.blobs: get_range takes 0 <= start <= end (or a negative start alone)"
            )
        if end == start or (start == 0 and end is None):
            if end == start:
                if self.stat(bucket, key) is None:
                    raise NotFound(404, "not_found", "not found", what)
                return b""
            return self.get(bucket, key).data
        spec = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        if start < 0:
            spec = f"bytes={start}"
        response = self._request(
            "GET",
            _p.object_path(bucket, key),
            what,
            headers=[("Range", spec)],
            ok=(200, 206, 416),
        )
        data = self._read(response, what)
        return b"" if response.status == 416 else data

    def open_object(self, bucket: str, key: str) -> BlobStream:
        """A stream of the object's bytes (`info` describes it); `NotFound` when absent."""
        response = self._request("GET", _p.object_path(bucket, key), f"{bucket}/{key}")
        info = _info_from(response, bucket, key)
        return BlobStream(response, info.size, info)

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's description without its bytes, or None when there is none."""
        response = self._request(
            "HEAD", _p.object_path(bucket, key), f"{bucket}/{key}", ok=(200, 404)
        )
        response.read()
        return _info_from(response, bucket, key) if response.status == 200 else None

    head = stat

    @overload
    def delete(self, blob_id: str, /) -> bool: ...

    @overload
    def delete(self, bucket: str, key: str, /, *, if_match: str | None = None) -> bool: ...

    def delete(
        self, target: str, key: str | None = None, /, *, if_match: str | None = None
    ) -> bool:
        """`delete(blob_id)` drops the app's hold on a blob; `delete(bucket, key)` removes a
        named object (`if_match=<etag>`: only that version, else `PreconditionFailed`).

        Answers True when something was deleted, False when there was nothing to delete.
        Content still used by another key or blob of the app is kept.
        """
        if key is None:
            if if_match is not None:
                raise ValueError("berth.blobs: if_match applies to named objects only")
            path, what = f"/blobs/{_p.check_id(target)}", f"delete blob {target}"
            headers: list[tuple[str, str | bytes]] = []
        else:
            path, what = _p.object_path(target, key), f"delete {target}/{key}"
            headers = [] if if_match is None else [("If-Match", _p.etag_header(if_match))]
        response = self._request(
            "DELETE",
            path,
            what,
            headers=headers,
            idempotent=if_match is None,
            ok=(200, 204, 404),
        )
        self._read(response, what)
        return response.status != 404

    def list_keys(self, bucket: str, *, page_size: int | None = None) -> Iterator[str]:
        """Every key of `bucket`, in byte order, fetched page by page as the iterator advances
        (`page_size` keys per request; default the server's `max_list_page`)."""
        return self._pages(f"/buckets/{_p.segment(bucket, 'bucket')}/keys", "keys", page_size)

    def list_buckets(self, *, page_size: int | None = None) -> Iterator[str]:
        """Every bucket holding at least one key, fetched page by page like `list_keys`."""
        return self._pages("/buckets", "buckets", page_size)

    def _pages(self, path: str, field_name: str, page_size: int | None) -> Iterator[str]:
        if page_size is not None and page_size < 1:
            raise ValueError("berth.blobs: page_size must be at least 1")
        return self._iter_pages(path, field_name, page_size)

    def _iter_pages(self, path: str, field_name: str, page_size: int | None) -> Iterator[str]:
        what = f"list {path}"
        params: dict[str, str] = {"keys": "true"} if field_name == "keys" else {}
        if page_size is not None:
            params["max_results"] = str(page_size)
        continuation: str | None = None
        while True:
            query = dict(params)
            if continuation:
                query["continuation"] = continuation
            url = path + ("?" + urllib.parse.urlencode(query) if query else "")
            doc = self._json(self._request("GET", url, what), what)
            names = doc.get(field_name)
            if not isinstance(names, list):
                raise BlobError(200, "invalid_response", f"no {field_name} in the answer", what)
            yield from (str(n) for n in names)
            token = doc.get("continuation")
            if not isinstance(token, str) or not token:
                return
            continuation = token

    # -- signed URLs and usage ----------------------------------------------------------------

    @overload
    def signed_url(self, blob_id: str, /, *, expires_in: int = 3600) -> str: ...

    @overload
    def signed_url(self, bucket: str, key: str, /, expires_in: int = 3600) -> str: ...

    def signed_url(self, target: str, key: str | None = None, /, expires_in: int = 3600) -> str:
        """An absolute URL that reads one object (`signed_url(bucket, key)`) or blob
        (`signed_url(blob_id)`) without the token, for `expires_in` seconds (at most the
        server's `max_signed_url_ttl`, 7 days by default; `BadRequest` past it). It allows GET
        and HEAD of that one path; an overwritten key serves the new bytes."""
        if key is None:
            request: dict[str, Any] = {"blob": _p.check_id(target)}
            what = f"sign blob {target}"
        else:
            _p.segment(target, "bucket")
            _p.segment(key, "key")
            request, what = {"bucket": target, "key": key}, f"sign {target}/{key}"
        request["expires_in"] = int(expires_in)
        body = Body(json.dumps(request).encode())
        response = self._request(
            "POST",
            "/sign",
            what,
            headers=[("Content-Type", "application/json")],
            body=body,
        )
        url = self._json(response, what).get("url")
        if not isinstance(url, str) or not url.startswith("/"):
            raise BlobError(200, "invalid_response", "no url in the answer", what)
        return self.url + url

    def usage(self) -> Usage:
        """The app's storage use and limits (the server's `/stats`)."""
        doc = self._json(self._request("GET", "/stats", "usage"), "usage")

        def num(name: str) -> int:
            value = doc.get(name, 0)
            return int(value) if isinstance(value, int | float) else 0

        return Usage(
            app=str(doc.get("app", "")),
            bytes_used=num("bytes_used"),
            bytes_reserved=num("bytes_reserved"),
            quota_bytes=num("quota_bytes"),
            bytes_free=num("bytes_free"),
            max_object_bytes=num("max_object_bytes"),
        )


_default_lock = threading.Lock()
_default: tuple[config.Config, Client] | None = None


def default_client() -> Client:
    """The process-wide client for `berth.config.current()`; rebuilt after `config.reload()`.

    Raises `ConfigError` when `BERTH_BLOB_URL` is not set.
    """
    global _default
    cfg = config.current()
    held = _default
    if held is not None and held[0] is cfg:
        return held[1]
    with _default_lock:
        held = _default
        if held is None or held[0] is not cfg:
            client = Client.from_config(cfg)
            if held is not None:
                held[1].close()
            _default = held = (cfg, client)
    return held[1]


def close() -> None:
    """Closes the process-wide client's connections (e.g. in a worker's shutdown hook)."""
    held = _default
    if held is not None:
        held[1].close()


def write(data: Data) -> str:
    """See `Client.write`."""
    return default_client().write(data)


def read(blob_id: str) -> bytes:
    """See `Client.read`."""
    return default_client().read(blob_id)


def open(blob_id: str) -> BlobStream:
    """See `Client.open`."""
    return default_client().open(blob_id)


def exists(blob_id: str) -> bool:
    """See `Client.exists`."""
    return default_client().exists(blob_id)


def size(blob_id: str) -> int:
    """See `Client.size`."""
    return default_client().size(blob_id)


@overload
def delete(blob_id: str, /) -> bool: ...


@overload
def delete(bucket: str, key: str, /, *, if_match: str | None = None) -> bool: ...


def delete(target: str, key: str | None = None, /, *, if_match: str | None = None) -> bool:
    """See `Client.delete`."""
    if key is None:
        if if_match is not None:
            raise ValueError("berth.blobs: if_match applies to named objects only")
        return default_client().delete(target)
    return default_client().delete(target, key, if_match=if_match)


def put(
    bucket: str,
    key: str,
    data: Data,
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    if_absent: bool = False,
    if_match: str | None = None,
) -> ObjectInfo:
    """See `Client.put`."""
    return default_client().put(bucket, key, data, content_type, metadata, if_absent, if_match)


def get(bucket: str, key: str) -> Object:
    """See `Client.get`."""
    return default_client().get(bucket, key)


def get_range(bucket: str, key: str, start: int, end: int | None = None) -> bytes:
    """See `Client.get_range`."""
    return default_client().get_range(bucket, key, start, end)


def open_object(bucket: str, key: str) -> BlobStream:
    """See `Client.open_object`."""
    return default_client().open_object(bucket, key)


def stat(bucket: str, key: str) -> ObjectInfo | None:
    """See `Client.stat`."""
    return default_client().stat(bucket, key)


head = stat


def list_keys(bucket: str, *, page_size: int | None = None) -> Iterator[str]:
    """See `Client.list_keys`."""
    return default_client().list_keys(bucket, page_size=page_size)


def list_buckets(*, page_size: int | None = None) -> Iterator[str]:
    """See `Client.list_buckets`."""
    return default_client().list_buckets(page_size=page_size)


@overload
def signed_url(blob_id: str, /, *, expires_in: int = 3600) -> str: ...


@overload
def signed_url(bucket: str, key: str, /, expires_in: int = 3600) -> str: ...


def signed_url(target: str, key: str | None = None, /, expires_in: int = 3600) -> str:
    """See `Client.signed_url`."""
    if key is None:
        return default_client().signed_url(target, expires_in=expires_in)
    return default_client().signed_url(target, key, expires_in)


def usage() -> Usage:
    """See `Client.usage`."""
    return default_client().usage()
