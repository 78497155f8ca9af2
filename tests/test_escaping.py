"""Text from reports and from free-form config fields is escaped where final.md renders it."""

from __future__ import annotations

import pytest
from conftest import RUN_DIR, Repo

from rlm_tasks.render.escape import code, md

EVIL = "# Injected\n```\n<script>alert(1)</script> [click](javascript:alert(1)) <img src=x onerror=alert(1)>"
REPORT = ("# Report\n\n## Contract Compliance\nok\n\n## Deferred opportunities\n"
          "- Proposal: <b>bold</b> [x](javascript:alert(1)) ``` fence — why deferred: # not a heading\n")


@pytest.mark.slow
def test_final_md_escapes_reports_and_config_text(repo: Repo) -> None:
    repo.write_command([{"id": "a", "goal": "A"}], {"*": {"text": REPORT}},
                       verify=[{"id": "v", "goal": "V", "depends_on": ["a"]}],
                       goal=EVIL,
                       decision={"should_finish": True, "reason": EVIL,
                                 "conclusions": [{"text": EVIL, "evidence": [f"{RUN_DIR}/artifacts/reports/a.md"]}]})
    assert repo.doit().code == 0
    result = repo.rlm("final")
    assert result.code == 0, result.err
    text = repo.path(f"{RUN_DIR}/final.md").read_text()
    for raw in ("<script>", "<img", "<b>", "[click](javascript:", "[x](javascript:", "\n# Injected"):
        assert raw not in text
    assert [line for line in text.splitlines() if line.startswith("```")] == ["```mermaid", "```"] * 2
    assert [line for line in text.splitlines() if line.startswith("# ")] == ["# Final: t"]
    assert f"- Reason: {md(EVIL)}" in text.splitlines()
    assert "\\# Injected \\`\\`\\` &lt;script&gt;alert(1)&lt;/script&gt; \\[click\\](javascript:alert(1))" in text


def test_escape_helpers() -> None:
    assert md("1. a\nb") == "1\\. a b"
    assert md("-x") == "\\-x"
    assert code("a`b") == "``a`b``"
    assert code("`x") == "`` `x ``"
