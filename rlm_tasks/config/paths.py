"""Path rules: every path the runner reads or writes stays inside the repository, symlinks
followed; report_path names a file the run may own; inputs exist; watch globs stay out of the
machinery and are bounded.

Validation calls the `*_problem` functions; the runner calls `confined` at the moment of use,
because workers can create symlinks while the run goes.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

from rlm_tasks.config.ownership import GLOB_CHARS, compile_exact, repo_files
from rlm_tasks.errors import UserError, close_match
from rlm_tasks.layout import reports_rel

MACHINERY = (".git", ".rlm")  # never watched, never a report (except the run's report folder)
DODO_FILES = ("dodo.py",)
DOIT_CONFIG_FILES = ("doit.cfg", "pyproject.toml")  # doit reads them before any dodo.py: a report there breaks doit


class UnsafePath(UserError):
    """A path resolves outside the repository, or is a symlink or special file where a file is expected."""


def _inside(root: Path, real: str) -> bool:
    base = os.path.realpath(root)
    return real == base or real.startswith(base + os.sep)


def escape_problem(root: Path, rel: str, what: str) -> str | None:
    """A relative path whose existing part resolves (through symlinks) outside the repository."""
    if "\0" in rel:  # no system call takes it, so nothing to resolve; config/values.py reports the NUL
        return None
    literal = rel
    if GLOB_CHARS.search(rel):  # a glob: its literal directory prefix is what could be a link
        parts = rel.split("/")
        literal = "/".join(p for p in parts[: next(i for i, p in enumerate(parts) if GLOB_CHARS.search(p))])
    real = os.path.realpath(os.path.join(root, literal or "."))
    if not _inside(root, real):
        return f"{what} '{rel}' resolves outside the repository (through a symlink, to {real})"
    return None


def confined(root: Path, rel: str, what: str = "path") -> Path:
    """The absolute path of `rel`, checked now: it and every directory above it stay inside the repository.

    Raises UnsafePath; the caller fails the task (or the command) with its one-line message.
    """
    path = Path(root) / rel
    real = os.path.realpath(path)
    if not _inside(root, real):
        raise UnsafePath(f"{what} '{rel}' resolves outside the repository (to {real}); refusing to use it")
    return path


def regular_file_problem(path: Path) -> str | None:
    """Why `path` must not be read as a report: a symlink or a non-regular file (FIFO, device, directory)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "report is a symlink; it is not read through"
    if stat.S_ISDIR(st.st_mode):
        return "report path is a directory"
    if not stat.S_ISREG(st.st_mode):
        return "report is not a regular file"
    return None


def resolved_rel(root: Path, rel: str) -> str:
    """`rel` with every symlink in it followed, relative to the repository (itself when none is involved)."""
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(base, rel))
    if not _inside(root, real):
        return posixpath.normpath(rel)
    return Path(real).relative_to(base).as_posix() if real != base else "."


def report_path_problem(root: Path, rel: str, run_id: str, config_rel: str) -> str | None:
    """Why `rel` cannot be a task's report, or None."""
    problem = _report_rule(root, rel, f"'{rel}'", run_id, config_rel)
    target = resolved_rel(root, rel)
    if problem is None and target != posixpath.normpath(rel):  # a link inside the repository: judge where it leads
        problem = _report_rule(root, target, f"'{rel}' (through a symlink, '{target}')", run_id, config_rel)
    return problem


def _report_rule(root: Path, rel: str, shown: str, run_id: str, config_rel: str) -> str | None:
    if rel.endswith("/") or posixpath.normpath(rel) in (".", ""):
        return f"report_path {shown} names a directory"
    normal = posixpath.normpath(rel)
    parts = normal.split("/")
    if ".git" in parts:
        return f"report_path {shown} is inside .git/"
    reports_dir = f"{reports_rel(run_id)}/"
    if parts[0] == ".rlm" and not (normal.startswith(reports_dir) and "/" not in normal[len(reports_dir):]):
        return f"report_path {shown} is inside the run's machinery (.rlm/); only {reports_dir} is for reports"
    if normal == config_rel or normal in DODO_FILES:
        return f"report_path {shown} is the run's {'configuration' if normal == config_rel else 'dodo file'}"
    if normal in DOIT_CONFIG_FILES:
        return f"report_path {shown} is doit's configuration"
    escaped = escape_problem(root, rel, "report_path")
    if escaped:
        return escaped
    if os.path.isdir(os.path.join(root, rel)):
        return f"report_path {shown} names a directory"
    return None


