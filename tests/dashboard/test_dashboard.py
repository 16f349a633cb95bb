"""berthd's web dashboard in a real browser: Debian's Chromium, headless, driven by Playwright
(its Python binding; the bundled driver is playwright-core), against the whole platform of
tests/deploy/platform.py (berthd, every service, the router, apps under berth-shim).

The story of the issue, in order: sign in, see an app, watch a deploy appear live (the page is
not reloaded), roll back with the button (through its confirmation page), tail the logs (new
lines appear; a resumed stream has no gap), and an app owner who cannot reach another app's
pages or API. Around it: usage bars and charts, why a failed version failed, secrets never
shown, a form without its CSRF token refused, labels on every field, keyboard-only sign-in,
and a phone-sized viewport without sideways scrolling.

Screenshots of each page are saved as artifacts in target/test-artifacts/dashboard/ (or
$BERTH_ARTIFACTS_DIR/dashboard/).

    .venv/bin/python -m pytest tests/dashboard --bin-dir target/release
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from deploy.platform import Platform, eventually, running, write_app

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BERTH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("BERTH_ARTIFACTS_DIR", REPO_ROOT / "target" / "test-artifacts")) / "dashboard"
SECRET = "s3cr3t-value-never-shown-7f1c"

APP = '''
import logging
import os

log = logging.getLogger("app.web")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/say/"):
        word = path[len("/say/"):]
        if word.startswith("bad"):
            log.error("dashboard test %s", word)
        else:
            log.info("dashboard test %s", word)
    body = ("%s %s" % (os.environ["BERTH_APP"], os.environ["BERTH_VERSION"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

BROKEN = '''
raise RuntimeError("this version cannot start: missing SETTING")
'''

# Apps of this module only (the MariaDB is shared with other suites).
OWNED, OTHER = "dashown", "dashother"


class Site:
    """The platform, its dashboard's address and the tokens the tests sign in with."""

    def __init__(self, p: Platform, apps_dir: Path) -> None:
        self.p = p
        self.base = f"http://127.0.0.1:{p.ports['dashboard']}"
        self.apps_dir = apps_dir
        self.operator = (p.tmp / "berthd" / "operator-token").read_text().strip()
        self.owner = p.create_app(OWNED)
        self.other = p.create_app(OTHER)

    def deploy(self, version: str, main: str = APP, ok: bool = True) -> None:
        d = write_app(self.apps_dir, OWNED, version, main, services=("cache", "logs"))
        self.p.deploy(d, ok=ok)

    def http(self, path: str, token: str | None = None, cookie: str | None = None,
             data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if cookie:
            req.add_header("Cookie", cookie)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")


@pytest.fixture(scope="module")
def site(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} does not exist: apt-get install chromium (scripts/test does)")
    apps_dir = tmp_path_factory.mktemp("dash-apps")
    os.chmod(apps_dir, 0o755)
    with running(Path(pytestconfig.getoption("--bin-dir"))) as p:
        s = Site(p, apps_dir)
        for args, stdin in ((("GREETING=hello-from-config",), None),
                            (("--secret", "API_KEY"), SECRET + "\n")):
            done = p.run("config", "set", OWNED, *args, stdin=stdin)
            assert done.returncode == 0, done.stderr
        s.deploy("1.0.0")
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-extensions"],
        )
        yield b
        b.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(browser: Browser, site: Site, token: str, **context: Any) -> tuple[BrowserContext, Page]:
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    page.goto(site.base + "/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    return ctx, page


def unlabelled_fields(page: Page) -> list[str]:
    """Visible form fields without a label (by for=, aria-label or aria-labelledby)."""
    result: list[str] = page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter(el =>
        !(el.labels && el.labels.length) && !el.getAttribute('aria-label') &&
        !el.getAttribute('aria-labelledby')).map(el => el.outerHTML)""")
    return result


# -- sign in and see the apps ---------------------------------------------------------------

def test_sign_in_and_see_every_app(site: Site, browser: Browser) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(site.base + "/apps/" + OWNED)
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fapps%2F" + OWNED))
    shot(page, "01-sign-in")
    assert unlabelled_fields(page) == []
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not an operator token or an app's token")
    # Keyboard only: focus the field, type, Enter.
    page.get_by_label("Token").focus()
    page.keyboard.type(site.operator)
    page.keyboard.press("Enter")
    # Back where the user was going.
    expect(page).to_have_url(site.base + "/apps/" + OWNED)
    page.get_by_role("link", name="Berth").click()
    expect(page.get_by_role("heading", name="Apps", exact=True)).to_be_visible()
    rows = page.locator("#apps tbody tr")
    expect(page.locator(f'#apps tr[data-app="{OWNED}"]')).to_contain_text("1.0.0")
    expect(page.locator(f'#apps tr[data-app="{OWNED}"]')).to_contain_text("1 of 1 healthy")
    expect(page.locator(f'#apps tr[data-app="{OTHER}"]')).to_contain_text("not deployed")
    assert rows.count() >= 2
    shot(page, "02-apps")
    # The session cookie is HttpOnly and SameSite=Strict: scripts cannot read it.
    cookies = ctx.cookies()
    session = [c for c in cookies if c["name"] == "berth_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    ctx.close()


def test_app_page_shows_status_versions_config_and_usage(site: Site, browser: Browser) -> None:
    # A request through the router, so there is a request rate to show.
    site.p.get(OWNED, "/")
    ctx, page = sign_in(browser, site, site.operator)
    page.goto(site.base + "/apps/" + OWNED)
    expect(page.locator("#live-version")).to_contain_text("1.0.0")
    status = page.locator("#status")
    expect(status).to_contain_text("1 of 1 healthy")
    expect(status.locator("table")).to_contain_text("running")
    expect(page.locator('#versions tr[data-version="1.0.0"]')).to_contain_text("live")
    expect(page.locator("#config")).to_contain_text("hello-from-config")
    expect(page.locator("#config")).to_contain_text("API_KEY")
    # Usage against quota: bars once sampled, charts once there are two samples.
    expect(page.locator('#usage li[data-resource="cache"] meter')).to_be_visible(timeout=20_000)
    expect(page.locator('#usage li[data-resource="logs"] meter')).to_be_visible()
    expect(page.locator('#usage li[data-resource="database"]')).to_contain_text("Database size")
    expect(page.locator('#usage li[data-resource="cache"] svg.chart')).to_be_visible(timeout=20_000)
    label = page.locator('#usage li[data-resource="cache"] svg.chart').get_attribute("aria-label")
    assert label and label.startswith("Cache memory over the last") and "quota 64.0 MiB" in label
    expect(page.locator('#usage li[data-resource="cache"] .usage-value')).to_contain_text("of 64.0 MiB")
    shot(page, "03-app")
    assert SECRET not in page.content()
    ctx.close()
    # The same through the JSON API.
    code, body = site.http(f"/api/apps/{OWNED}", token=site.operator)
    assert code == 200, body
    view = json.loads(body)
    assert view["status"]["live"]["version"] == "1.0.0"
    assert view["usage"]["resources"]["cache"]["quota"] == 64 << 20
    assert {"key": "API_KEY", "secret": True} in view["config"]
    assert SECRET not in body


# -- a deploy appears live ------------------------------------------------------------------

def test_a_deploy_appears_live_without_a_reload(site: Site, browser: Browser) -> None:
    ctx, page = sign_in(browser, site, site.operator)
    page.goto(site.base + "/apps/" + OWNED)
    expect(page.locator("#live-version")).to_contain_text("1.0.0")
    page.evaluate("window.__notReloaded = true")
    deploy = threading.Thread(target=site.deploy, args=("1.1.0",))
    deploy.start()
    try:
        expect(page.locator("#live-version")).to_contain_text("1.1.0", timeout=60_000)
    finally:
        deploy.join(120)
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator('#versions tr[data-version="1.1.0"]')).to_contain_text("live")
    expect(page.locator('#versions tr[data-version="1.0.0"]')).to_contain_text(
        re.compile("warm|retired"))
    expect(page.locator("#events")).to_contain_text("release.create")
    # Versions by semver, newest first.
    order = page.locator("#versions tbody th").all_inner_texts()
    assert order.index("1.1.0") < order.index("1.0.0")
    shot(page, "04-deploy-live")
    ctx.close()


def test_a_failed_version_says_why(site: Site, browser: Browser) -> None:
    site.deploy("1.1.1", main=BROKEN, ok=False)
    ctx, page = sign_in(browser, site, site.operator)
    page.goto(site.base + "/apps/" + OWNED)
    row = page.locator('#versions tr[data-version="1.1.1"]')
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("this version cannot start: missing SETTING")
    expect(page.locator("#live-version")).to_contain_text("1.1.0")
    expect(page.locator("#events")).to_contain_text("deploy.fail")
    shot(page, "05-failed-version")
    ctx.close()
    versions = site.p.berth("versions", OWNED)
    failed = [v for v in versions if v["version"] == "1.1.1"]
    assert failed and failed[0]["state"] == "failed" and "missing SETTING" in failed[0]["error"]


# -- roll back with the button ----------------------------------------------------------------

def test_roll_back_with_the_button(site: Site, browser: Browser) -> None:
    ctx, page = sign_in(browser, site, site.operator)
    page.goto(site.base + "/apps/" + OWNED)
    expect(page.locator("#live-version")).to_contain_text("1.1.0")
    first = page.locator("#releases tbody tr").filter(has_text="1.0.0").first
    release = first.get_attribute("data-release")
    first.get_by_role("link", name=f"Roll back to release {release}").click()
    # A confirmation first; Cancel changes nothing.
    expect(page.get_by_role("heading")).to_contain_text(f"Roll back {OWNED} to {release}?")
    assert unlabelled_fields(page) == []
    shot(page, "06-rollback-confirm")
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("#live-version")).to_contain_text("1.1.0")
    first = page.locator(f'#releases tr[data-release="{release}"]')
    first.get_by_role("link", name=f"Roll back to release {release}").click()
    page.get_by_label("Reason (kept in the event history)").fill("dashboard test rollback")
    page.get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("status").first).to_contain_text("Rolled back", timeout=60_000)
    expect(page.locator("#live-version")).to_contain_text("1.0.0")
    shot(page, "07-rolled-back")
    ctx.close()
    assert site.p.status(OWNED)["live"]["version"] == "1.0.0"
    assert site.p.get(OWNED, "/")[1] == f"{OWNED} 1.0.0"
    events = site.p.berth("events", OWNED)
    events = events["events"] if isinstance(events, dict) else events
    rollback = [e for e in events if e["action"] == "release.create" and "rollback" in e["detail"]]
    assert rollback and "dashboard test rollback" in rollback[0]["detail"]
    assert rollback[0]["actor"].startswith("operator:")


def test_promote_with_the_button(site: Site, browser: Browser) -> None:
    ctx, page = sign_in(browser, site, site.operator)
    page.goto(site.base + "/apps/" + OWNED)
    page.locator('#versions tr[data-version="1.1.0"]').get_by_role(
        "link", name="Promote 1.1.0 to live").click()
    expect(page.get_by_role("heading")).to_contain_text(f"Promote 1.1.0 of {OWNED}?")
    page.get_by_role("button", name="Promote").click()
    expect(page.get_by_role("status").first).to_contain_text("Promoted 1.1.0", timeout=60_000)
    expect(page.locator("#live-version")).to_contain_text("1.1.0")
    ctx.close()


def test_a_form_without_its_csrf_token_is_refused(site: Site, browser: Browser) -> None:
    ctx, page = sign_in(browser, site, site.operator)
    page.goto(site.base + "/apps/" + OWNED)
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in ctx.cookies())
    ctx.close()
    form = urllib.parse.urlencode({"target": "v1", "csrf": "forged"}).encode()
    code, body = site.http(f"/apps/{OWNED}/rollback", cookie=cookie, data=form,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 403 and "This form has expired" in body
    assert site.p.status(OWNED)["live"]["version"] == "1.1.0"


# -- logs ---------------------------------------------------------------------------------------

def test_tail_logs_with_filters(site: Site, browser: Browser) -> None:
    site.p.get(OWNED, "/say/before-page")
    ctx, page = sign_in(browser, site, site.operator)
    eventually(lambda: "before-page" in site.http(
        f"/apps/{OWNED}/logs", token=site.operator)[1], "the first log line", 20)
    page.goto(site.base + f"/apps/{OWNED}/logs")
    assert unlabelled_fields(page) == []
    expect(page.locator("#log-lines")).to_contain_text("dashboard test before-page")
    expect(page.locator("#log-state")).to_contain_text("Following the logs", timeout=10_000)
    for word in ("live-one", "live-two"):
        site.p.get(OWNED, f"/say/{word}")
    expect(page.locator("#log-lines")).to_contain_text("dashboard test live-two", timeout=20_000)
    expect(page.locator("#log-lines")).to_contain_text("dashboard test live-one")
    shot(page, "08-logs")
    # Filters: errors only, then text.
    page.get_by_label("Level at least").select_option("error")
    page.get_by_role("button", name="Filter").click()
    site.p.get(OWNED, "/say/bad-thing")
    site.p.get(OWNED, "/say/fine-thing")
    expect(page.locator("#log-lines")).to_contain_text("dashboard test bad-thing", timeout=20_000)
    site.p.get(OWNED, "/say/bad-later")
    expect(page.locator("#log-lines")).to_contain_text("bad-later", timeout=20_000)
    expect(page.locator("#log-lines")).not_to_contain_text("fine-thing")
    expect(page.locator("#log-lines")).not_to_contain_text("live-one")
    page.get_by_label("Level at least").select_option("")
    page.get_by_label("Text").fill("live-two")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#log-lines tr")
    # The app's line, and the router's access log line of that request.
    expect(rows.filter(has_text="dashboard test live-two")).to_have_count(1)
    assert all("live-two" in row for row in rows.all_inner_texts())
    shot(page, "09-logs-filtered")
    ctx.close()


def read_sse(site: Site, path: str, token: str, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The first `count` `log` events of a stream."""
    conn = http.client.HTTPConnection("127.0.0.1", site.p.ports["dashboard"], timeout=20)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}", **headers})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    assert resp.getheader("Content-Type", "").startswith("text/event-stream")
    events: list[dict[str, Any]] = []
    ident, data = None, None
    while len(events) < count:
        line = resp.fp.readline().decode().rstrip("\r\n")
        if line.startswith("id:"):
            ident = int(line[3:].strip())
        elif line.startswith("data:"):
            data = json.loads(line[5:].strip())
        elif line == "" and data is not None:
            assert data["seq"] == ident
            events.append(data)
            ident, data = None, None
    conn.close()
    return events


