"""What a retry's worker is told about the attempt before it, so it does not repeat the same mistake.

The note goes to the worker on stdin after the rendered prompt; it is never part of the prompt's digest
(provenance compares what the task asks, not how often it was tried), nor of artifacts/prompts/<id>.md.
"""

from __future__ import annotations

from typing import Any

from rlm_tasks.vocabulary import Outcome, is_failure

_ADVICE = {
    Outcome.NO_REPORT: "Write the report to the report path above before you end, even if the work is unfinished "
                       "(use the self-termination form).",
    Outcome.INVALID_REPORT: "Give the report every heading the prompt requires, spelled as written.",
    Outcome.TIMEOUT: "Plan for the time budget: stop early enough to write the report (a partial report counts).",
    Outcome.STALLED: "Show you are alive: append a progress line to `$RLM_PROGRESS_PATH` as you work.",
    Outcome.OVER_CAP: "Keep your output small: write results to files, not to the console.",
    Outcome.EXIT: "Find out why your process exited with an error, and end with exit code 0 after writing the report.",
}


def note(previous: dict[str, Any] | None) -> str:
    """The section added to the prompt when `previous` (an attempt record) failed; '' otherwise."""
    if previous is None or not is_failure(previous.get("outcome")):
        return ""
    outcome = Outcome(previous["outcome"])
    detail = str(previous.get("detail") or outcome.value).replace("\n", " ")
    lines = ["", "", "## Your previous attempt failed",
             f"Attempt {previous.get('attempt')} of this task ended with `{outcome.value}`: {detail}."]
    rejected = previous.get("rejected_report")
    if rejected:
        lines.append(f"Its rejected report is kept at `{rejected}`: read it, keep what holds, fix what was wrong.")
    advice = _ADVICE.get(outcome)
    if advice:
        lines.append(advice)
    return "\n".join(lines) + "\n"
