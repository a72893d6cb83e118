"""Every link into the documentation resolves: the file exists and so does its anchor.

The README and docs/ link to each other's sections (``[x](linkage-spec.md#the-reference-…)``)
and code comments cite them (``docs/performance-history.md#…``); when a section moves or is
renamed, these links break silently. Anchors are GitHub's: the heading in lower case,
punctuation other than ``-`` and ``_`` dropped, spaces as ``-``, a repeated heading with
``-1``, ``-2`` after it.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CITED_ANCHOR = re.compile(r"(?<![\w/(.-])((?:docs/)?[\w.-]+\.md)#([\w-]+)")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def _anchors(path: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            slug = _slug(match.group(1))
            if slug in seen:
                seen[slug] += 1
                found.add(f"{slug}-{seen[slug]}")
            else:
                seen[slug] = 0
                found.add(slug)
    return frozenset(found)


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _citing_files() -> list[Path]:
    files = [ROOT / "Makefile", *sorted((ROOT / "keys" / "specs").glob("*.toml"))]
    for package in ("bench", "broker", "client_sdk", "keys", "synth", "tests"):
        files += sorted((ROOT / package).rglob("*.py"))
    return [path for path in files if path.is_file()]


def _problem(source: Path, target: Path, anchor: str, text: str) -> str | None:
    where = source.relative_to(ROOT)
    if not target.is_file():
        return f"{where}: {text}: no such file"
    if anchor and target.suffix == ".md" and anchor not in _anchors(target):
        return f"{where}: {text}: no such anchor in {target.relative_to(ROOT)}"
    return None


def test_every_markdown_link_resolves() -> None:
    problems = []
    for source in _markdown_files():
        for match in _MARKDOWN_LINK.finditer(source.read_text(encoding="utf-8")):
            link = match.group(1)
            if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
                continue
            path, _, anchor = link.partition("#")
            target = (source.parent / path).resolve() if path else source
            problem = _problem(source, target, anchor, link)
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


def test_every_cited_anchor_resolves() -> None:
    problems = []
    for source in _citing_files():
        for match in _CITED_ANCHOR.finditer(source.read_text(encoding="utf-8")):
            path, anchor = match.group(1), match.group(2)
            candidates = [source.parent / path, ROOT / path, ROOT / "docs" / path]
            target = next((c for c in candidates if c.is_file()), candidates[-1])
            problem = _problem(source, target, anchor, match.group(0))
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)
