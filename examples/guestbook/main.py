"""The guestbook: a small WSGI app (no framework) that uses every Berth API.

- `berth.config`: the page title from ordinary config (`GUESTBOOK_TITLE`), the moderator key
  from the secrets file (`moderator_key`, required: the app refuses to start without it);
- `berth.db`: entries live in the app's own database;
- `berth.cache`: the rendered list of entries is cached and invalidated on every change; a
  visit counter uses `incr` with an initial value;
- `berth.blobs`: an uploaded picture is stored content-addressed and shown through a signed
  URL, so the browser fetches it from the blob server without the app's token;
- `berth.logging` (installed by the runtime): every change is logged with structured fields.
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import schema
from berth import blobs, cache, config, db

log = logging.getLogger("guestbook")

TITLE = config.get("GUESTBOOK_TITLE", "Guestbook") or "Guestbook"
MODERATOR_KEY = config.require_secret("moderator_key")
MAX_BODY = 6 << 20  # a picture of up to 5 MiB, plus the form around it
MAX_PICTURE = 5 << 20
PICTURE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
ENTRIES_KEY = "entries:v1"
PAGE_SIZE = 50

StartResponse = Callable[..., Any]

_schema_ready = False
_schema_lock = threading.Lock()


class HTTPError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ensure_schema() -> None:
    global _schema_ready
    if not _schema_ready:
        with _schema_lock:
            if not _schema_ready:
                schema.ensure()
                _schema_ready = True


# -- data ------------------------------------------------------------------------------------


def load_entries() -> list[dict[str, Any]]:
    """The newest entries, from the cache when it has them (a cache that is down is a miss)."""
    cached = cache.get(ENTRIES_KEY)
    if cached is not None:
        entries: list[dict[str, Any]] = json.loads(cached)
        return entries
    ensure_schema()
    with db.connect(dict_rows=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, name, message, picture, DATE_FORMAT(created, '%%Y-%%m-%%d %%H:%%i') AS at "
            "FROM entries ORDER BY id DESC LIMIT %s",
            (PAGE_SIZE,),
        )
        rows = list(cur.fetchall())
    cache.set(ENTRIES_KEY, json.dumps(rows), time=60)
    return rows


def add_entry(name: str, message: str, picture: bytes | None, picture_type: str | None) -> int:
    ensure_schema()
    picture_id = None
    if picture:
        if picture_type not in PICTURE_TYPES:
            raise HTTPError("415 Unsupported Media Type", "pictures must be PNG, JPEG, GIF or WebP")
        if len(picture) > MAX_PICTURE:
            raise HTTPError("413 Content Too Large", "pictures may be at most 5 MiB")
        try:
            picture_id = blobs.write(picture)
        except blobs.QuotaExceeded:
            log.warning("blob quota full; entry refused", extra={"bytes": len(picture)})
            raise HTTPError("507 Insufficient Storage", "the guestbook is out of space") from None
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO entries (name, message, picture) VALUES (%s, %s, %s)",
            (name, message, picture_id),
        )
        entry_id = int(cur.lastrowid)
        conn.commit()
    cache.delete(ENTRIES_KEY)
    log.info(
        "new entry %d by %s",
        entry_id,
        name,
        extra={"entry": entry_id, "picture": picture_id, "chars": len(message)},
    )
    return entry_id


def delete_entry(entry_id: int) -> bool:
    ensure_schema()
    with db.connect() as conn, conn.cursor() as cur:
        deleted = cur.execute("DELETE FROM entries WHERE id = %s", (entry_id,))
        conn.commit()
    cache.delete(ENTRIES_KEY)
    log.warning("entry %d deleted by the moderator", entry_id, extra={"entry": entry_id})
    return bool(deleted)


# -- requests --------------------------------------------------------------------------------


def read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise HTTPError("400 Bad Request", "bad Content-Length") from None
    if length > MAX_BODY:
        raise HTTPError("413 Content Too Large", "the form may be at most 6 MiB")
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    return body


def parse_form(environ: dict[str, Any]) -> tuple[dict[str, str], dict[str, tuple[bytes, str]]]:
    """Fields and files of a urlencoded or multipart POST body."""
    body = read_body(environ)
    ctype = environ.get("CONTENT_TYPE", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return dict(pairs), {}
    if ctype.startswith("multipart/form-data"):
        head = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, str] = {}
        files: dict[str, tuple[bytes, str]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if part.get_filename() is not None:
                if data:
                    files[name] = (data, part.get_content_type())
            else:
                fields[name] = data.decode("utf-8", "replace")
        return fields, files
    raise HTTPError("415 Unsupported Media Type", "send the form as a browser does")


def page(entries: list[dict[str, Any]], visits: int | None, base: str = "") -> str:
    """The page; `base` is where the app is mounted (SCRIPT_NAME, e.g. /guestbook)."""
    esc = html.escape
    items = []
    for e in entries:
        picture = ""
        if e.get("picture"):
            try:
                url = blobs.signed_url(e["picture"], expires_in=3600)
                picture = f'<img src="{esc(url)}" alt="picture by {esc(e["name"])}" width="240">'
            except blobs.BlobError as err:
                log.warning("cannot sign picture %s: %s", e["picture"], err)
        items.append(
            f'<li id="entry-{e["id"]}"><b>{esc(e["name"])}</b> <small>{esc(str(e["at"]))}'
            f"</small><p>{esc(e['message'])}</p>{picture}</li>"
        )
    visits_text = f"<p><small>{visits} visits</small></p>" if visits is not None else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(TITLE)}</title></head>
<body><h1>{esc(TITLE)}</h1>
<form method="post" action="{esc(base)}/entries" enctype="multipart/form-data">
<p><input name="name" placeholder="Your name" maxlength="80" required></p>
<p><textarea name="message" placeholder="Say hello" maxlength="2000" required></textarea></p>
<p><input type="file" name="picture" accept="image/*"> <button>Sign</button></p>
</form>
<ul>{"".join(items)}</ul>{visits_text}</body></html>
"""


