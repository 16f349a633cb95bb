"""The documentation site's structure and its offline link checker (scripts/check-book-links).

scripts/test builds the site with mdBook and runs the checker on it; these tests prove that
the checker finds what it must (a missing page, a missing anchor, a link leaving the site) and
that SUMMARY.md lists every page under docs/, so no page is left out of the site.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CHECKER = REPO / "scripts" / "check-book-links"


def check(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(site)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_accepts_good_links(tmp_path: Path) -> None:
    write(
        tmp_path / "index.html",
        '<a href="a/b.html#x">b</a> <a href="#top">t</a><h1 id="top">T</h1>',
    )
    write(
        tmp_path / "a/b.html",
        '<h2 id="x">x</h2><a href="../index.html">home</a><img src="../i.png">',
    )
    write(tmp_path / "i.png", "png")
    r = check(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_checker_finds_broken_links(tmp_path: Path) -> None:
    write(
        tmp_path / "index.html",
        '<a href="missing.html">m</a>\n<a href="a.html#nope">n</a>\n'
        '<a href="../../etc/passwd">x</a>\n'
        '<a href="#gone">g</a>\n<a href="https://example.com/">e</a>',
    )
    write(tmp_path / "a.html", '<h1 id="yes">y</h1>')
    r = check(tmp_path)
    assert r.returncode == 1
    out = r.stdout
    assert "missing.html: no such file" in out
    assert "no #nope in a.html" in out
    assert "leaves the site" in out
    assert "no #gone in index.html" in out
    assert "4 broken" in out
    assert "example.com" not in out.replace("1 external", "")


def test_checker_fails_on_an_empty_site(tmp_path: Path) -> None:
    r = check(tmp_path)
    assert r.returncode == 1
    assert "build the book first" in r.stderr


def summary_pages() -> set[str]:
    text = (DOCS / "SUMMARY.md").read_text()
    return set(re.findall(r"\]\(([^)]+\.md)\)", text))


def test_summary_lists_every_page_and_only_existing_ones() -> None:
    listed = summary_pages()
    missing = sorted(p for p in listed if not (DOCS / p).exists())
    assert not missing, f"SUMMARY.md lists pages that do not exist: {missing}"
    pages = {
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if p.name != "SUMMARY.md" and "examples" not in p.relative_to(DOCS).parts[:1]
    }
    unlisted = sorted(pages - listed)
    assert not unlisted, f"pages under docs/ that SUMMARY.md does not list (add them): {unlisted}"


def test_pages_link_only_inside_the_site() -> None:
    """A relative link out of docs/ works on GitHub but is a 404 on the site."""
    bad = []
    for page in DOCS.rglob("*.md"):
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if re.match(r"[a-z]+:", target):
                continue
            resolved = (page.parent / target).resolve()
            if DOCS not in resolved.parents:
                bad.append(f"{page.relative_to(REPO)}: {target}")
    assert not bad, "links leaving docs/ (include the file or link a page about it):\n" + "\n".join(
        bad
    )
