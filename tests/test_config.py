"""rlm.yaml validation: every mistake is one `FILE:LINE:COL: key.path: message` line, exit 2, nothing runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import Repo

from rlm_tasks.config.plan import load_plan
from rlm_tasks.config.records import AgentSpec, Budget, ConfigError, Tier


def validate(repo: Repo, text: str, name: str = "rlm.yaml") -> tuple[int, str, str]:
    repo.write(textwrap.dedent(text), name)
    result = repo.rlm("validate", name) if name != "rlm.yaml" else repo.rlm("validate")
    return result.code, result.out, result.err


def assert_invalid(repo: Repo, text: str, *expected: str, name: str = "rlm.yaml") -> None:
    code, out, err = validate(repo, text, name)
    assert (code, out, err.splitlines()) == (2, "", list(expected))


HEADER = """\
version: 1
run_id: r
goal: g
"""


def test_yaml_syntax_error_points_at_the_place(repo: Repo) -> None:
    assert_invalid(repo, 'version: 1\nrun_id: r\ngoal: "never closed\n',
                   "rlm.yaml:3:7: (yaml): found unexpected end of stream (while scanning a quoted scalar)")


def test_duplicate_yaml_key_is_refused_at_the_second_key(repo: Repo) -> None:
    assert_invalid(repo, HEADER + "goal: again\ntasks: [{id: a, goal: A}]\n",
                   "rlm.yaml:4:1: (yaml): duplicate key 'goal'")


def test_unknown_keys_get_did_you_mean(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
budgt: {max_inflight: 2}
tasks:
  - id: a
    goal: A
    depnds_on: [b]
  - id: b
    goal: B
    colour: blue
""",
                   "rlm.yaml:4:1: budgt: unknown key 'budgt' (did you mean 'budget'?)",
                   "rlm.yaml:8:5: tasks[0].depnds_on: unknown key 'depnds_on' (did you mean 'depends_on'?)",
                   "rlm.yaml:11:5: tasks[1].colour: unknown key 'colour'")


def test_wrong_types_name_what_was_expected_and_what_was_found(repo: Repo) -> None:
    assert_invalid(repo, """\
version: 1
run_id: Bad ID
goal: 5
budget: {max_inflight: "4"}
agent:
  kind: codx
  timeout: "10"
tasks:
  - id: a
    goal: A
    depends_on: b
    granularity: huge
""",
                   'rlm.yaml:2:9: run_id: "Bad ID" does not match the pattern ^[A-Za-z0-9][A-Za-z0-9._-]*$',
                   "rlm.yaml:3:7: goal: expected a string, got an integer (5)",
                   'rlm.yaml:4:24: budget.max_inflight: expected an integer, got a string ("4")',
                   "rlm.yaml:6:9: agent.kind: must be one of: codex, claude, gemini, opencode, command; "
                   "got a string (\"codx\") (did you mean 'codex'?)",
                   'rlm.yaml:7:12: agent.timeout: expected a number, got a string ("10")',
                   'rlm.yaml:11:17: tasks[0].depends_on: expected a list, got a string ("b")',
                   'rlm.yaml:12:18: tasks[0].granularity: must be one of: micro, meso, macro; got a string ("huge")')


def test_tasks_must_be_a_list(repo: Repo) -> None:
    assert_invalid(repo, HEADER + "tasks:\n  a: {goal: A}\n",
                   "rlm.yaml:5:3: tasks: expected a list, got a mapping")


def test_missing_run_id_and_goal(repo: Repo) -> None:
    code, out, err = validate(repo, "version: 1\ntasks:\n  - {id: a, goal: A}\n", "rlm.yaml")
    first, second = err.splitlines()
    assert (code, out, second) == (2, "", "rlm.yaml:1:1: (root): missing required key 'goal'")
    assert first.startswith("rlm.yaml:1:1: (root): missing required key 'run_id'; name the run, e.g. `run_id: run_")