def respond(
    start_response: StartResponse, status: str, body: str, ctype: str = "text/html"
) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", f"{ctype}; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


def home(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    visits = cache.incr("visits", initial_value=1)
    base = environ.get("SCRIPT_NAME", "")
    return respond(start_response, "200 OK", page(load_entries(), visits, base))


def create(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    fields, files = parse_form(environ)
    name = fields.get("name", "").strip()
    message = fields.get("message", "").strip()
    if not name or not message or len(name) > 80 or len(message) > 2000:
        raise HTTPError("400 Bad Request", "a name (80 chars) and a message (2000) are needed")
    picture, ptype = files.get("picture", (b"", ""))
    entry_id = add_entry(name, message, picture or None, ptype or None)
    base = environ.get("SCRIPT_NAME", "")
    start_response(
        "303 See Other", [("Location", f"{base}/#entry-{entry_id}"), ("Content-Length", "0")]
    )
    return [b""]


def moderate(environ: dict[str, Any], start_response: StartResponse, entry_id: int) -> list[bytes]:
    fields, _ = parse_form(environ)
    if fields.get("key") != MODERATOR_KEY:
        raise HTTPError("403 Forbidden", "wrong moderator key")
    if not delete_entry(entry_id):
        raise HTTPError("404 Not Found", "no such entry")
    start_response(
        "303 See Other",
        [("Location", environ.get("SCRIPT_NAME", "") + "/"), ("Content-Length", "0")],
    )
    return [b""]


def health(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    """200 when the database answers (the cache is optional: down reads as a miss)."""
    try:
        with db.connect(connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    except db.Error as e:
        log.error("health check failed: %s", e)
        return respond(
            start_response, "503 Service Unavailable", "database unreachable\n", "text/plain"
        )
    return respond(start_response, "200 OK", "ok\n", "text/plain")


def stats(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    usage = blobs.usage()
    body = json.dumps({"blob_bytes_used": usage.bytes_used, "blob_quota": usage.quota_bytes})
    return respond(start_response, "200 OK", body, "application/json")


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO") or "/"
    try:
        if path == "/" and method in ("GET", "HEAD"):
            return home(environ, start_response)
        if path == "/entries" and method == "POST":
            return create(environ, start_response)
        if path.startswith("/entries/") and path.endswith("/delete") and method == "POST":
            middle = path[len("/entries/") : -len("/delete")]
            if not middle.isdigit():
                raise HTTPError("404 Not Found", "no such entry")
            return moderate(environ, start_response, int(middle))
        if path == "/healthz":
            return health(environ, start_response)
        if path == "/stats" and method == "GET":
            return stats(environ, start_response)
        raise HTTPError("404 Not Found", "no such page")
    except HTTPError as e:
        return respond(start_response, e.status, e.message + "\n", "text/plain")
    except Exception:
        log.exception("request %s %s failed", method, path)
        return respond(
            start_response, "500 Internal Server Error", "something broke\n", "text/plain"
        )
