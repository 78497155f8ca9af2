"""The lines every worker prompt keeps, a custom `templates_dir` prompt too: the skill's trigger, the contract
and the report path. Without them a worker does not know it is an rlm worker, or where to write."""

from __future__ import annotations

SKILL_LINE = "Use the map-worker skill."
SKILL_TOKEN = "$map-worker"


def missing_lines(prompt: str, contract_path: str, report_path: str) -> list[str]:
    """What a rendered prompt lacks of the mandatory lines, each as the text it should contain."""
    missing = []
    if SKILL_LINE not in prompt:
        missing.append(f"'{SKILL_LINE}'")
    if SKILL_TOKEN not in prompt:
        missing.append(f"'{SKILL_TOKEN}'")
    if contract_path not in prompt:
        missing.append(f"the contract path '{contract_path}' (`{{{{ contract_path }}}}`)")
    if report_path not in prompt:
        missing.append(f"the report path '{report_path}' (`{{{{ report_path }}}}`)")
    return missing