def test_duplicate_task_ids_name_the_first_definition(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
tasks:
  - {id: a, goal: A, report_path: out/a1.md}
  - {id: a, goal: A again, report_path: out/a2.md}
verify:
  - {id: a, goal: V, report_path: out/v.md}
""",
                   "rlm.yaml:6:10: tasks[1].id: duplicate task id 'a' (first defined at tasks[0])",
                   "rlm.yaml:8:10: verify[0].id: duplicate task id 'a' (first defined at tasks[0])")


def test_depends_on_an_unknown_task(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
tasks:
  - {id: alpha, goal: A}
  - {id: beta, goal: B, depends_on: [alpah, zeta]}
""",
                   "rlm.yaml:6:38: tasks[1].depends_on[0]: unknown task 'alpah' (did you mean 'alpha'?); "
                   "known: alpha, beta",
                   "rlm.yaml:6:45: tasks[1].depends_on[1]: unknown task 'zeta' (did you mean 'beta'?); "
                   "known: alpha, beta")


def test_dependency_cycle_is_named(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
tasks:
  - {id: a, goal: A, depends_on: [c]}
  - {id: b, goal: B, depends_on: [a]}
  - {id: c, goal: C, depends_on: [b]}
  - {id: d, goal: D, depends_on: [d]}
""",
                   "rlm.yaml:5:34: tasks[0].depends_on: dependency cycle: a -> c -> b -> a",
                   "rlm.yaml:8:35: tasks[3].depends_on[0]: task 'd' depends on itself")


def test_two_tasks_with_the_same_report_path(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
tasks:
  - {id: a, goal: A, report_path: out/a.md}
  - {id: b, goal: B, report_path: out/./a.md}
""",
                   "rlm.yaml:6:35: tasks[1].report_path: report_path 'out/./a.md' is also the report of task 'a'")


