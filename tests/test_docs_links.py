"""Every relative link of README.md and docs/*.md reaches a file of the repository, and its #fragment a heading there.

Anchors are GitHub's: the heading's text lower-cased, punctuation dropped (letters, digits, spaces, hyphens and
underscores stay), spaces turned into hyphens, and -1, -2... added to repeats. Links in code (fenced blocks and
`inline code`) are not links, nor are absolute URLs.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before repeats are numbered)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_there_are_pages_and_links_to_check():
    assert (ROOT / "docs" / "configuration.md") in PAGES
    assert any(relative_links(page) for page in PAGES)


@pytest.mark.parametrize("heading, anchor", [
    ("Set up on a fresh machine", "set-up-on-a-fresh-machine"),
    ("Trusting maps: evaluate_attribution", "trusting-maps-evaluate_attribution"),
    ("Security: keys, tenants, limits and untrusted files", "security-keys-tenants-limits-and-untrusted-files"),
    ("HTTP: `bench/bench_http.py`", "http-benchbench_httppy"),
    ("bench_style.py — Gatys style transfer vs pastiche", "bench_stylepy--gatys-style-transfer-vs-pastiche"),
])
def test_anchors_are_githubs(heading, anchor):
    assert slug(heading) == anchor


def test_repeated_headings_are_numbered(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Notes\n\n```\n# not a heading\n```\n")
    assert anchors(page) == {"notes", "notes-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_heading(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading #{fragment} in {linked.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"
