"""Grep: format and order, what it skips (.git, binary, .gitignore, symlinks), globs, caps, bad and runaway regexes,
and the ripgrep file lister giving the same output as the Python walk."""
import os
import shutil
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

import tools.grep
from tools import execute
from tools.grep import search


def grep(ws, pattern, **args):
    return execute("Grep", {"pattern": pattern, **args}, ws)


@pytest.fixture
def repo(tmp_path):
    """A small repository with everything Grep must skip."""
    files = {
        "main.py": "import os\ndef main():\n    todo = 1  # TODO main\n",
        "src/b.py": "# TODO b\nx = 1\n",
        "src/a.py": "def a():\n    pass  # TODO a\n",
        "src/deep/c.md": "TODO in markdown\n",
        "build/out.py": "# TODO generated\n",
        "logs/app.log": "TODO log\n",
        "logs/keep.log": "TODO kept log\n",
        "docs/.gitignore": "*.txt\n",
        "docs/notes.txt": "TODO notes\n",
        "docs/readme.md": "TODO readme\n",
        ".github/ci.yml": "# TODO hidden dirs are searched\n",
        ".git/config": "TODO never in .git\n",
        ".gitignore": "build/\n*.log\n!keep.log\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "blob.bin").write_bytes(b"TODO\x00binary")
    return tmp_path


EXPECTED_TODO = [
    ".github/ci.yml:1:# TODO hidden dirs are searched",
    "docs/readme.md:1:TODO readme",
    "logs/keep.log:1:TODO kept log",
    "main.py:3:    todo = 1  # TODO main",
    "src/a.py:2:    pass  # TODO a",
    "src/b.py:1:# TODO b",
    "src/deep/c.md:1:TODO in markdown",
]


def test_format_order_and_skips(repo):
    result = grep(repo, "TODO")
    assert result.ok
    assert result.output.split("\n") == EXPECTED_TODO


def test_python_regex_features(repo):
    assert grep(repo, r"^def \w+\(\):$").output.split("\n") == ["main.py:2:def main():", "src/a.py:1:def a():"]
    assert grep(repo, r"(?i)todo = \d").output == "main.py:3:    todo = 1  # TODO main"
    assert grep(repo, r"(?<=# )TODO b").output == "src/b.py:1:# TODO b"


def test_path_scopes_the_search(repo):
    assert grep(repo, "TODO", path="src").output.split("\n") == EXPECTED_TODO[4:]
    assert grep(repo, "TODO", path="src/b.py").output == "src/b.py:1:# TODO b"
    assert grep(repo, "TODO", path="./src/../src/deep").output == "src/deep/c.md:1:TODO in markdown"


def test_deeper_gitignore_wins_and_malformed_lines_are_skipped(tmp_path):
    (tmp_path / ".gitignore").write_text("*.md\n!\n[z-a]\n\\\n")  # three lines pathspec cannot parse
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").write_text("!important.md\n")
    for name in ["top.md", "sub/other.md", "sub/important.md", "sub/code.py"]:
        (tmp_path / name).write_text("hit\n")
    assert search(tmp_path, "hit", use_rg=False).output == "sub/code.py:1:hit\nsub/important.md:1:hit"


def test_symlinked_gitignore_is_not_read(tmp_path):
    (tmp_path / "rules").write_text("*.py\n")
    (tmp_path / ".gitignore").symlink_to(tmp_path / "rules")
    (tmp_path / "a.py").write_text("hit\n")
    assert grep(tmp_path, "hit", glob="*.py").output == "a.py:1:hit"


def test_explicit_file_is_searched_even_if_ignored(repo):
    assert grep(repo, "TODO", path="build/out.py").output == "build/out.py:1:# TODO generated"


def test_explicit_ignored_directory_says_why(repo):
    result = grep(repo, "TODO", path="build")
    assert result.ok and "ignored by .gitignore" in result.output and "grep -rn" in result.output
    assert ".git" in grep(repo, "TODO", path=".git").output


@pytest.mark.parametrize("glob,expected", [
    ("*.py", ["main.py:3:", "src/a.py:2:", "src/b.py:1:"]),
    ("*.{md,yml}", [".github/ci.yml:1:", "docs/readme.md:1:", "src/deep/c.md:1:"]),
    ("src/**/*.md", ["src/deep/c.md:1:"]),
    ("src/*.py", ["src/a.py:2:", "src/b.py:1:"]),
    ("!*.py", [".github/ci.yml:1:", "docs/readme.md:1:", "logs/keep.log:1:", "src/deep/c.md:1:"]),
])
def test_globs(repo, glob, expected):
    lines = grep(repo, "TODO", glob=glob).output.split("\n")
    assert [line[:len(prefix)] for line, prefix in zip(lines, expected)] == expected and len(lines) == len(expected)


def test_no_matches_is_ok_and_says_what_was_searched(repo):
    result = grep(repo, "no-such-thing-anywhere")
    assert result.ok and "No matches" in result.output
    assert "9 text files searched" in result.output  # the 7 with TODO and the two .gitignore files
    assert "matching glob" in grep(repo, "zzz", glob="*.py").output


@pytest.mark.parametrize("pattern,needle", [("foo(", "missing ), unterminated subpattern at position 3"),
                                            ("[a-", "unterminated character set"), ("*x", "nothing to repeat"),
                                            ("", "pattern is empty")])
def test_bad_regex_is_a_clear_error(repo, pattern, needle):
    result = grep(repo, pattern)
    assert not result.ok and needle in result.output


def test_bad_glob_is_a_clear_error(repo):
    result = grep(repo, "x", glob="{a,b}" * 7)
    assert not result.ok and "glob" in result.output


def test_output_is_capped_with_a_count_of_what_was_left_out(tmp_path):
    for i in range(30):
        (tmp_path / f"f{i:02}.txt").write_text(("match " + "x" * 80 + "\n") * 100)
    result = grep(tmp_path, "match")
    assert result.ok and len(result.output) <= tools.grep.MAX_OUTPUT_CHARS + 300
    shown = result.output.count("\n")  # every line but the last note
    left = 3000 - shown
    assert f"{left} more matching lines" in result.output.split("\n")[-1]
    assert result.output.split("\n")[0].startswith("f00.txt:1:match")


def test_long_matching_line_is_cut(tmp_path):
    (tmp_path / "min.js").write_text("var a=1;" * 1000 + "\n")
    line = grep(tmp_path, "var").output
    assert line.endswith("[... line cut]") and len(line) < tools.grep.MAX_LINE_CHARS + 40


def test_latin1_crlf_and_unicode_files(tmp_path):
    (tmp_path / "l.c").write_bytes(b"caf\xe9 = 1;\r\n")
    (tmp_path / "u.py").write_text("名前 = 'π'\n", encoding="utf-8")
    assert grep(tmp_path, "café = 1;$").output == "l.c:1:café = 1;"
    assert grep(tmp_path, "名前").output == "u.py:1:名前 = 'π'"


def test_symlinks_are_not_followed(tmp_path):
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir(), outside.mkdir()
    (outside / "secret.txt").write_text("SECRET\n")
    (ws / "real.txt").write_text("SECRET inside\n")
    (ws / "to_dir").symlink_to(outside)
    (ws / "to_file.txt").symlink_to(outside / "secret.txt")
    (ws / "loop").symlink_to(ws)
    (ws / "inner_link.txt").symlink_to(ws / "real.txt")
    assert grep(ws, "SECRET").output == "real.txt:1:SECRET inside"


def test_fifo_is_skipped_without_hanging(tmp_path):
    (tmp_path / "ok.txt").write_text("hit\n")
    os.mkfifo(tmp_path / "pipe")
    assert grep(tmp_path, "hit").output == "ok.txt:1:hit"
    assert "not a regular file" in grep(tmp_path, "hit", path="pipe").output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads directories whatever their mode")
def test_unreadable_directory_is_skipped(tmp_path):
    (tmp_path / "ok.txt").write_text("hit\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "x.txt").write_text("hit\n")
    os.chmod(locked, 0)
    try:
        result = grep(tmp_path, "hit")
    finally:
        os.chmod(locked, stat.S_IRWXU)
    assert result.output == "ok.txt:1:hit"


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path):
    deep = tmp_path.joinpath(*["d"] * 150)
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("found\n")
    # Allow the search 100 frames, fewer than the tree is deep: a recursive walk would fail.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 100)
    try:
        output = search(tmp_path, "found").output
    finally:
        sys.setrecursionlimit(limit)
    assert output == "d/" * 150 + "bottom.txt:1:found"


def test_runaway_regex_is_stopped_by_the_timeout(tmp_path):
    (tmp_path / "evil.txt").write_text("a" * 40 + "!\n")
    start = time.monotonic()
    with pytest.raises(tools.grep.ToolError, match="took longer than 1 s"):
        tools.grep.run(tmp_path, "(a+)+$", timeout=1.0)
    assert time.monotonic() - start < 5


def test_cancel_stops_a_running_search(tmp_path):
    (tmp_path / "evil.txt").write_text("a" * 40 + "!\n")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.monotonic()
    result = execute("Grep", {"pattern": "(a+)+$"}, tmp_path, cancel=cancel)
    assert not result.ok and "interrupted" in result.output
    assert time.monotonic() - start < 2


def test_modules_in_the_current_directory_cannot_hijack_the_search_process(tmp_path, monkeypatch):
    for module in ["json", "re", "pathspec", "tools"]:
        (tmp_path / f"{module}.py").write_text("raise SystemExit('hijacked')\n")
    monkeypatch.chdir(tmp_path)  # the agent runs in the user's repository
    assert grep(tmp_path, "hijacked", glob="json.py").output == "json.py:1:raise SystemExit('hijacked')"


def test_relative_workspace(repo, monkeypatch):
    monkeypatch.chdir(repo / "src")
    assert execute("Grep", {"pattern": "TODO b"}, Path(".")).output == "b.py:1:# TODO b"


def test_in_process_search_equals_the_tool(repo):
    assert search(repo, "TODO", glob="*.py").output == grep(repo, "TODO", glob="*.py").output


def _fake_rg(tmp_path, monkeypatch):
    """An `rg` on PATH that lists files the way `rg --files --null` does (./-prefixed, NUL-separated, no symlinks).
    It ignores .gitignore, so it is only used on trees without one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rg").write_text("#!/bin/sh\nexec find . -name .git -prune -o -type f -print0\n")
    os.chmod(bin_dir / "rg", 0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_rg_file_lister_path_gives_identical_output(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    for name in ["z.py", "a/b.py", "a.py", "a/.hidden/c.py", ".git/HEAD"]:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text("hit 1\nmiss\nhit 2\n")
    (ws / "a" / "link.py").symlink_to(ws / "z.py")
    expected = search(ws, "hit", use_rg=False).output
    _fake_rg(tmp_path, monkeypatch)
    assert shutil.which("rg") == str(tmp_path / "bin" / "rg")
    assert search(ws, "hit").output == expected
    assert search(ws, "hit", path="a").output == search(ws, "hit", path="a", use_rg=False).output
    assert expected.split("\n")[0] == "a.py:1:hit 1" and "link.py" not in expected and ".git" not in expected


@pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep is not installed")
def test_real_rg_matches_python_walk(repo):
    for path in ["", "src", "docs"]:
        for glob in ["", "*.py", "!*.md"]:
            assert search(repo, "TODO", path, glob).output == search(repo, "TODO", path, glob, use_rg=False).output