def test_explicit_report_path_colliding_with_a_default_one(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
tasks:
  - {id: a, goal: A}
  - {id: b, goal: B, report_path: .rlm/runs/r/artifacts/reports/a.md}
""",
                   "rlm.yaml:6:35: tasks[1].report_path: report_path '.rlm/runs/r/artifacts/reports/a.md' "
                   "is also the report of task 'a'")


def test_absolute_paths_are_refused(repo: Repo) -> None:
    repo.write("ok\n", "ok.txt")
    assert_invalid(repo, HEADER + """\
tasks:
  - id: a
    goal: A
    report_path: /tmp/a.md
    inputs: [ok.txt, /etc/passwd]
""",
                   "rlm.yaml:7:18: tasks[0].report_path: report_path must be relative to the repository root, "
                   "got absolute path '/tmp/a.md'",
                   "rlm.yaml:8:22: tasks[0].inputs[1]: inputs must be relative to the repository root, "
                   "got absolute path '/etc/passwd'")


def test_paths_escaping_the_root_are_refused(repo: Repo) -> None:
    repo.write("ok\n", "sub/x")
    repo.write("ok\n", "fine.py")
    assert_invalid(repo, HEADER + """\
tasks:
  - id: a
    goal: A
    report_path: ../a.md
    inputs: [sub/../../x.py, sub/../fine.py]
    watch: [../elsewhere/*.md]
""",
                   "rlm.yaml:7:18: tasks[0].report_path: report_path '../a.md' escapes the repository root",
                   "rlm.yaml:8:14: tasks[0].inputs[0]: inputs 'sub/../../x.py' escapes the repository root",
                   "rlm.yaml:9:13: tasks[0].watch[0]: watch '../elsewhere/*.md' escapes the repository root")


def test_unknown_compute_tier(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
defaults:
  compute_tier: premium
tasks:
  - {id: a, goal: A, compute_tier: hevy}
""",
                   "rlm.yaml:5:17: defaults.compute_tier: unknown compute_tier 'premium'; "
                   "defined: heavy, standard, standard-plus",
                   "rlm.yaml:7:36: tasks[0].compute_tier: unknown compute_tier 'hevy'; "
                   "defined: heavy, standard, standard-plus (did you mean 'heavy'?)")


def test_a_tier_declared_under_tiers_is_known(repo: Repo) -> None:
    code, _, err = validate(repo, HEADER + """\
tiers:
  cheap: {model: tiny, effort: low}
tasks:
  - {id: a, goal: A, compute_tier: cheap}
""")
    assert (code, [line for line in err.splitlines() if ": warning: " not in line]) == (0, [])
    assert load_plan("rlm.yaml").tier("cheap") == Tier("cheap", "tiny", "low")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(repo: Repo, text: str) -> None:
    assert_invalid(repo, text,
                   "rlm.yaml:1:1: (root): file is empty; expected a mapping with at least run_id, goal and tasks")


def test_file_that_is_a_list(repo: Repo) -> None:
    assert_invalid(repo, "- run_id: r\n- goal: g\n",
                   "rlm.yaml:1:1: (root): expected a mapping at the top level, got a list")


def test_file_that_is_a_scalar(repo: Repo) -> None:
    assert_invalid(repo, "just words\n",
                   'rlm.yaml:1:1: (root): expected a mapping at the top level, got a string ("just words")')


def test_no_tasks(repo: Repo) -> None:
    assert_invalid(repo, HEADER + "tasks: []\n",
                   "rlm.yaml:1:1: (root): no tasks: declare at least one task under 'tasks'")


def test_command_agent_needs_a_command(repo: Repo) -> None:
    assert_invalid(repo, HEADER + "agent: {kind: command}\ntasks: [{id: a, goal: A}]\n",
                   "rlm.yaml:4:8: agent: agent kind 'command' needs 'command': the argv to run")


def test_file_not_found(repo: Repo) -> None:
    result = repo.rlm("validate", "missing.yaml")
    assert (result.code, result.out, result.err) == (2, "", "missing.yaml:1:1: (root): file not found\n")


def test_messages_name_the_file_given(repo: Repo) -> None:
    assert_invalid(repo, HEADER + "tasks: [{id: a, goal: A, compute_tier: hevy}]\n",
                   "other.yaml:4:40: tasks[0].compute_tier: unknown compute_tier 'hevy'; "
                   "defined: heavy, standard, standard-plus (did you mean 'heavy'?)", name="other.yaml")


def test_many_schema_errors_are_reported_at_once_in_file_order(repo: Repo) -> None:
    assert_invalid(repo, """\
version: 2
run_id: r
goal: g
tasks:
  - {id: a, goal: 1}
  - {id: b, goal: B, retries: -1}
  - {goal: C}
""",
                   "rlm.yaml:1:10: version: must be 1; got an integer (2)",
                   "rlm.yaml:5:19: tasks[0].goal: expected a string, got an integer (1)",
                   "rlm.yaml:6:31: tasks[1].retries: must be >= 0; got -1",
                   "rlm.yaml:7:5: tasks[2]: missing required key 'id'")


def test_many_semantic_errors_are_reported_at_once(repo: Repo) -> None:
    assert_invalid(repo, HEADER + """\
tasks:
  - {id: a, goal: A, depends_on: [nope], report_path: /abs.md}
  - {id: a, goal: A2, compute_tier: hevy, report_path: out/a2.md}
""",
                   "rlm.yaml:5:35: tasks[0].depends_on[0]: unknown task 'nope'; known: a",
                   "rlm.yaml:5:55: tasks[0].report_path: report_path must be relative to the repository root, "
                   "got absolute path '/abs.md'",
                   "rlm.yaml:6:10: tasks[1].id: duplicate task id 'a' (first defined at tasks[0])",
                   "rlm.yaml:6:37: tasks[1].compute_tier: unknown compute_tier 'hevy'; "
                   "defined: heavy, standard, standard-plus (did you mean 'heavy'?)")


def test_schema_and_semantic_errors_are_reported_together(repo: Repo) -> None:
    """The issue: "reports every problem at once". A typo in one task must not hide a duplicate id in another."""
    assert_invalid(repo, HEADER + """\
tasks:
  - {id: a, goal: A, depnds_on: [b]}
  - {id: a, goal: A2, report_path: out/a2.md}
""",
                   "rlm.yaml:5:22: tasks[0].depnds_on: unknown key 'depnds_on' (did you mean 'depends_on'?)",
                   "rlm.yaml:6:10: tasks[1].id: duplicate task id 'a' (first defined at tasks[0])")


def test_config_error_carries_every_problem(tmp_path: Path) -> None:
    (tmp_path / "rlm.yaml").write_text(HEADER + "tasks: [{id: a, goal: A, depends_on: [x, y]}]\n")
    with pytest.raises(ConfigError) as caught:
        load_plan(tmp_path / "rlm.yaml")
    assert caught.value.exit_code == 2
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        "tasks[0].depends_on[0]: unknown task 'x'; known: a",
        "tasks[0].depends_on[1]: unknown task 'y'; known: a",
    ]


@pytest.mark.slow
def test_doit_with_a_bad_config_exits_2_with_the_messages_and_runs_nothing(repo: Repo) -> None:
    repo.write(HEADER + "budgt: {}\ntasks:\n  - {id: a, goal: A, depends_on: [zz]}\n")
    (repo.root / "dodo.py").write_text((Path(__file__).resolve().parent.parent / "dodo.py").read_text())
    result = repo.doit_cli()
    assert (result.code, result.out) == (2, "")
    assert result.err.splitlines() == [
        "rlm.yaml:4:1: budgt: unknown key 'budgt' (did you mean 'budget'?)",
        "rlm.yaml:6:35: tasks[0].depends_on[0]: unknown task 'zz'; known: a",
    ]
    assert not (repo.root / ".rlm" / "runs").exists()


def test_doit_with_a_semantic_error_exits_2_without_traceback(repo: Repo) -> None:
    repo.write(HEADER + "tasks:\n  - {id: a, goal: A, depends_on: [a]}\n")
    result = repo.doit()  # in-process, as dodo.py loads it
    assert (result.code, result.out) == (2, "")
    assert result.err == "rlm.yaml:5:35: tasks[0].depends_on[0]: task 'a' depends on itself\n"
    assert "Traceback" not in result.err


def test_validate_a_valid_file(repo: Repo) -> None:
    code, out, err = validate(repo, HEADER + """\
tasks:
  - {id: a, goal: A}
  - {id: b, goal: B}
verify:
  - {id: v, goal: V, depends_on: [a, b]}
""")
    assert (code, out) == (0, "rlm.yaml: valid: run r, 2 map tasks, 1 verify tasks\n")
    # valid, but workers get neither invariants nor a verification baseline: warnings, still exit 0
    assert err == ("rlm.yaml:1:1: contract.invariants: warning: workers get no invariants to keep\n"
                   "rlm.yaml:1:1: contract.verification: warning: no verification commands: "
                   "workers cannot compare against a baseline\n")


def test_valid_file_yields_the_plan_with_defaults_applied(repo: Repo) -> None:
    repo.write("readme\n", "README.md")
    repo.write("b = 1\n", "src/b.py")
    repo.write(textwrap.dedent("""\
        version: 1
        run_id: demo
        goal: Map the code.
        hint_paths: [README.md]
        budget: {max_workers: 9}
        agent: {kind: codex, sandbox: read-only, timeout: 90}
        tiers:
          standard: {model: my-mini}
        defaults:
          granularity: micro
          compute_tier: heavy
          inputs: [README.md]
        tasks:
          - id: a
            goal: A
          - id: b
            goal: B
            granularity: macro
            compute_tier: standard
            depends_on: [a]
            inputs: [src/b.py]
            watch: ["docs/*.md"]
            report_path: out/./b.md
            agent: {kind: claude, args: [--verbose]}
        verify:
          - id: v
            goal: V
            depends_on: [a, b]
            required_sections: [Evidence, Contract Compliance]
        """))
    plan = load_plan("rlm.yaml")
    assert (plan.run_id, plan.goal, plan.hint_paths, plan.run_dir) == ("demo", "Map the code.", ("README.md",),
                                                                       ".rlm/runs/demo")
    assert plan.root == repo.root.resolve()
    assert plan.budget == Budget(max_iterations=None, max_workers=9, max_inflight=4)
    assert {t.name: (t.model, t.effort) for t in plan.tiers} == {
        "standard": ("my-mini", "medium"),
        "standard-plus": ("gpt-5.2-codex", "medium"),
        "heavy": ("gpt-5.2-codex", "xhigh"),
    }
    a, b, v = plan.tasks
    assert [(t.id, t.mode, t.doit_name) for t in plan.tasks] == [("a", "map", "map:a"), ("b", "map", "map:b"),
                                                                 ("v", "verify", "verify:v")]
    assert (a.granularity, a.compute_tier, a.inputs, a.depends_on, a.watch) == ("micro", "heavy", ("README.md",),
                                                                                (), ())
    assert a.report_path == ".rlm/runs/demo/artifacts/reports/a.md"
    assert a.required_sections == ("Contract Compliance",)
    assert a.agent == AgentSpec(kind="codex", sandbox="read-only", timeout=90)
    assert (b.granularity, b.compute_tier, b.inputs, b.depends_on, b.watch) == ("macro", "standard", ("src/b.py",),
                                                                                ("a",), ("docs/*.md",))
    assert b.report_path == "out/b.md"
    assert b.agent == AgentSpec(kind="claude", sandbox="read-only", timeout=90, args=("--verbose",))
    assert (v.report_path, v.depends_on, v.inputs) == (".rlm/runs/demo/artifacts/reports/v.md", ("a", "b"),
                                                       ("README.md",))
    assert v.required_sections == ("Evidence", "Contract Compliance")


def test_the_plan_is_frozen(repo: Repo) -> None:
    repo.write(HEADER + "tasks: [{id: a, goal: A}]\n")
    plan = load_plan("rlm.yaml")
    with pytest.raises(AttributeError):
        plan.run_id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        plan.tasks[0].goal = "other"  # type: ignore[misc]


def test_the_repository_example_is_valid(repo: Repo) -> None:
    example = Path(__file__).resolve().parent.parent / "rlm.yaml"
    assert example.read_text().startswith("# yaml-language-server: $schema=rlm_tasks/schemas/rlm.schema.json\n")
    repo.write(example.read_text())
    for line in example.read_text().splitlines():  # the files its inputs: name
        if line.strip().startswith("inputs:"):
            for rel in line.split("[", 1)[1].rstrip("]").split(", "):
                repo.write((example.parent / rel).read_text(), rel)
    result = repo.rlm("validate")
    # the decision cites the example's report: until a run wrote it, validation says where it is cited
    assert (result.code, result.out) == (2, "")
    assert result.err.endswith(": decision.conclusions[0].evidence[0]: evidence path "
                               "'.rlm/runs/example/artifacts/reports/summary.md' does not exist\n")
    cited = repo.path(".rlm/runs/example/artifacts/reports/summary.md")
    cited.parent.mkdir(parents=True)
    cited.write_text("# summary\n")
    data = yaml.safe_load(example.read_text())
    for rel in [*data.get("hint_paths", []), *(p for t in data["tasks"] for p in t.get("context_paths", []))]:
        repo.write("a file the example points workers at\n", rel)  # or validate warns that it does not exist
    result = repo.rlm("validate")
    assert (result.code, result.out, result.err) == (0, "rlm.yaml: valid: run example, 5 map tasks, 1 verify tasks\n",
                                                     "")

