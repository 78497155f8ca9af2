"""What several verbs share: the run's context from --config, the repository root, argument types."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

from rlm_tasks.config.defaults import MAX_INFLIGHT_CAP as MAX_JOBS  # the cap of budget.max_inflight too
from rlm_tasks.state.context import RunContext, load_context


def context(args: argparse.Namespace) -> RunContext:
    return load_context(args.config)


def repo_root(args: argparse.Namespace) -> Path:
    """The repository root: rlm.yaml's directory, also when the verb does not need rlm.yaml itself."""
    return Path(os.path.abspath(args.config)).parent.resolve()  # a symlinked rlm.yaml stays here


def number(minimum: float, *, exclusive: bool = False, maximum: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (exclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if exclusive else '>='} {minimum:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    return parse


def jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_JOBS}, got {text}")
    return value


# float('nan') passes `< 0` checks, so every number flag goes through number().
positive = number(0, exclusive=True)
non_negative = number(0)
