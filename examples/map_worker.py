#!/usr/bin/env python3
"""Example worker for `agent.kind: command`: real static analysis, no model.

It reads the prompt on stdin like an agent would, takes its task from the
JSON envelope, measures the Python files named in `inputs` (lines, functions,
classes, imports of sibling modules, TODO markers) and writes a narrative
report to $RLM_REPORT_PATH. In `verify` mode it re-checks the reports it
depends on against the files they describe.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

SECTIONS = (
    "What I did",
    "Key findings",
    "Evidence",
    "Open questions / risks",
    "Deferred opportunities",
    "Contract Compliance",
)


def envelope(prompt: str) -> dict:
    match = re.search(r"```json\n(.*?)\n```", prompt, re.S)
    if not match:
        raise SystemExit("no JSON envelope in the prompt")
    return json.loads(match.group(1))


def measure(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    facts = {"path": path.as_posix(), "lines": len(text.splitlines()), "todo": text.count("TODO")}
    if path.suffix != ".py":
        return facts
    tree = ast.parse(text)
    facts["functions"] = sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(tree))
    facts["classes"] = sum(isinstance(n, ast.ClassDef) for n in ast.walk(tree))
    facts["local_imports"] = sorted(
        {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level and n.module}
    )
    return facts


def map_report(env: dict) -> tuple[list[str], list[str], list[str]]:
    rows = [measure(Path(p)) for p in env["inputs"]]
    total = sum(r["lines"] for r in rows)
    largest = max(rows, key=lambda r: r["lines"]) if rows else None
    findings = [f"{len(rows)} files, {total} lines in all."]
    if largest:
        findings.append(f"Largest: `{largest['path']}` ({largest['lines']} lines).")
    for r in rows:
        if "functions" in r:
            deps = ", ".join(r["local_imports"]) or "none"
            findings.append(f"`{r['path']}`: {r['functions']} functions, {r['classes']} classes; uses modules: {deps}.")
    evidence = [f"- `{r['path']}`: {r['lines']} lines" for r in rows]
    deferred = [
        f"- Proposal: split `{r['path']}` ({r['lines']} lines). Why deferred: read-only run. "
        f"How to validate: the tests still pass."
        for r in rows
        if r["lines"] > 300
    ]
    return findings, evidence, deferred


def verify_report(env: dict) -> tuple[list[str], list[str], list[str]]:
    findings, evidence = [], []
    for report in env["input_reports"]:
        text = Path(report).read_text(encoding="utf-8")
        missing = [s for s in SECTIONS if f"## {s}" not in text]
        claims = re.findall(r"- `([^`]+)`: (\d+) lines", text)
        wrong = [
            p for p, n in claims if Path(p).exists() and len(Path(p).read_text(encoding="utf-8").splitlines()) != int(n)
        ]
        verdict = "holds" if not missing and not wrong else f"fails (missing sections {missing}, wrong counts {wrong})"
        findings.append(f"`{report}`: {len(claims)} line counts re-measured; the report {verdict}.")
        evidence.append(f"- `{report}`: {len(claims)} claims checked")
    return findings, evidence, []


def main() -> int:
    prompt = sys.stdin.read()
    env = envelope(prompt)
    findings, evidence, deferred = (verify_report if env["mode"] == "verify" else map_report)(env)
    body = [
        f"# Report: {env['worker_id']} ({env['mode']})",
        "",
        "## What I did",
        f"Read the contract at `{env['hint_paths'][1]}` and measured the files my task names. Task: {env['goal']}",
        "",
        "## Key findings",
        *[f"- {f}" for f in findings],
        "",
        "## Evidence",
        *evidence,
        "",
        "## Open questions / risks",
        "- Line counts say nothing about complexity; a reviewer should read the largest files.",
        "",
        "## Deferred opportunities",
        *(deferred or ["None identified."]),
        "",
        "## Contract Compliance",
        "- Read-only: no repository file was changed.",
        "- Report written to the report_path only.",
        "",
    ]
    report = Path(os.environ["RLM_REPORT_PATH"])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(body), encoding="utf-8")
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
