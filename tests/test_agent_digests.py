"""Today's invocation digests, pinned: moving or adding agent kinds must not make a committed report stale.

Each config below is frozen and digested the way provenance digests it (RunContext.digests); the
expected values were taken before the agent kinds moved into rlm_tasks/agents/. A changed value here
means every report committed with that config would run again.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Repo

from rlm_tasks.config.plan import load_plan
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import Digests

COMMAND = ["{{ python }}", "worker.py", "--model", "{{ model }}", "--effort", "{{ effort }}"]
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # name → (agent block, other top-level keys)
    "codex-default": ({}, {}),
    "codex-read-only-args-env": ({"kind": "codex", "sandbox": "read-only", "args": ["--skip-git-repo-check"],
                                  "env": {"CODEX_HOME": "/x", "B": "1"}}, {}),
    "codex-bypass-binary": ({"kind": "codex", "sandbox": "bypass", "binary": "/opt/codex"}, {}),
    "codex-full-access-json": ({"kind": "codex", "sandbox": "danger-full-access", "args": ["--json"]}, {}),
    "codex-no-effort": ({"kind": "codex"}, {"tiers": {"standard": {"model": "m1"}, "custom": {"model": "m2"}},
                                            "defaults": {"compute_tier": "custom"}}),
    "codex-heavy": ({"kind": "codex", "timeout": 60}, {"defaults": {"compute_tier": "heavy"}}),
    "claude-default": ({"kind": "claude"}, {}),
    "claude-tiers": ({"kind": "claude"}, {"tiers": {"standard": {"model": "claude-haiku-4-5", "effort": "low"},
                                                    "heavy": {"model": "claude-opus-4-6"}}}),
    "claude-read-only-stream": ({"kind": "claude", "sandbox": "read-only",
                                 "args": ["--output-format", "stream-json"]}, {}),
    "claude-bypass-env": ({"kind": "claude", "sandbox": "bypass", "env": {"ANTHROPIC_BASE_URL": "http://x"}}, {}),
    "claude-full-access-binary": ({"kind": "claude", "sandbox": "danger-full-access", "binary": "cc",
                                   "args": ["--max-turns", "3"]}, {}),
    "command-file": ({"kind": "command", "command": COMMAND}, {}),
    "command-stdout-env": ({"kind": "command", "command": ["sh", "-c", "cat"], "report": "stdout",
                            "env": {"Z": "1", "A": "2"}, "sandbox": "read-only"}, {}),
    "command-binary-args": ({"kind": "command", "command": ["./w"], "binary": "ignored", "args": ["--x"]},
                            {"defaults": {"compute_tier": "standard-plus"}}),
}

CONTRACT = "0939518b6878c965c3fcf6a343218eb0a8bc5ac6ef7c1c9df0c0d66b352b48ab"
PROMPTS = {  # task a's prompt, by its compute_tier
    "standard": "6e06377526227ee58710f757b3a742fa56b2e0e294232ddab2c90ed3a205b2bb",
    "heavy": "ce5da101bccfd8c92a2e993c6d6b95f8a2f9876386c147094b1b69650b1a1090",
    "custom": "9210856bcda2bb5cf603b9f0500c9ada3e55adeae989d1430646a78696753462",
    "standard-plus": "088217966019d6dfccce9d9ce2de9560c7cb9d86d4b3c2be627d2f80ac2252e7",
}
AGENT_DIGESTS = {
    "claude-bypass-env": "4cc1173b64e38df75a89a09753d3117d3e5e155116834faa89503f88c6f7cf0c",
    "claude-default": "db087a13c4a7ed9a9c3e4f7a030d8a2a55f63eeceb15e0be7b7f1721dfbb6266",
    "claude-full-access-binary": "100c96c49f62d6d8aaa3c689117909025cb1eb34b6d44a7cd2c78e02d6414fb8",
    "claude-read-only-stream": "4580a2b42dfb66953c789b20fa5158944f79184967ddb9a9834c47e6d61ab9f2",
    "claude-tiers": "147cc1fd62a377142b793a21d9c6ca6133733e32b6811d582eda12c4ccb6334a",
    "codex-bypass-binary": "9763e89de0f207c8601d3bc8af96aa7f2b2259b0f86215583477544c5f06b959",
    "codex-default": "a1558b961a72d21e35b05c96a5f0581c19da340f8f8e4e9965ccfebd02c7411f",
    "codex-full-access-json": "00b14c9cbec52eb0bac536521f753788e3dba28b291651c0c885b2c780fd557c",
    "codex-heavy": "00db1c328178a0128fd7d4a088aea8eb252f8f1ae96ed168bd06e7dff9748ff9",
    "codex-no-effort": "18e15ef0dda861e19d838a1869ba70553076540486596820ae4dd58c7e9657c1",
    "codex-read-only-args-env": "bf96a2bf336d54005c26d2e97cefb01c67722d82e89054a9dac3dfeaec907458",
    "command-binary-args": "5149fd4446979611cc22a0e2331be9aab6b975502abb5d55da86b0ba9f0ac6bf",
    "command-file": "50b4e48b1f07774252fbf5ba7e77055684b5f9e53f537d838f4295b873d712b1",
    "command-stdout-env": "a052ed8cc6c8f74f58b5231615c72f0015aa6cc3517c3d3653f81557ab7920ea",
}


def digests(repo: Repo, agent: dict[str, Any], top: dict[str, Any]) -> list[Digests]:
    repo.write({"version": 1, "run_id": "t", "goal": "g", **({"agent": agent} if agent else {}),
                "tasks": [{"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "depends_on": ["a"]}], **top})
    ctx = RunContext(load_plan("rlm.yaml"))
    return [ctx.digests(task) for task in ctx.plan.tasks]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_invocation_digest_is_pinned(repo: Repo, name: str) -> None:
    agent, top = CONFIGS[name]
    first, second = digests(repo, agent, top)
    assert (first.agent, second.agent) == (AGENT_DIGESTS[name], AGENT_DIGESTS[name])
    tier = top.get("defaults", {}).get("compute_tier", "standard")
    assert (first.prompt, first.contract, second.contract) == (PROMPTS[tier], CONTRACT, CONTRACT)
