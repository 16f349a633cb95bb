"""A pastebin on Bottle, a pure-Python web framework vendored in `vendor/`, using every Berth API.

- `berth.config`: the page title from ordinary config (`PASTEBIN_TITLE` in berth.toml's [env]);
- `berth.blobs`: the text of a paste is a content-addressed blob, its id the SHA-256 of the
  bytes, so the same text pasted twice is one paste (and one blob, counted once in the quota);
- `berth.db`: a row per paste (title, size, blob id) in the app's own database, for the list
  of recent pastes; `python -m schema`, the release command, creates the table;
- `berth.cache`: a paste never changes (its id is its content), so a paste read once is served
  from the cache; the list of recent pastes is cached until the next paste; views are counted
  with `incr`;
- `berth.logging` (installed by the runtime): new pastes are logged with structured fields,
  and a Bottle plugin logs every request that fails with an unexpected exception.

Bottle's app object is the WSGI callable (`entry = "main:app"`). The bundle is read-only
when deployed, and nothing here writes to it: templates are read from `views/` and compiled in
memory; the one file Bottle may write, a temporary file for a large multipart body, goes to
`tempfile`'s directory, which the runtime points into the app's scratch directory.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from berth import blobs, cache, config, db

# The vendored Bottle, ahead of any installed copy. The runtime serves the app from its bundle
# (the working directory, on sys.path); vendor/ is found from this file, wherever that is.
sys.path.insert(0, str(Path(__file__).resolve().parent / "vendor"))

import bottle

log = logging.getLogger("pastebin")

TITLE = config.get("PASTEBIN_TITLE", "Pastebin") or "Pastebin"
MAX_TEXT = 64 << 10  # bytes of UTF-8 per paste
MAX_TITLE = 100
# Bottle answers 413 to a urlencoded form longer than MEMFILE_MAX (100 KiB by default);
# 64 KiB of UTF-8 text takes up to three times that, percent-encoded.
bottle.BaseRequest.MEMFILE_MAX = 256 << 10
RECENT_KEY = "recent:v1"
RECENT_SIZE = 20
PASTE_CACHE_SECONDS = 3600
VIEWS = [str(Path(__file__).resolve().parent / "views")]

app = bottle.Bottle()

# Bottle ships no type information, so mypy sees it as Any (see the README); `route` is
# `app.route` with a type, so the handlers keep theirs under `mypy --strict`.
Handler = TypeVar("Handler", bound=Callable[..., Any])


def route(path: str, method: str = "GET", name: str | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        app.route(path, method, handler, name=name)
        return handler

    return register


def log_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A Bottle plugin: a handler's unexpected exception is logged (it reaches `berth logs`
    with its traceback) and answered 500. Bottle's own responses (redirects, `abort`) pass."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except bottle.HTTPResponse:
            raise
        except Exception:
            request = bottle.request
            log.exception(
                "%s %s failed",
                request.method,
                request.path,
                extra={"method": request.method, "path": request.path},
            )
            raise bottle.HTTPError(500, "Something broke; it has been logged.") from None

    return wrapper


app.install(log_errors)


def render(view: str, **values: Any) -> str:
    """The template `views/<view>.tpl`, with the title and `url(route_name, **args)`."""
    page: str = bottle.template(
        view, template_lookup=VIEWS, app_title=TITLE, url=app.get_url, **values
    )
    return page


# -- data ------------------------------------------------------------------------------------


def recent_pastes() -> list[dict[str, Any]]:
    """The newest pastes, from the cache when it has them (a cache that is down is a miss)."""
    cached = cache.get(RECENT_KEY)
    if cached is not None:
        rows: list[dict[str, Any]] = json.loads(cached)
        return rows
    with db.connect(dict_rows=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, title, bytes, line_count, "
            "DATE_FORMAT(created, '%%Y-%%m-%%d %%H:%%i') AS at "
            "FROM pastes ORDER BY created DESC, id LIMIT %s",
            (RECENT_SIZE,),
        )
        rows = list(cur.fetchall())
    cache.set(RECENT_KEY, json.dumps(rows), time=60)
    return rows


def add_paste(title: str, text: str) -> str:
    """Stores `text` (as a blob) and its row; answers the paste's id, the blob's digest."""
    data = text.encode()
    try:
        blob_id = blobs.write(data)
    except blobs.QuotaExceeded:
        log.warning("blob quota full; paste refused", extra={"bytes": len(data)})
        raise bottle.HTTPError(507, "The pastebin is out of space.") from None
    paste_id = blob_id.partition(":")[2]
    with db.connect() as conn, conn.cursor() as cur:
        # The same text again is the same paste: the first one (and its title) stays, and
        # the insert affects no row. (The fields were checked: IGNORE only skips the duplicate.)
        added = cur.execute(
            "INSERT IGNORE INTO pastes (id, blob_id, title, bytes, line_count) "
            "VALUES (%s, %s, %s, %s, %s)",
            (paste_id, blob_id, title, len(data), len(text.splitlines())),
        )
        conn.commit()
    if added:
        cache.delete(RECENT_KEY)
        log.info(
            "new paste %s: %s",
            paste_id[:12],
            title,
            extra={"paste": paste_id, "bytes": len(data), "title": title},
        )
    return paste_id


def load_paste(paste_id: str) -> dict[str, Any] | None:
    """The paste (its row and text), from the cache when it has it; None if there is none."""
    key = f"paste:{paste_id}"
    cached = cache.get(key)
    if cached is not None:
        paste: dict[str, Any] = json.loads(cached)
        return paste
    with db.connect(dict_rows=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, blob_id, title, bytes, line_count, "
            "DATE_FORMAT(created, '%%Y-%%m-%%d %%H:%%i') AS at FROM pastes WHERE id = %s",
            (paste_id,),
        )
        row: dict[str, Any] | None = cur.fetchone()
    if row is None:
        return None
    paste = {**row, "text": blobs.read(row["blob_id"]).decode()}
    cache.set(key, json.dumps(paste), time=PASTE_CACHE_SECONDS)
    return paste


def paste_or_404(paste_id: str) -> dict[str, Any]:
    paste = load_paste(paste_id)
    if paste is None:
        raise bottle.HTTPError(404, "No such paste.")
    return paste


# -- pages -----------------------------------------------------------------------------------

PASTE_ID = "<paste_id:re:[0-9a-f]{64}>"


@route("/", name="home")
def home() -> str:
    return render("home", pastes=recent_pastes())


@route("/pastes", "POST", name="create")
def create() -> None:
    text: str = bottle.request.forms.getunicode("text", default="")
    title: str = bottle.request.forms.getunicode("title", default="").strip()
    text = text.replace("\r\n", "\n")  # browsers send a textarea's lines with CRLF
    if not text.strip():
        raise bottle.HTTPError(400, "Paste some text.")
    if len(text.encode()) > MAX_TEXT:
        raise bottle.HTTPError(413, f"A paste may be at most {MAX_TEXT >> 10} KiB.")
    if len(title) > MAX_TITLE:
        raise bottle.HTTPError(400, f"A title may be at most {MAX_TITLE} characters.")
    paste_id = add_paste(title or "untitled", text)
    bottle.redirect(app.get_url("paste", paste_id=paste_id), 303)


@route(f"/p/{PASTE_ID}", name="paste")
def show(paste_id: str) -> str:
    paste = paste_or_404(paste_id)
    views = cache.incr(f"views:{paste_id}", initial_value=0)  # 1 on the first view
    return render("paste", paste=paste, views=views)


@route(f"/p/{PASTE_ID}/raw", name="raw")
def raw(paste_id: str) -> str:
    paste = paste_or_404(paste_id)
    bottle.response.content_type = "text/plain; charset=utf-8"
    bottle.response.set_header("X-Content-Type-Options", "nosniff")
    text: str = paste["text"]
    return text


@route("/healthz")
def health() -> str:
    """200 when the database answers (the cache is optional: down reads as a miss)."""
    bottle.response.content_type = "text/plain; charset=utf-8"
    try:
        with db.connect(connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    except db.Error as e:
        log.error("health check failed: %s", e)
        bottle.response.status = 503
        return "database unreachable\n"
    return "ok\n"
