"""The README and docs/ point only at things that exist: every relative link resolves (file and #anchor),
and every repository path they name in a code span is a file or folder of this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Repo

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "ARCHITECTURE.md", *(ROOT / "docs").glob("*.md"),
                *[p for p in [ROOT / "CONTRIBUTING.md"] if p.exists()]])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# Code spans naming a path in one of the repository's own top-level folders.
REPO_PATH = re.compile(r"`((?:rlm_tasks|tests|bench|examples|docs|\.ci)/[^`\s*{}<>]*)`")


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", _without_code_blocks(page.read_text()), flags=re.M)
    return {_slug(h) for h in headings}


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(_without_code_blocks(page.read_text())):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert broken == [], f"{_rel(page)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_named_repository_path_exists(page: Path) -> None:
    missing = [p for p in REPO_PATH.findall(page.read_text()) if not (ROOT / p.rstrip("/.,")).exists()]
    assert missing == [], f"{_rel(page)} names paths that do not exist: {missing}"


def test_slug_matches_github() -> None:
    assert _slug("Exit codes") == "exit-codes"
    assert _slug("Running on a cluster (Dask)") == "running-on-a-cluster-dask"
    assert _slug("Many tasks from one: `foreach`") == "many-tasks-from-one-foreach"


def test_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_readme_sample_run_validates(repo: Repo) -> None:
    """The README's 'A run in one screen' is a valid rlm.yaml, foreach and all."""
    sample = re.search(r"^```yaml\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    assert sample is not None
    for name in ("src/parser/lexer.py", "src/parser/rules/loops.py", "src/parser/rules/calls.py"):
        repo.write("", name)
    repo.write(sample.group(1))
    result = repo.rlm("validate")
    assert (result.code, result.err) == (0, "")
    assert "3 map tasks, 1 verify" in result.out
