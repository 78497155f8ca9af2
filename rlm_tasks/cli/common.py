"""What several verbs share: the run's context from --config, the repository root, argument types."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlm_tasks.state import cache
from rlm_tasks.state.context import RunContext


def context(args: argparse.Namespace) -> RunContext:
    return cache.load_context(args.config)  # type: ignore[no-any-return]


def repo_root(args: argparse.Namespace) -> Path:
    """The repository root: rlm.yaml's directory, also when the verb does not need rlm.yaml itself."""
    return Path(args.config).resolve().parent


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value
