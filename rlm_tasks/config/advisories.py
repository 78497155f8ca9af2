"""What `rlm validate` and DECIDE check on a plan that loaded: contract warnings and decision evidence.

Apart from the load-time checks (checks.py) because MAP must run before the reports a decision cites exist.
"""

from __future__ import annotations

import os

from rlm_tasks.config import yamlpos
from rlm_tasks.config.records import Plan
from rlm_tasks.config.yamlpos import KeyPath, format_path


def contract_warnings(plan: Plan, text: str, shown: str) -> list[str]:
    """What a valid rlm.yaml still lacks for workers to check their work: invariants, verification.

    Warnings, not errors: a first exploratory run may have neither.
    """
    doc = yamlpos.load(text)
    found = []
    for key, missing, why in (
        ("invariants", not plan.contract.invariants, "workers get no invariants to keep"),
        ("verification", not plan.contract.verification.commands,
         "no verification commands: workers cannot compare against a baseline"),
    ):
        if missing:
            pos = doc.position(("contract", key), key=True)
            found.append(f"{shown}:{pos.line}:{pos.column}: contract.{key}: warning: {why}")
    return found


def evidence_problems(plan: Plan) -> list[str]:
    """FILE:LINE:COL lines for decision evidence that does not exist (or leads outside the repository).

    Checked by `rlm validate` and by DECIDE (`final`), not when a run loads the plan: MAP must be able
    to run before the reports a decision will cite exist.
    """
    conclusions = plan.decision.conclusions
    if not any(c.evidence for c in conclusions):
        return []
    doc = yamlpos.load(plan.config_path.read_text(encoding="utf-8"))
    shown = os.path.relpath(plan.config_path)
    problems = []
    for i, conclusion in enumerate(conclusions):
        for j, item in enumerate(conclusion.evidence):
            try:
                resolved = (plan.root / item).resolve(strict=True)
            except (OSError, RuntimeError):  # missing, a dangling or looping symlink
                why = f"evidence path '{item}' does not exist"
            else:
                if resolved == plan.root or plan.root in resolved.parents:
                    continue
                why = f"evidence path '{item}' leads outside the repository"
            path: KeyPath = ("decision", "conclusions", i, "evidence", j)
            pos = doc.position(path)
            problems.append(f"{shown}:{pos.line}:{pos.column}: {format_path(path)}: {why}")
    return problems

