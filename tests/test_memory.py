"""The first run's memory: loading a plan leaves no per-task garbage behind (it runs with the garbage
collector off), and the indented JSON of prompts is json.dumps's, byte for byte (bench/memory.py measures the
peak itself)."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Repo
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from rlm_tasks import jsonio
from rlm_tasks.tasks import doit_namespace

pytestmark = pytest.mark.slow  # see CONTRIBUTING.md: the fast subset


@pytest.fixture(autouse=True)
def _hypothesis_home(tmp_path: Path) -> None:
    set_hypothesis_home_dir(str(tmp_path / ".hypothesis"))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, database=None)
@given(json_values)
def test_indented_is_json_dumps_byte_for_byte(value: Any) -> None:
    assert jsonio.indented(value) == json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def test_indented_keeps_tuples_as_lists_and_non_ascii_text() -> None:
    assert jsonio.indented({"b": ("é", []), "a": {}}) == '{\n  "a": {},\n  "b": [\n    "é",\n    []\n  ]\n}'


TASKS = 300


def test_a_first_run_leaves_no_garbage_per_task_while_the_collector_is_off(repo: Repo) -> None:
    """What dodo.py does: validate rlm.yaml afresh, then generate the tasks, rendering every prompt to tell fresh
    from stale, with the collector off; what that leaves for the collector must not grow with the plan."""
    (repo.root / "src").mkdir()
    for i in range(TASKS):
        (repo.root / "src" / f"f{i}.txt").write_text(f"input {i}\n", encoding="utf-8")
    repo.write_command([{"id": f"t{i}", "goal": f"Task {i}.", "inputs": [f"src/f{i}.txt"]} for i in range(TASKS)])
    repo.monkeypatch.chdir(repo.root)
    gc.collect()
    try:
        namespace = doit_namespace("rlm.yaml")
        generated = list(namespace["task_map"]())
        assert gc.isenabled() is False  # loading turned it off; the run session turns it back on
        left = gc.collect()
    finally:
        gc.enable()
    assert len(generated) == TASKS + 1  # and the group task `map`
    assert left < TASKS


def test_holds_is_true_only_for_the_exact_bytes_write_json_writes(tmp_path: Path) -> None:
    data = {"tasks": [{"id": f"t{i}", "goal": "é" * i} for i in range(3000)], "iteration": 1}
    path = tmp_path / "plan.json"
    jsonio.write_json(path, data)
    assert path.read_text(encoding="utf-8") == jsonio.dumps(data)  # streamed in batches, the same bytes
    assert jsonio.holds(path, data) is True
    text = path.read_text(encoding="utf-8")
    for changed in (text.replace('"t2999"', '"t2998"'), text + "\n", text[:-1], text.replace("\n", "\r\n")):
        path.write_text(changed, encoding="utf-8", newline="")
        assert jsonio.holds(path, data) is False
    assert jsonio.holds(tmp_path / "missing.json", data) is False


UNUSUAL = [
    "",
    "- a\n- b\n",
    "tasks: &all\n  - {id: a}\nverify: *all\n",
    "tasks:\n  - &one {id: a, goal: x}\n  - *one\n  - {<<: *one, id: b}\n",
    "base: &b {goal: x}\n<<: *b\ntasks: []\n",
    "tasks: [{id: a}]\ntasks: [{id: b}]\n",
    "1: x\ntasks: []\n",
    "tasks:\n  - id: a\n    id: b\n",
    "a: 1\n---\nb: 2\n",
    "tasks:\n  - id: [unclosed\n",
    "? [a, b]\n: c\n",
    "tasks: !!str 12\nverify:\n  - id: !!int '3'\n",
    "&root {tasks: []}\n",
    "tasks:\n  - id: a\n    goal: 'x'\n  - id: b\nrun_id: &r r\ngoal: *r\n",
]


@pytest.mark.parametrize("text", UNUSUAL)
def test_the_streamed_parse_gives_the_whole_tree_parse_s_data_or_error(text: str) -> None:
    """A 10,000-task rlm.yaml is built one task at a time; anything unusual is left to the whole-tree parse."""
    from rlm_tasks.config import yamlpos

    def outcome(parse: Any) -> Any:
        try:
            return parse()
        except yamlpos.YamlSyntaxError as exc:
            return (str(exc), exc.position)

    assert outcome(lambda: yamlpos.load(text).data) == outcome(lambda: yamlpos._parse(text, located=False)[0])


def test_share_strings_gives_equal_values_one_object_and_the_same_data() -> None:
    text = '{"t1": {"contract": "c0ffee", "n": 1, "d": {"x": "c0ffee"}}, "t2": {"contract": "c0ffee", "n": 1.5}}'
    shared = jsonio.loads(text, share_strings=True)
    assert shared == json.loads(text)
    assert shared["t1"]["contract"] is shared["t2"]["contract"] is shared["t1"]["d"]["x"]
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        jsonio.loads('{"a": NaN}', share_strings=True)


finite_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)),
    max_leaves=12,
)  # provenance refuses NaN and Infinity on read and write alike
entries = st.dictionaries(st.text(max_size=8), st.dictionaries(st.text(max_size=6), finite_values, max_size=5),
                          max_size=6)


@settings(max_examples=200, deadline=None, database=None)
@given(entries, st.text(max_size=6))
def test_provenance_is_written_as_write_json_writes_it_from_packed_entries(tasks: dict[str, Any], run_id: str) -> None:
    """The store keeps each entry as its compact JSON; the file is still jsonio's indented JSON, byte for byte."""
    from rlm_tasks.state.provenance import FORMAT_VERSION, _file_pieces, pack

    packed = {worker_id: pack(entry) for worker_id, entry in tasks.items()}
    whole = {"version": FORMAT_VERSION, "run_id": run_id, "tasks": tasks}
    assert "".join(_file_pieces(run_id, packed)) == jsonio.dumps(whole)


def test_the_inventory_a_run_writes_row_by_row_is_reduce_state(repo: Repo) -> None:
    """A run writes reduce_state.json from rows kept as tuples; the file holds what reduce_state returns."""
    from rlm_tasks.phases import reduce
    from rlm_tasks.state.context import load_context

    repo.write_command([{"id": "a", "goal": "A."}, {"id": "b", "goal": "B.", "depends_on": ["a"]},
                        {"id": "c", "goal": "C."}], {"c": {"exit": 3}}, defaults={"retries": 0})
    assert repo.doit().code == 1  # c failed: its row says so
    written = json.loads((repo.run_dir / "reduce_state.json").read_text(encoding="utf-8"))
    state = reduce.reduce_state(load_context("rlm.yaml"))
    assert [row["state"] for row in written["tasks"]] == ["fresh", "fresh", "failed"]
    assert written == state
