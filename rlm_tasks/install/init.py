"""`rlm init`: the starter files that make any repository an rlm repository.

Writes a commented rlm.yaml that validates and runs, the thin dodo.py, a copy of the schema the
rlm.yaml's modeline points at (so editors check it in a fresh clone, offline), the bundled worker
the starter runs (`--agent command`), a doit.cfg naming rlm's doit commands (run/doit_commands.py), the .gitignore
line for machine-local state and, with `--ci github`, a workflow running `rlm check`. Nothing that
exists is overwritten unless `force`; `upgrade` rewrites only the files the tool owns (the schema
copy, the bundled worker). An existing doit.cfg is never rewritten: init says what to add to it.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path

from rlm_tasks import __version__, jsonio, layout
from rlm_tasks.agents import KINDS
from rlm_tasks.errors import UserError
from rlm_tasks.resources import SCHEMA_DIR, STARTER_DIR

AGENTS = tuple(sorted(KINDS))
CI_KINDS = ("github",)
SCHEMA_COPY = f"{layout.STATE_DIR}/rlm.schema.json"  # the starter rlm.yaml's modeline names it
WORKER_COPY = f"{layout.STATE_DIR}/starter_worker.py"
WORKFLOW = ".github/workflows/rlm.yml"
DOIT_CFG = "doit.cfg"
GITIGNORE = ".gitignore"
GITIGNORE_BLOCK = f"# rlm: machine-local state (doit database, caches, locks, logs)\n{layout.GITIGNORE_LINE}\n"
NEXT_STEPS = (
    "doit                  # run the starter tasks",
    "rlm check             # exit 0: every report is fresh",
    f"git add rlm.yaml dodo.py {DOIT_CFG} {GITIGNORE} {layout.STATE_DIR} && git commit -m 'rlm: starter run'",
)


MAX_RUN_ID = 64  # rlm.schema.json run_id maxLength
STARTER_RUN_ID = re.compile(r"^run_id: (run_\d{8}T\d{6}Z_[a-z0-9-]+)  #", re.MULTILINE)


class InitRefused(UserError):
    """`rlm init` would overwrite a file that exists; nothing was written."""

    exit_code = 1


@dataclass
class InitResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"wrote {rel}" for rel in self.written] + [f"unchanged {rel}" for rel in self.unchanged]
                + [f"note: {note}" for note in self.notes])


def _starter(name: str) -> str:
    return (STARTER_DIR / name).read_text(encoding="utf-8")


def _rlm_yaml(agent: str, run_id: str) -> str:
    return _starter("rlm.yaml").replace("@AGENT@\n", KINDS[agent].STARTER).replace("@RUN_ID@", run_id)


def starter_run_id(root: Path, run_id: str | None) -> str:
    """The given id; else the one an earlier `rlm init` wrote (so init again finds its rlm.yaml unchanged);
    else a new one, named after the repository's directory."""
    if run_id is not None:
        if not layout.RUN_ID.match(run_id) or len(run_id) > MAX_RUN_ID:
            raise UserError(f"init: --run-id {run_id!r}: a run id is letters, digits, '.', '_' and '-', starting "
                            f"with a letter or digit, at most {MAX_RUN_ID} characters", exit_code=2)
        return run_id
    try:
        earlier = STARTER_RUN_ID.search((root / "rlm.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        earlier = None
    return earlier.group(1) if earlier else layout.new_run_id(root.resolve().name)


def tool_owned(agent: str) -> dict[str, str]:
    """Files `--upgrade` keeps current: a user edits rlm.yaml and dodo.py, never these."""
    files = {SCHEMA_COPY: (SCHEMA_DIR / "rlm.schema.json").read_text(encoding="utf-8")}
    if WORKER_COPY in KINDS[agent].STARTER:  # the kind's starter runs the bundled worker
        files[WORKER_COPY] = _starter("starter_worker.py")
    return files


def outdated_schema_copy(root: Path) -> str | None:
    """SCHEMA_COPY when the repository has one that is not this version's schema (editors would check stale keys)."""
    try:
        copy = (root / SCHEMA_COPY).read_bytes()
    except OSError:
        return None
    return None if copy == (SCHEMA_DIR / "rlm.schema.json").read_bytes() else SCHEMA_COPY


def starter_files(agent: str, ci: str | None, run_id: str = "first-run") -> dict[str, str]:
    files = {"rlm.yaml": _rlm_yaml(agent, run_id), "dodo.py": _starter("dodo.py"), **tool_owned(agent)}
    if ci == "github":
        files[WORKFLOW] = _starter("github-workflow.yml").replace("@REQUIREMENT@", f"rlm-tasks=={__version__}")
    return files


def _inside(root: Path, rel: str) -> Path:
    """The file's path, refused when a symlinked directory would put it outside the repository."""
    path = root / rel
    real_root = root.resolve()
    parent = path.parent.resolve()
    if parent != real_root and real_root not in parent.parents:
        raise UserError(f"init: {rel}: its directory leads outside the repository ({parent}); nothing written")
    return path


def _gitignore_text(root: Path) -> str | None:
    """The .gitignore with the machine-local line added, or None when it is already ignored."""
    path = _inside(root, GITIGNORE)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return GITIGNORE_BLOCK
    lines = {line.strip() for line in text.splitlines()}
    if {layout.GITIGNORE_LINE, layout.GITIGNORE_LINE.lstrip("/")} & lines:
        return None
    return text + ("" if not text or text.endswith("\n") else "\n") + GITIGNORE_BLOCK


def _doit_cfg(root: Path, result: InitResult) -> None:
    """Write doit.cfg, or when one exists without rlm's commands, say what to add to it (it may hold the user's own)."""
    path = _inside(root, DOIT_CFG)
    wanted = _starter(DOIT_CFG)
    if not path.exists() and not path.is_symlink():
        jsonio.write_text_atomic(path, wanted)
        result.written.append(DOIT_CFG)
        return
    needed = _commands(wanted)
    try:
        present = _commands(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        present = {}
    if needed.items() <= present.items():
        result.unchanged.append(DOIT_CFG)
        return
    lines = [line for line in wanted.splitlines() if line and not line.startswith("#")]
    result.notes.append(f"{DOIT_CFG} exists and was left alone; until it has these lines, doit's own command-line "
                        "errors (`doit --nosuch`) keep doit's exit 3 instead of rlm's 2:\n"
                        + "\n".join(f"  {line}" for line in lines))


def _commands(text: str) -> dict[str, str]:
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # doit keeps the case of names too
    parser.read_string(text)
    return dict(parser["COMMAND"]) if parser.has_section("COMMAND") else {}


def _ignores_all_state(root: Path) -> bool:
    try:
        lines = _inside(root, GITIGNORE).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return False
    return any(line.strip().rstrip("/") in (layout.STATE_DIR, "/" + layout.STATE_DIR) for line in lines)


def init(root: Path, *, agent: str = "command", ci: str | None = None, force: bool = False,
         upgrade: bool = False, run_id: str | None = None) -> InitResult:
    if upgrade:  # the schema copy always (the modeline names it); the bundled worker only where it is in use
        files = {rel: text for rel, text in tool_owned("command").items()
                 if rel == SCHEMA_COPY or (root / rel).exists()}
    else:
        files = starter_files(agent, ci, starter_run_id(root, run_id))
    result = InitResult()
    todo: dict[Path, str] = {}
    conflicts: list[str] = []
    for rel, text in files.items():
        path = _inside(root, rel)
        try:
            current = path.read_text(encoding="utf-8") if path.exists() or path.is_symlink() else None
        except (OSError, UnicodeDecodeError):
            current = ""  # unreadable or not text: something is there, so it counts as a conflict
        if current == text:
            result.unchanged.append(rel)
        elif current is None or force or upgrade:
            todo[path] = rel
        else:
            conflicts.append(rel)
    if conflicts:
        raise InitRefused("init: " + ", ".join(conflicts) + (" exists" if len(conflicts) == 1 else " exist")
                          + "; nothing written (--force overwrites"
                          + (", or add the rlm tasks to your dodo.py: see docs/adopting.md)"
                             if "dodo.py" in conflicts else ")"))
    for path, rel in todo.items():
        jsonio.write_text_atomic(path, files[rel])
        result.written.append(rel)
    _doit_cfg(root, result)
    if not upgrade:
        ignore = _gitignore_text(root)
        if _ignores_all_state(root):
            result.notes.append(f"{GITIGNORE} ignores all of {layout.STATE_DIR}/, so the run's record under "
                                f"{layout.RUNS_DIR}/ would not be committed; ignore only {layout.GITIGNORE_LINE}")
        if ignore is None:
            result.unchanged.append(GITIGNORE)
        else:
            jsonio.write_text_atomic(_inside(root, GITIGNORE), ignore)
            result.written.append(GITIGNORE)
    return result