def input_problem(root: Path, rel: str) -> str | None:
    if GLOB_CHARS.search(rel):
        return f"inputs entry '{rel}' is a glob; list it under watch: (globs are tracked there)"
    path = os.path.join(root, rel)
    if os.path.lexists(path):
        if not (os.path.isfile(path) or os.path.isdir(path)):  # a FIFO, a device, a symlink loop or a dangling link
            return f"inputs entry '{rel}' is not a regular file or a directory"
        return escape_problem(root, rel, "inputs entry")
    parent = os.path.dirname(path)
    try:
        names = os.listdir(parent)
    except OSError:
        names = []
    match = close_match(os.path.basename(rel), names)
    hint = f" (did you mean '{posixpath.join(posixpath.dirname(rel), match)}'?)" if match else ""
    return f"input '{rel}' does not exist{hint}"


def _machinery(rel: str) -> bool:
    return rel.split("/", 1)[0] in MACHINERY or "/.git/" in f"/{rel}"


def input_files(root: Path, rel: str) -> list[str]:
    """An input as files: itself, or every file under it when it is a directory (without .git/.rlm,
    without symlinks leading out), so a change anywhere below makes the task stale."""
    path = os.path.join(root, rel)
    if not os.path.isdir(path):
        return [rel]
    out = []
    for name in repo_files(root, [rel.rstrip("/") + "/**"]):
        full = os.path.join(root, name)
        if not _machinery(name) and os.path.isfile(full) and _inside(root, os.path.realpath(full)):
            out.append(name)
    return out


def watch_files(root: Path, pattern: str, excluded: frozenset[str] = frozenset()) -> list[str]:
    """Regular files a watch glob matches: never under .git/ or .rlm/, never a task's own report, never through
    a symlink leading out of the repository."""
    regex = compile_exact(pattern)
    out = []
    for name in repo_files(root, [pattern]):
        if name in excluded or _machinery(name) or not regex.match(name):
            continue
        full = os.path.join(root, name)
        if os.path.isfile(full) and _inside(root, os.path.realpath(full)):  # no FIFO, loop or dangling link
            out.append(name)
    return out


def is_plain_relative(rel: object) -> bool:
    """A repository-relative POSIX path read from a state file: not absolute, no `..`, no NUL, not empty."""
    if not isinstance(rel, str) or not rel or "\0" in rel or rel.startswith("/"):
        return False
    return ".." not in rel.split("/")


def length_problem(root: Path, rel: str, what: str = "report_path") -> str | None:
    """A path whose name or whole length this filesystem refuses (PC_NAME_MAX, PC_PATH_MAX): the worker could
    never write it, and the run would fail at its end with ENAMETOOLONG."""
    try:
        name_max = os.pathconf(root, "PC_NAME_MAX")
        path_max = os.pathconf(root, "PC_PATH_MAX")
    except (OSError, ValueError):
        return None  # unknown limits: the write itself will say
    for part in rel.split("/"):
        size = len(os.fsencode(part))
        if name_max and size > name_max:
            return (f"{what} '{rel[:60]}{'...' if len(rel) > 60 else ''}': a name of {size} bytes, longer than "
                    f"this filesystem allows ({name_max})")
    size = len(os.fsencode(os.path.join(os.path.abspath(root), rel)))
    if path_max and size >= path_max:
        return f"{what} '{rel[:60]}...': the path is {size} bytes, longer than this filesystem allows ({path_max})"
    return None
