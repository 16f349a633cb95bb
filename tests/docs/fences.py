"""Fenced code blocks of a Markdown page, as the docs tests read them (``` or ~~~ fences,
closed by the same character at least as many times, with no info string)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)")


def closes(line: str, fence: str) -> bool:
    """Whether `line` closes a block opened with `fence`."""
    m = FENCE_RE.match(line)
    if m is None or m.group(3):
        return False
    return m.group(2)[0] == fence[0] and len(m.group(2)) >= len(fence)


def fenced_blocks(page: Path) -> Iterator[tuple[int, str, str]]:
    """(line of the opening fence, 1-based; language, lower case, without `,attributes`;
    body) of every fenced block of `page`."""
    lines = page.read_text().splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(2), m.group(3).lower().split(",")[0], i
        body: list[str] = []
        i += 1
        while i < len(lines) and not closes(lines[i], fence):
            body.append(lines[i])
            i += 1
        i += 1
        yield start + 1, lang, "".join(body)
