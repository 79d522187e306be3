"""The docs stay true without a site generator: every relative link and #anchor in README.md and docs/*.md
resolves, so does every repository path quoted in a code span, the README stays short, its module map names exactly the packages and top-level modules of
loopml/, and its command table lists every ``loopml`` command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted([README, *(ROOT / "docs").glob("*.md")])
MAX_README_LINES = 200
# Pages another branch of issue 17 adds (docs/localstack.md comes with the LocalStack work): a link to one
# is checked once it exists. Remove an entry when its page lands.

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# a repository path quoted in prose: `loopml/storage/layout.py`, `tests/integration/`, `.ci/run`
REPO_PATH = re.compile(r"(?<![\w./-])((?:loopml|handlers|flows|tests|infra|bench|localstack|examples|\.ci|\.github)/[\w./-]*)")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``#`` there is a comment, a ``[x](y)`` is code)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (``-`` and ``_`` kept), spaces as ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()  # a linked heading anchors on its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page; repeated headings get GitHub's ``-1``, ``-2`` suffixes."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The link targets of a page's prose (not inside code blocks or code spans)."""
    found = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        found += LINK.findall(CODE_SPAN.sub("", line))
    return found


def broken(page: Path, target: str) -> str | None:
    """Why ``target`` (as written in ``page``) points nowhere, or None when it resolves."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
        return None
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.exists():
        return f"{target}: no such file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}"
    return None


def section(text: str, title: str) -> list[str]:
    """The lines of a ``## title`` section, up to the next ``## `` heading (code blocks included)."""
    lines = text.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_slug_follows_github() -> None:
    assert slug("The project spec: `project.yaml`") == "the-project-spec-projectyaml"
    assert slug("Errors, deadlines, stopping") == "errors-deadlines-stopping"
    assert slug("How to add …") == "how-to-add-"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems = [why for target in links(page) if (why := broken(page, target))]
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_repository_path_exists(page: Path) -> None:
    quoted = {m.rstrip(".") for line in prose_lines(page.read_text(encoding="utf-8"))
              for span in CODE_SPAN.findall(line) for m in REPO_PATH.findall(span)}
    missing = sorted(p for p in quoted if not (ROOT / p).exists())
    assert not missing, f"{page.relative_to(ROOT)} names {missing}, which do not exist"


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_links_every_docs_page() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(README)}
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if p.resolve() not in linked]
    assert not missing, f"README.md links no docs page {missing}"


def test_module_map_names_exactly_the_packages_and_modules_of_loopml() -> None:
    mapped = section(README.read_text(encoding="utf-8"), "Module map")
    inside = [m.group(1) for line in mapped if (m := re.match(r"^  (\w+/|\w+\.py)", line))]
    packages = {p.parent.name + "/" for p in (ROOT / "loopml").glob("*/__init__.py")}
    modules = {p.name for p in (ROOT / "loopml").glob("*.py")}
    assert set(n for n in inside if n.endswith("/")) == packages, "README module map vs loopml/ packages"
    assert set(n for n in inside if n.endswith(".py")) == modules, "README module map vs loopml/*.py"
    outside = [m.group(1) for line in mapped if (m := re.match(r"^([\w.-]+/?)\s", line))]
    missing = [name for name in outside if not (ROOT / name).exists()]
    assert not missing, f"README module map names {missing}, which do not exist"


def test_command_table_lists_every_command() -> None:
    from loopml.cli.main import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    table = "\n".join(section(README.read_text(encoding="utf-8"), "Commands"))
    missing = [name for name in sub.choices if f"`loopml {name}" not in table]
    assert not missing, f"README command table misses {missing}"