def test_a_resumed_log_stream_has_no_gap(site: Site) -> None:
    for i in range(3):
        site.p.get(OWNED, f"/say/resume-{i}")
    code, body = site.http(f"/apps/{OWNED}/logs?grep=resume-", token=site.operator)
    assert code == 200
    eventually(lambda: "resume-2" in site.http(f"/apps/{OWNED}/logs?grep=resume-",
                                               token=site.operator)[1], "resume-2 stored", 20)
    first = read_sse(site, f"/apps/{OWNED}/logs/stream?cursor=0&grep=resume-", site.operator, {}, 3)
    assert [e["message"] for e in first] == [f"dashboard test resume-{i}" for i in range(3)]
    # Reconnecting with Last-Event-ID (what EventSource does) continues right after it.
    again = read_sse(site, f"/apps/{OWNED}/logs/stream?grep=resume-", site.operator,
                     {"Last-Event-ID": str(first[0]["seq"])}, 2)
    assert [e["seq"] for e in again] == [e["seq"] for e in first[1:]]


# -- an app owner sees their app only ---------------------------------------------------------

def test_an_app_owner_sees_only_their_app(site: Site, browser: Browser) -> None:
    ctx, page = sign_in(browser, site, site.owner)
    # Straight to their app.
    expect(page).to_have_url(site.base + "/apps/" + OWNED)
    expect(page.get_by_text(f"Signed in as {OWNED} (token")).to_be_visible()
    expect(page.locator("#live-version")).to_be_visible()
    assert SECRET not in page.content()
    shot(page, "10-owner-app")
    for path in (f"/apps/{OTHER}", f"/apps/{OTHER}/logs", f"/apps/{OTHER}/promote?target=1.0.0",
                 f"/apps/{OTHER}/rollback?release=v1", f"/events?app={OTHER}",
                 "/apps/no-such-app"):
        resp = page.goto(site.base + path)
        assert resp is not None and resp.status == 403, path
        expect(page.get_by_role("alert")).to_contain_text("may not")
    shot(page, "11-owner-refused")
    # The same answer for an app that exists and one that does not.
    page.goto(site.base + f"/apps/{OTHER}")
    refused_existing = page.get_by_role("alert").inner_text().replace(OTHER, "X")
    page.goto(site.base + "/apps/no-such-app")
    assert page.get_by_role("alert").inner_text().replace("no-such-app", "X") == refused_existing
    # The event history shows their app's events only.
    page.goto(site.base + "/events")
    apps_seen = {a for a in page.locator("tbody tr").all_inner_texts()}
    assert apps_seen and not any(OTHER in row for row in apps_seen)
    # The session's API: another app is refused; the list holds their app alone.
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in ctx.cookies())
    ctx.close()
    for path in (f"/api/apps/{OTHER}", f"/api/apps/{OTHER}/events", f"/apps/{OTHER}/live",
                 f"/apps/{OTHER}/logs/stream"):
        code, body = site.http(path, cookie=cookie)
        assert code == 403, (path, code, body)
    code, body = site.http("/api/apps", cookie=cookie)
    assert code == 200 and [a["name"] for a in json.loads(body)["apps"]] == [OWNED]
    # And with the token as a Bearer header; a POST to another app changes nothing.
    code, _ = site.http(f"/api/apps/{OTHER}", token=site.owner)
    assert code == 403
    code, _ = site.http(f"/apps/{OTHER}/rollback", token=site.owner, data=b"target=v1",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 403
    code, _ = site.http(f"/api/apps/{OWNED}", token=site.owner)
    assert code == 200
    # No token at all: 401 for the API, the sign-in page for pages.
    assert site.http("/api/apps")[0] == 401
    code, _ = site.http("/")
    assert code == 303


def test_a_revoked_token_ends_its_session(site: Site, browser: Browser) -> None:
    made = site.p.berth("tokens", "create", OWNED, "--label", "short-lived")
    token = made["secret"]
    ctx, page = sign_in(browser, site, token)
    expect(page).to_have_url(site.base + "/apps/" + OWNED)
    site.p.berth("tokens", "revoke", OWNED, made["token"]["id"])
    # The live stream notices and sends the browser to the sign-in page.
    expect(page).to_have_url(re.compile("/login"), timeout=15_000)
    ctx.close()


# -- accessibility ------------------------------------------------------------------------------

CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!own || style.visibility === "hidden" || el.getClientRects().length === 0) continue;
    if (el.closest(".skip")) continue;
    const a = lum(rgb(style.color).slice(0, 3)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 ||
      (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return bad;
}"""


def test_contrast_and_keyboard(site: Site, browser: Browser) -> None:
    """WCAG AA contrast for every text on each page; the first Tab reaches the skip link, and
    every action link (logs, promote, roll back) is reachable by keyboard."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(site.base + "/login")
    assert page.evaluate(CONTRAST) == []
    ctx.close()
    ctx, page = sign_in(browser, site, site.operator)
    for path in ("/", f"/apps/{OWNED}", f"/apps/{OWNED}/logs", "/events",
                 f"/apps/{OWNED}/rollback?release=v1"):
        page.goto(site.base + path)
        assert page.evaluate(CONTRAST) == [], path
    page.goto(site.base + f"/apps/{OWNED}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    focusable = []
    for _ in range(60):
        page.keyboard.press("Tab")
        focusable.append(page.evaluate("document.activeElement.getAttribute('aria-label') || "
                                       "document.activeElement.textContent"))
    # Every action link of the page (promote, roll back) is reached by Tab.
    actions = page.evaluate("[...document.querySelectorAll('main a.button')]"
                            ".map(a => a.getAttribute('aria-label') || a.textContent)")
    assert "Logs" in actions and set(actions) <= set(focusable), (actions, focusable)
    ctx.close()


# -- phone ----------------------------------------------------------------------------------------

def test_usable_on_a_phone(site: Site, browser: Browser) -> None:
    ctx, page = sign_in(browser, site, site.operator, viewport={"width": 390, "height": 844},
                        is_mobile=True, has_touch=True, device_scale_factor=2)
    for path, name in ((f"/apps/{OWNED}", "12-phone-app"), ("/", "13-phone-apps"),
                       (f"/apps/{OWNED}/logs", "14-phone-logs"), ("/events", "15-phone-events")):
        page.goto(site.base + path)
        page.wait_for_load_state("networkidle") if path == "/events" else None
        # Wide tables scroll inside their own region; the page itself does not scroll sideways.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
        shot(page, name)
    ctx.close()


# -- the docs' config sample ----------------------------------------------------------------------

def test_the_config_sample_of_the_docs_page_loads(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    """docs/ops/dashboard.md's [dashboard] sample is accepted by berthd as it is shown."""
    import subprocess
    import tomllib

    from docs.fences import fenced_blocks

    page = REPO_ROOT / "docs" / "ops" / "dashboard.md"
    samples = [body for _, lang, body in fenced_blocks(page) if lang == "toml"]
    assert len(samples) == 1
    (tmp_path / "berthd.toml").write_text(samples[0])
    done = subprocess.run([str(Path(pytestconfig.getoption("--bin-dir")) / "berthd"), "--config",
                           str(tmp_path / "berthd.toml"), "--print-config"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    effective = tomllib.loads(done.stdout)["dashboard"]
    for key, value in tomllib.loads(samples[0])["dashboard"].items():
        assert effective[key] == value, key
