"""Confinement: no route out of the workspace for Read, Edit or Grep (.., absolute paths, symlinks, odd names)."""
import pytest

from tools import execute


@pytest.fixture
def layout(tmp_path):
    """ws/ is the workspace; outside/ holds a secret next to it, reachable through several symlinks in ws/."""
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir(), outside.mkdir()
    (outside / "secret.txt").write_text("SECRET = 1\n")
    (ws / "inside.txt").write_text("SECRET = 0\n")
    (ws / "sub").mkdir()
    (ws / "link_file").symlink_to(outside / "secret.txt")
    (ws / "link_dir").symlink_to(outside)
    (ws / "sub" / "up").symlink_to("../..")  # relative link that climbs out
    (ws / "dangling").symlink_to(outside / "not_yet.txt")
    (ws / "loop_a").symlink_to("loop_b")
    (ws / "loop_b").symlink_to("loop_a")
    return ws, outside


ESCAPES = ["../outside/secret.txt", "sub/../../outside/secret.txt", "link_file", "link_dir/secret.txt",
           "sub/up/outside/secret.txt", "link_dir/../outside/secret.txt"]


def calls(path):
    return [("Read", {"path": path}), ("Grep", {"pattern": "SECRET", "path": path}),
            ("Edit", {"path": path, "old_string": "SECRET = 1", "new_string": "PWNED"})]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_are_refused_by_every_tool(layout, path):
    ws, outside = layout
    for name, args in calls(path):
        result = execute(name, args, ws)
        assert not result.ok and "outside the workspace" in result.output, (name, path, result.output)
    assert (outside / "secret.txt").read_text() == "SECRET = 1\n"


def test_absolute_paths_are_refused_with_the_relative_form_suggested(layout):
    ws, outside = layout
    for name, args in calls(str(outside / "secret.txt")):
        result = execute(name, args, ws)
        assert not result.ok and "absolute paths are not allowed" in result.output
    result = execute("Read", {"path": str(ws / "inside.txt")}, ws)
    assert not result.ok and "Use 'inside.txt' instead" in result.output


def test_edit_cannot_create_files_outside(layout):
    ws, outside = layout
    for path in ["../outside/new.txt", "link_dir/new.txt", "dangling", "link_dir/deeper/new.txt"]:
        result = execute("Edit", {"path": path, "old_string": "", "new_string": "x"}, ws)
        assert not result.ok and "outside the workspace" in result.output, path
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_grep_of_the_whole_workspace_does_not_follow_links_out(layout):
    ws, _ = layout
    assert execute("Grep", {"pattern": "SECRET"}, ws).output == "inside.txt:1:SECRET = 0"


def test_symlink_loops_and_odd_paths_are_clear_errors(layout):
    ws, _ = layout
    for path in ["loop_a", "a\x00b", "", "   ", "x" * 5000, "d/" * 3000 + "f"]:
        for name, args in calls(path):
            if name == "Grep" and path == "":
                continue  # Grep's path is optional: empty means the whole workspace
            result = execute(name, args, ws)
            assert not result.ok and "unexpected error" not in result.output, (name, path[:20], result.output)


def test_links_that_stay_inside_are_allowed(layout):
    ws, _ = layout
    (ws / "alias.txt").symlink_to("inside.txt")
    (ws / "sub" / "back").symlink_to("..")
    assert execute("Read", {"path": "alias.txt"}, ws).output == "     1\tSECRET = 0"
    assert execute("Read", {"path": "sub/back/inside.txt"}, ws).ok
    assert execute("Read", {"path": "sub/../inside.txt"}, ws).ok  # `..` that stays inside is just a path
    assert execute("Grep", {"pattern": "SECRET", "path": "alias.txt"}, ws).output == "inside.txt:1:SECRET = 0"


def test_tilde_is_not_expanded(layout):
    ws, _ = layout
    result = execute("Read", {"path": "~/.bashrc"}, ws)
    assert not result.ok and "does not exist" in result.output
