"""Rules on the source itself: modules keep to one concern (none over MAX_LINES lines), and comments and
docstrings carry no tracker numbers (an issue number says nothing to a reader of the code)."""

from __future__ import annotations

import re
from pathlib import Path

import rlm_tasks

REPO = Path(rlm_tasks.__file__).parent.parent
PACKAGE = REPO / "rlm_tasks"
MAX_LINES = 400
SCANNED = ("rlm_tasks", "tests", "bench")
TEXT_SUFFIXES = (".py", ".sh", ".j2", ".yaml", ".yml", ".toml", ".cfg")
# the word, then a number (with or without #); built from parts so this file does not match itself
TRACKER = re.compile(r"\bissues?" + r"\s*#?\d+", re.IGNORECASE)


def long_modules(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        with path.open("rb") as handle:
            count = sum(1 for _ in handle)
        if count > MAX_LINES:
            found.append(f"{path.relative_to(package.parent).as_posix()}: {count} lines")
    return found


def tracker_numbers(roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix not in TEXT_SUFFIXES or "__pycache__" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                match = TRACKER.search(line)
                if match:
                    found.append(f"{path.relative_to(REPO).as_posix()}:{number}: {match.group()}")
    return found


def test_no_tracker_numbers_in_code() -> None:
    assert tracker_numbers([REPO / name for name in SCANNED]) == []


def test_a_tracker_number_is_found() -> None:
    assert TRACKER.search("see issue" + " 12 for why")
    assert TRACKER.search("(Issue" + " #7)")
    assert TRACKER.search("issues" + " 9")
    assert not TRACKER.search("an issue with 12 tasks")
    assert not TRACKER.search("tissue 3")


def test_no_module_is_over_the_limit() -> None:
    assert long_modules(PACKAGE) == []


def test_a_long_module_is_named(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "room").mkdir(parents=True)
    (package / "room" / "short.py").write_text("x = 1\n" * MAX_LINES)
    (package / "room" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert long_modules(package) == [f"pkg/room/long.py: {MAX_LINES + 1} lines"]
