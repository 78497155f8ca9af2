"""The starter run's worker (`agent.kind: command`, written by `rlm init`): real measurements, no model.

It reads the prompt on stdin as an agent would, measures the repository's tracked files
(`git ls-files`, else every file outside .git/ and .rlm/) and writes a Markdown report with the
sections rlm requires to $RLM_REPORT_PATH. The same repository gives the same report, byte for
byte, so a rerun changes nothing you committed. Replace it with `kind: codex` or `kind: claude`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

SKIP = (".git", ".rlm")
ENTRY_NAMES = ("pyproject.toml", "setup.py", "setup.cfg", "package.json", "Cargo.toml", "go.mod", "Makefile",
               "CMakeLists.txt", "dodo.py", "__main__.py", "main.py", "main.go", "main.rs", "Dockerfile")


def tracked_files(root: Path) -> list[str]:
    try:
        listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # untracked too
        out = subprocess.run(listing, cwd=root, capture_output=True, check=True).stdout
        names = [n for n in out.decode("utf-8", "replace").split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(n for n in names if n.split("/")[0] not in SKIP and (root / n).is_file())


def size(root: Path, name: str) -> int:
    try:
        return (root / name).stat().st_size
    except OSError:
        return 0


def inventory(root: Path, files: list[str]) -> list[str]:
    kinds = Counter(Path(n).suffix or "(none)" for n in files)
    lines = [f"- {len(files)} files in the repository (git-ignored files and .rlm/ not counted)."]
    lines += [f"- `{ext}`: {count} files" for ext, count in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]
    largest = sorted(files, key=lambda n: (-size(root, n), n))[:5]
    lines += [f"- largest: `{n}` ({size(root, n)} bytes)" for n in largest]
    return lines


def entry_points(files: list[str]) -> list[str]:
    found = [n for n in files if Path(n).name in ENTRY_NAMES]
    return [f"- `{n}`" for n in found] or ["- none of the usual entry-point files are tracked"]


def recount(root: Path, files: list[str], report_dir: Path) -> list[str]:
    report = report_dir / "inventory.md"
    try:
        text = report.read_text(encoding="utf-8")
    except OSError:
        return [f"- no inventory report at `{report.relative_to(root).as_posix()}` to check"]
    match = re.search(r"^- (\d+) files in the repository ", text, re.M)
    claimed = int(match.group(1)) if match else None
    verdict = "holds" if claimed == len(files) else "does not hold"
    return [f"- the inventory claims {claimed} files; a recount finds {len(files)}: the claim {verdict}."]


def main() -> int:
    sys.stdin.read()  # the prompt: this worker's task comes from its id
    root = Path.cwd()
    worker_id = os.environ["RLM_WORKER_ID"]
    report_path = Path(os.environ["RLM_REPORT_PATH"])
    files = tracked_files(root)
    if worker_id == "recount":
        findings = recount(root, files, report_path.parent)
    elif worker_id == "entry-points":
        findings = entry_points(files)
    else:
        findings = inventory(root, files)
    text = "\n".join([
        f"# {worker_id}", "",
        "## What I did", "", "Listed the repository's tracked files and measured them; no file was changed.", "",
        "## Key findings", "", *findings, "",
        "## Deferred opportunities", "", "- none: this is the bundled starter worker.", "",
        "## Contract Compliance", "", "Read-only on the repository; wrote only this report.", "",
    ])
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
