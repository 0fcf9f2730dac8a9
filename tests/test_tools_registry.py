"""execute(): tool names, argument checking and parsing, the never-raise guarantee, and the spec itself."""
import dataclasses
import inspect
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tools.registry
from tools import SPECS, ToolResult, execute


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\nbeta\n")
    return tmp_path


@pytest.mark.parametrize("name,needle", [
    ("read", "Did you mean Read?"), ("grep ", "Did you mean Grep?"), ("Reed", "Did you mean Read?"),
    ("Write", "The tools are Read, Edit, Grep, Bash"), ("", "no tool name"), (None, "no tool name"),
    (42, "no tool name")])
def test_unknown_tool_names(ws, name, needle):
    result = execute(name, {"path": "a.txt"}, ws)
    assert not result.ok and needle in result.output


def test_missing_required_arguments_name_them_and_show_usage(ws):
    result = execute("Edit", {"path": "a.txt"}, ws)
    assert not result.ok and "missing its required arguments 'old_string', 'new_string'" in result.output
    assert "replace_all (optional)" in result.output
    assert "missing its required argument 'path'" in execute("Read", {}, ws).output
    assert "missing its required argument 'path'" in execute("Read", None, ws).output


def test_unknown_argument_suggests_the_right_one(ws):
    result = execute("Read", {"file_path": "a.txt"}, ws)
    assert not result.ok and "no argument 'file_path'" in result.output and "did you mean 'path'?" in result.output
    assert "no argument 1" in execute("Read", {1: "a.txt"}, ws).output


@pytest.mark.parametrize("args,needle", [
    ({"path": None}, "must be text, not NoneType"),
    ({"path": ["a.txt"]}, "must be text, not list"),
    ({"path": "a.txt", "offset": "two"}, "offset must be a whole number"),
    ({"path": "a.txt", "offset": "1.5"}, "offset must be a whole number"),
    ({"path": "a.txt", "limit": "9" * 5000}, "limit must be a whole number"),
])
def test_malformed_values(ws, args, needle):
    result = execute("Read", args, ws)
    assert not result.ok and needle in result.output


def test_arguments_that_are_not_a_mapping(ws):
    result = execute("Read", ["a.txt"], ws)
    assert not result.ok and "name/value pairs" in result.output


def test_numbers_are_parsed_leniently(ws):
    assert execute("Read", {"path": "a.txt", "offset": " 2 ", "limit": "+1"}, ws).output == "     2\tbeta"
    assert execute("Read", {"path": "a.txt", "offset": 2}, ws).output == "     2\tbeta"  # from a JSON session
    assert execute("Read", {"path": "a.txt", "offset": "", "limit": ""}, ws).ok  # empty optional = default


@pytest.mark.parametrize("flag,ok", [("true", True), ("FALSE", False), (" yes ", True), ("0", False), ("", False),
                                     (True, True), ("maybe", None)])
def test_bool_parsing(ws, flag, ok):
    (ws / "d.txt").write_text("x x")
    result = execute("Edit", {"path": "d.txt", "old_string": "x", "new_string": "y", "replace_all": flag}, ws)
    if ok is None:
        assert not result.ok and "must be true or false" in result.output
    else:
        assert result.ok == ok
        assert (ws / "d.txt").read_text() == ("y y" if ok else "x x")


def test_missing_workspace(tmp_path):
    result = execute("Read", {"path": "a.txt"}, tmp_path / "nowhere")
    assert not result.ok and "not an existing directory" in result.output


def test_unexpected_exceptions_become_results(ws, monkeypatch):
    def broken(workspace, path, offset=1, limit=1):
        raise KeyError("bug")

    monkeypatch.setitem(tools.registry._RUNNERS, "Read", broken)
    result = execute("Read", {"path": "a.txt"}, ws)
    assert not result.ok and "unexpected error (KeyError: 'bug')" in result.output


def test_outputs_are_valid_utf8_even_for_undecodable_file_names(ws):
    os.mkdir(os.path.join(os.fsencode(ws), b"dir"))
    with open(os.path.join(os.fsencode(ws), b"dir", b"caf\xe9.txt"), "w") as f:
        f.write("needle\n")
    for result in [execute("Grep", {"pattern": "needle"}, ws), execute("Read", {"path": "dir"}, ws)]:
        result.output.encode("utf-8")  # would raise on a lone surrogate
        assert "caf" in result.output


def test_results_are_json_ready(ws):
    for result in [execute("Read", {"path": "a.txt"}, ws),
                   execute("Edit", {"path": "a.txt", "old_string": "beta", "new_string": "gamma"}, ws)]:
        assert json.loads(json.dumps(dataclasses.asdict(result)))["ok"] is True


def test_every_spec_matches_its_runner():
    for name, spec in SPECS.items():
        params = inspect.signature(tools.registry._RUNNERS[name]).parameters
        assert set(spec.arg_names) <= set(params), name
        for arg in spec.args:
            assert arg.kind in ("str", "int", "bool") and arg.description
            assert (params[arg.name].default is inspect.Parameter.empty) == arg.required, (name, arg.name)
        assert spec.description and spec.required


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["Read", "Edit", "read", "Nope"]),
       args=st.dictionaries(st.sampled_from(["path", "offset", "limit", "old_string", "new_string", "replace_all",
                                             "bogus"]),
                            st.one_of(st.text(max_size=30), st.integers(), st.none(), st.booleans(),
                                      st.sampled_from(["a.txt", "../a.txt", "/etc/passwd", "sub/x.txt", "-1", "0"])),
                            max_size=5))
def test_execute_never_raises(ws, name, args):
    result = execute(name, args, ws)
    assert isinstance(result, ToolResult) and isinstance(result.output, str) and result.output
    assert "unexpected error" not in result.output
    assert not (ws.parent / "a.txt").exists() and not (ws / ".." / "etc").exists()
