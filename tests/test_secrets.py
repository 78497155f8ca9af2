"""No secret is copied: values of agent.env and of secret-looking orchestrator variables are masked in worker logs
as they are written (also when a write splits them), and agent.env_inherit limits what a worker inherits."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import FAKE_AGENT, LOCAL_RUN, Repo

from rlm_tasks import secrets

# Prints each secret in two halves (two flushed writes, a pause between: two reads for the orchestrator), on
# stdout and stderr, records the environment names it got, then runs the fake agent (which writes the report).
LEAKY = textwrap.dedent("""\
    import json, os, sys, time
    values, names_file = json.loads(sys.argv[1]), sys.argv[2]
    with open(names_file, "w") as out:
        json.dump(sorted(os.environ), out)
    for value in values:
        for stream in (sys.stdout, sys.stderr):
            half = len(value) // 2
            stream.write("before " + value[:half])
            stream.flush()
            time.sleep(0.05)
            stream.write(value[half:] + " after\\n")
            stream.flush()
    os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
""")

SECRETS = {"AGENT_ENV": "agent-env-value-1234", "MY_SERVICE_TOKEN": "tok-9f8e7d6c", "db_password": "hunter2-long",
           "AWS_SECRET_ACCESS_KEY": "AKIAxyz/abc+def", "MY_CREDS": "creds-custom-42"}


def _leaky_config(repo: Repo, tmp_path: Path, **agent: object) -> Path:
    (tmp_path / "leaky.py").write_text(LEAKY)
    names = tmp_path / "env-names.json"
    data = repo.write_command([{"id": "a", "goal": "A"}])
    data["agent"]["command"] = ["{{ python }}", str(tmp_path / "leaky.py"), json.dumps(list(SECRETS.values())),
                                str(names), str(FAKE_AGENT), "--model", "{{ model }}", "--effort", "{{ effort }}"]
    data["agent"]["env"]["AGENT_ENV"] = SECRETS["AGENT_ENV"]
    data["agent"]["mask_env"] = ["*_CREDS"]
    data["agent"].update(agent)
    repo.write(data)
    return names


def test_secrets_are_masked_in_the_worker_log(repo: Repo, tmp_path: Path) -> None:
    _leaky_config(repo, tmp_path)
    env = {k: v for k, v in SECRETS.items() if k != "AGENT_ENV"}
    result = repo.doit_cli(**env)
    assert result.code == 0, result
    log = (repo.root / LOCAL_RUN / "logs/a.attempt-1.log").read_bytes()
    for value in SECRETS.values():
        assert value.encode() not in log
    assert log.count(b"before [masked] after\n") == 2 * len(SECRETS)


def test_env_inherit_lists_what_a_worker_gets(repo: Repo, tmp_path: Path) -> None:
    names = _leaky_config(repo, tmp_path, env_inherit=["PATH", "NOT_SET_ANYWHERE"])
    result = repo.doit_cli(MY_SERVICE_TOKEN="tok-9f8e7d6c", OTHER_VARIABLE="x")
    assert result.code == 0, result
    got = set(json.loads(names.read_text()))
    assert "PATH" in got and "AGENT_ENV" in got and "RLM_WORKER_ID" in got
    assert not {"MY_SERVICE_TOKEN", "OTHER_VARIABLE", "HOME", "NOT_SET_ANYWHERE"} & got
    names_all = _leaky_config(repo, tmp_path)
    assert repo.doit_cli("--always", OTHER_VARIABLE="x").code == 0
    assert "OTHER_VARIABLE" in json.loads(names_all.read_text())


@pytest.mark.parametrize("chunks", [[b"ab", b"cdef"], [b"a", b"b", b"c", b"d", b"e", b"f"], [b"xxabcdefyy"],
                                    [b"xxabc", b"defabcd", b"ef"], [b"abcab", b"cdef"]])
def test_masker_across_chunks(chunks: list[bytes]) -> None:
    masker = secrets.Masker(["abcdef", "cd"])
    out = b"".join(masker.feed(c) for c in chunks) + masker.flush()
    assert b"abcdef" not in out and b"cd" not in out
    assert out.replace(b"[masked]", b"") == b"".join(chunks).replace(b"abcdef", b"").replace(b"cd", b"")


def test_short_values_are_not_masked() -> None:
    assert secrets.values_to_mask({"API_KEY": "abcdefg", "HOME": "/root"}, {"MODE": "gemini"}) == ()
    assert secrets.values_to_mask({"API_KEY": "abcdefgh", "PATH": "/usr/local/bin"}, {"X": "value-long"}) == (
        "value-long", "abcdefgh")


def test_masker_matches_masking_the_whole_stream_at_once() -> None:
    import random
    import re

    rng = random.Random(7)
    values = ["abcdef", "cd", "cdeXYZ", "zzzz", "a" * 12]
    whole_pattern = re.compile(b"|".join(re.escape(v.encode()) for v in sorted(values, key=len, reverse=True)))
    for _ in range(300):
        text = b"".join(rng.choice([b"a", b"b", b"c", b"d", b"e", b"f", b"z", b"X", b"Y", b"Z", b"cdeXYZ", b"abcdef"])
                        for _ in range(rng.randint(0, 60)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 8))))
        chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        masker = secrets.Masker(values)
        out = b"".join(masker.feed(c) for c in chunks) + masker.flush()
        assert out == whole_pattern.sub(b"[masked]", text), (text, chunks)
