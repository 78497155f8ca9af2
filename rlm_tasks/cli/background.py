"""The detached run's process: `python -m rlm_tasks.cli.background STATE RLM_ARGS...` (started by run/detach.py).

It forks once so the launcher returns at once, records its pid in detached.json,
runs `rlm RLM_ARGS` in-process and records the exit code when it ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rlm_tasks import jsonio
from rlm_tasks.cli.main import main
from rlm_tasks.clock import iso
from rlm_tasks.procs import start_ticks
from rlm_tasks.run.detach import read_state


def background(argv: list[str]) -> int:
    state_path, rlm_args = Path(argv[0]), argv[1:]
    if os.fork() > 0:
        os._exit(0)  # the launcher: its child is now nobody's to wait for, and is reaped by init
    state = read_state(state_path)
    state.update(pid=os.getpid(), pid_start_ticks=start_ticks(os.getpid()))
    jsonio.write_json(state_path, state)
    code = 70
    try:
        code = main(rlm_args)
    finally:
        state = read_state(state_path)
        state.update(exit_code=code, finished_at=iso())
        jsonio.write_json(state_path, state)
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(background(sys.argv[1:]))
