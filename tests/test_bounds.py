"""Bounded in every dimension: validation grows linearly with a deep `depends_on` chain (no recursion, no
ancestor set per task), usage files are checked for consistency."""

from __future__ import annotations

import tracemalloc

from conftest import Repo

from rlm_tasks.cli.main import main
from rlm_tasks.config import ownership

DEPTH = 5000  # deeper than Python's recursion limit; bench/deep_chain.py measures 20,000


def chain_yaml(n: int, *, owns: str | None = None, cycle: bool = False) -> str:
    lines = ["version: 1", "run_id: chain", "goal: g", "agent: {kind: command, command: ['true']}", "tasks:"]
    for i in range(n):
        dep = f"t{i - 1}" if i else (f"t{n - 1}" if cycle else None)
        extra = (f", owns: ['{owns.format(i=i)}']" if owns else "") + (f", depends_on: [{dep}]" if dep else "")
        lines.append(f"  - {{id: t{i}, goal: g{extra}}}")
    return "\n".join(lines) + "\n"


def test_a_deep_chain_validates_in_linear_memory(repo: Repo, capsys) -> None:  # type: ignore[no-untyped-def]
    repo.write(chain_yaml(DEPTH))
    tracemalloc.start()
    try:
        assert main(["validate"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"valid: run chain, {DEPTH} map tasks" in capsys.readouterr().out
    assert peak < 150 * 1024 * 1024, peak  # ancestor sets per task took gigabytes at this depth


def test_a_cycle_through_a_deep_chain_is_found(repo: Repo, capsys) -> None:  # type: ignore[no-untyped-def]
    repo.write(chain_yaml(DEPTH, cycle=True))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "dependency cycle: " in err and err.count("\n") == 1


def test_reach_tells_ordered_from_concurrent_owners() -> None:
    deps = {"a": (), "b": ("a",), "c": ("b",), "d": ("a",), "e": ()}
    reach = ownership._reach(deps, ["a", "c", "d", "e"])
    bit = {"a": 1, "c": 2, "d": 4, "e": 8}
    assert reach["c"] == bit["a"]  # through b, which owns nothing
    assert reach["d"] == bit["a"] and reach["b"] == bit["a"] and reach["a"] == 0 and reach["e"] == 0


def test_ordered_owners_of_one_file_in_a_deep_chain_do_not_overlap(repo: Repo, capsys) -> None:  # type: ignore[no-untyped-def]
    repo.write(chain_yaml(1500, owns="src/same.py"))  # all own one file, each after the one before
    assert main(["validate"]) == 0, capsys.readouterr().err
    text = chain_yaml(3, owns="src/same.py").replace(", depends_on: [t1]", "")  # t2 may run beside t0, t1
    repo.write(text)
    assert main(["validate"]) == 2
    assert "owned by task 't0'" in capsys.readouterr().err
