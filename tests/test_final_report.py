"""final.md for people: findings first, conclusions, verify, failures with causes, cost, deferred merged; links
that resolve in a clone; diagrams that stay small. End to end through doit and rlm with the fake agent."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import pytest
import yaml
from conftest import RUN_DIR, Repo

from rlm_tasks.layout import RunLayout
from rlm_tasks.state import events

REPORTS = f"{RUN_DIR}/artifacts/reports"
FAIL = {"exit": 3, "report": "none"}


def report(title: str, finding: str, deferred: str = "- Proposal: cache the parse tree. Why deferred: scope.") -> str:
    return (f"# {title}\n\n## What I did\nread\n\n## Key findings\n- {finding}\n- second line\n- third line\n"
            f"- fourth line not shown\n\n## Evidence\nx\n\n## Open questions / risks\nnone\n\n"
            f"## Deferred opportunities\n{deferred}\n\n## Contract Compliance\n- kept\n")


def scenario(repo: Repo, items: int = 3) -> None:
    """A fan-out over `items` topics, a task that retries once, one that fails for good, and a verify task."""
    spec: dict[str, Any] = {f"topic-{i}": {"text": report(f"Topic {i}", f"topic {i} finding")} for i in range(items)}
    spec["flaky"] = {"text": report("Flaky one", "flaky finding"), "attempts": {"1": FAIL}}
    spec["broken"] = FAIL
    spec["v"] = {"text": report("Verification", "all topics hold", "- none")}
    repo.write_command(
        [{"id": "topic-{{ item }}", "goal": "Study {{ item }}.", "foreach": {"name": "topics",
                                                                            "items": [str(i) for i in range(items)]}},
         {"id": "flaky", "goal": "F", "retries": 1},
         {"id": "broken", "goal": "B"}],
        spec, verify=[{"id": "v", "goal": "Check the topics.", "depends_on": [f"topic-{i}" for i in range(items)]}])


def decide(repo: Repo) -> None:
    data = yaml.safe_load(repo.path("rlm.yaml").read_text())
    data["decision"] = {"should_finish": True, "reason": "enough",
                        "conclusions": [{"text": "topics hold", "evidence": [f"{REPORTS}/topic-0.md"]}]}
    data.setdefault("budget", {})
    repo.write(data)


def links(md: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", md)


@pytest.mark.slow
def test_final_md_findings_first_with_links_that_resolve(repo: Repo) -> None:
    scenario(repo)
    assert repo.doit().code != 0  # broken fails
    decide(repo)
    # final refuses while a task is not done; let the broken one succeed on a rerun
    spec = yaml.safe_load(repo.spec_path.read_text())
    spec["broken"] = {"text": report("Broken fixed", "fixed finding")}
    repo.agent_spec(spec)
    assert repo.doit().code == 0
    assert repo.rlm("final").code == 0
    final = repo.path(f"{RUN_DIR}/final.md")
    md = final.read_text()
    print(md)
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:6] == ["## Findings", "## Conclusions", "## Verify", "## Failures",
                            "## Cost per tier and the costliest tasks", "## Deferred opportunities"]
    for target in links(md):
        path = urllib.parse.unquote(target.split("#")[0])
        assert (final.parent / path).exists(), target
        assert not (final.parent / path).resolve().is_relative_to(repo.root / ".rlm/local")
    assert "reduce_state.json" not in md  # machine-local: a clone does not have it
    assert "- topics hold (evidence: [" in md and "`" not in md.split("## Conclusions")[1].split("## Verify")[0]
    assert "- map:flaky: attempt 1 (standard) the agent exited with code 3; done on attempt 2" in md
    assert md.count("cache the parse tree") == 1  # five reports deferred it: one item, five sources
    assert md.count("#L19)") == 5
    # the run's event log replays into the counts `rlm status` shows
    status = json.loads(repo.rlm("status", "--json").out)
    ids = [t["id"] for t in status["tasks"]]
    assert events.replay(events.read_all(RunLayout(repo.root, "t")), ids) == {
        k: v for k, v in status["counts"].items() if v} == {"fresh": 6}


def test_diagrams_stay_small_at_1000_tasks(repo: Repo) -> None:
    from rlm_tasks.phases import findings, mermaid
    from rlm_tasks.state.context import load_context

    repo.write_command([{"id": "f-{{ item }}", "goal": "g", "foreach": {"name": "files",
                                                                        "items": [str(i) for i in range(1000)]}},
                        *({"id": f"s{i}", "goal": "g", "depends_on": ["f-1"]} for i in range(60))])
    ctx = load_context(str(repo.path("rlm.yaml")))
    groups = findings.groups(ctx)
    assert len(groups) == 61 and groups[0].label == "map:files ×1000"
    states = {t.id: ("fresh" if i % 2 else "missing") for i, t in enumerate(ctx.plan.tasks)}
    dag = mermaid.dag(groups, states)
    nodes = [line for line in dag.splitlines() if "]:::" in line]
    assert nodes == ['  g0["map:files ×1000<br/>500 fresh, 500 missing"]:::missing',
                     '  g1["map:others ×60<br/>30 fresh, 30 missing"]:::missing']
    assert "  g0 --> g1" in dag.splitlines()
    record = {"attempt": 1, "compute_tier": "standard", "outcome": "ok", "started_at": "2026-01-01T00:00:00Z",
              "finished_at": "2026-01-01T00:00:05Z"}
    attempts = [findings.Attempt(t, {**record, "outcome": "exit" if t.id == "f-7" else "ok"})
                for t in ctx.plan.tasks]
    bars = [line for line in mermaid.gantt(groups, attempts).splitlines() if line.startswith("  ") and "," in line]
    assert bars == ["  map_files ×1000 (1000 attempts, 1 failed) :crit, b1, 2026-01-01T00:00:00, 5s",
                    "  map_others ×60 (60 attempts, 0 failed) :done, b2, 2026-01-01T00:00:00, 5s"]


def test_deferred_items_with_the_same_text_merge_and_keep_every_source() -> None:
    from rlm_tasks.phases.findings import dedupe_deferred

    items = [{"proposal": "Cache  the parse tree", "why_deferred": None, "how_to_validate": None,
              "source": {"report_path": "a.md", "line": 3}},
             {"proposal": "cache the parse tree", "why_deferred": "scope", "how_to_validate": None,
              "source": {"report_path": "b.md", "line": 9}},
             {"proposal": "Other", "why_deferred": None, "how_to_validate": None,
              "source": {"report_path": "a.md", "line": 4}}]
    merged = dedupe_deferred(items)
    assert [(m["proposal"], m["why_deferred"], m["sources"]) for m in merged] == [
        ("Cache  the parse tree", "scope", [{"report_path": "a.md", "line": 3}, {"report_path": "b.md", "line": 9}]),
        ("Other", None, [{"report_path": "a.md", "line": 4}])]
    assert "sources" not in items[0] and items[0]["source"] == {"report_path": "a.md", "line": 3}
