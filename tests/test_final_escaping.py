"""Rendering untrusted text: goals, reasons, conclusions and report items never give final.md headings or
code fences of their own (tests/test_escaping.py has the filters), and the final line stays one line."""

from __future__ import annotations

import pytest
from conftest import RUN_DIR, Repo

HOSTILE = "<img src=x onerror=alert(1)>\n# Injected\n```\n[click](javascript:alert(2)) | cell *em*"
REPORT = ("# r\n\n## What I did\nx\n\n## Key findings\n- y\n\n## Deferred opportunities\n"
          "- <script>alert(3)</script> [x](javascript:alert(4)) ## not a heading\n\n## Contract Compliance\n- kept\n")


@pytest.mark.slow
def test_hostile_text_is_rendered_as_text(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], {"*": {"text": REPORT}}, goal=HOSTILE,
                       verify=[{"id": "v", "goal": "V", "depends_on": ["a"]}],
                       decision={"should_finish": True, "reason": "\x1b[2J" + HOSTILE,
                                 "conclusions": [{"text": HOSTILE, "evidence": ["rlm.yaml"]}]})
    assert repo.doit().code == 0
    final = repo.doit("final")
    assert final.code == 0
    # the console gets one line, the escape sequence shown escaped (it cleared the orchestrator's screen)
    assert (r"final: finish (\x1b[2J<img src=x onerror=alert(1)>\n# Injected\n```\n[click](javascript:alert(2)) | "
            r"cell *em*): " f"{RUN_DIR}/final.json, {RUN_DIR}/final.md") in final.lines, final.out
    md = (repo.root / RUN_DIR / "final.md").read_text()
    assert [line for line in md.splitlines() if line.startswith("#")] == [
        "# Final: t", "## Findings", "### [r](artifacts/reports/a.md)", "## Conclusions", "## Verify",
        "### [r](artifacts/reports/v.md)",
        "## Cost per tier and the costliest tasks", "## Deferred opportunities", "## Orchestrator deviations",
        "## Decision", "## Tasks",
        "## Timeline", "## Evidence"]
    assert md.count("```") == 4  # the two Mermaid blocks only
    assert "<img" not in md and "<script" not in md and "[click](javascript" not in md
