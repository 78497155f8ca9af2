"""decision.deviations: the orchestrator's own departures from the workflow, shown in final.json and final.md."""

from __future__ import annotations

import json

import yaml
from conftest import RUN_DIR, Repo

from rlm_tasks.config import schema

DEVIATION = {"what": "edited src/app.py myself (a one-line fix)", "why": "the worker's retry budget was used up",
             "repair": "verify task check-app re-runs the tests on it"}


def decide(repo: Repo, **decision: object) -> None:
    data = yaml.safe_load(repo.path("rlm.yaml").read_text())
    data["decision"] = {"should_finish": True, "reason": "verified", **decision}
    repo.write(data)


def test_deviations_are_recorded_in_final_json_and_final_md(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], verify=[{"id": "check-app", "goal": "V"}])
    assert repo.doit().code == 0
    decide(repo)
    assert repo.rlm("final").code == 0
    final = json.loads(repo.path(f"{RUN_DIR}/final.json").read_text())
    assert final["deviations"] == []
    assert "## Orchestrator deviations\nNone recorded.\n" in repo.path(f"{RUN_DIR}/final.md").read_text()

    decide(repo, deviations=[DEVIATION])
    status = repo.rlm("status")
    assert "final.json is out of date (decision changed)" in status.out  # the decision's digest covers them
    assert repo.rlm("final").code == 0
    final = json.loads(repo.path(f"{RUN_DIR}/final.json").read_text())
    assert schema.check("final", final) == []
    assert final["deviations"] == [DEVIATION]
    assert ("## Orchestrator deviations\n- edited src/app.py myself (a one-line fix). Why: the worker's retry budget "
            "was used up. Repair: verify task check-app re-runs the tests on it.\n"
            ) in repo.path(f"{RUN_DIR}/final.md").read_text()


def test_a_deviation_needs_what_why_and_repair(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    decide(repo, deviations=[{"what": "x", "why": "y"}])
    result = repo.rlm("validate")
    assert result.code == 2
    assert result.err.endswith(": decision.deviations[0]: missing required key 'repair'\n")
