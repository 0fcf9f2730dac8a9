"""Edit: exact, atomic, byte-preserving replacement; creation; refusals that leave the file untouched; undo."""
import dataclasses
import json
import os
import stat

import pytest

import tools.files
from tools import execute, undo


def edit(ws, path, old, new, **extra):
    return execute("Edit", {"path": path, "old_string": old, "new_string": new, **extra}, ws)


@pytest.fixture
def ws(tmp_path):
    return tmp_path


def snapshot(path):
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, stat.S_IMODE(st.st_mode)


def test_single_replacement_with_diff_and_change(ws):
    (ws / "a.py").write_text("def f():\n    return 1\n\nprint(f())\n")
    result = edit(ws, "a.py", "return 1", "return 2")
    assert result.ok
    assert (ws / "a.py").read_text() == "def f():\n    return 2\n\nprint(f())\n"
    assert "line 2" in result.output
    assert "-    return 1\n+    return 2" in result.output and "--- a/a.py\n+++ b/a.py" in result.output
    change = result.change
    assert change.path == "a.py" and change.before == "def f():\n    return 1\n\nprint(f())\n"
    assert change.after == (ws / "a.py").read_text() and change.encoding == "utf-8"
    assert change.diff.startswith("--- a/a.py") and "+    return 2" in change.diff
    json.dumps(dataclasses.asdict(result))  # the whole result is JSON-ready


def test_regex_characters_are_literal(ws):
    (ws / "r.py").write_text("x = a.*b(c)\n")
    assert edit(ws, "r.py", "a.*b(c)", "[ok]").ok
    assert (ws / "r.py").read_text() == "x = [ok]\n"


def test_no_match_leaves_file_untouched_and_shows_closest_lines(ws):
    (ws / "m.py").write_text("import os\n\ndef parse_args(argv):\n    return argv[1:]\n")
    before = snapshot(ws / "m.py")
    result = edit(ws, "m.py", "def parse_arg(args):\n    return args[1:]", "x")
    assert not result.ok and "not found" in result.output and "not changed" in result.output
    assert "     3\tdef parse_args(argv):\n     4\t    return argv[1:]" in result.output
    assert snapshot(ws / "m.py") == before


def test_no_match_whitespace_hint(ws):
    (ws / "t.py").write_text("if x:\n\treturn 1\n")
    result = edit(ws, "t.py", "if x:\n    return 1", "pass")
    assert not result.ok and "whitespace" in result.output


def test_several_matches_refused_with_count_and_lines(ws):
    (ws / "d.py").write_text("x = 1\ny = 2\nx = 1\n\nx = 1\n")
    before = snapshot(ws / "d.py")
    result = edit(ws, "d.py", "x = 1", "x = 9")
    assert not result.ok
    assert "3 times" in result.output and "lines 1, 3, 5" in result.output and "replace_all" in result.output
    assert snapshot(ws / "d.py") == before


@pytest.mark.parametrize("flag", ["true", "True", "yes", "1"])
def test_replace_all(ws, flag):
    (ws / "d.py").write_text("x = 1\ny = 2\nx = 1\n")
    result = edit(ws, "d.py", "x = 1", "x = 9", replace_all=flag)
    assert result.ok and "2 occurrences" in result.output and "lines 1, 3" in result.output
    assert (ws / "d.py").read_text() == "x = 9\ny = 2\nx = 9\n"


def test_replace_all_false_still_demands_uniqueness(ws):
    (ws / "d.py").write_text("a a")
    assert not edit(ws, "d.py", "a", "b", replace_all="false").ok


def test_create_new_file_with_directories_and_default_mode(ws):
    result = edit(ws, "pkg/sub/new.py", "", "print('hi')\n")
    assert result.ok and "Created pkg/sub/new.py (1 line)" in result.output
    assert (ws / "pkg/sub/new.py").read_text() == "print('hi')\n"
    (ws / "reference").write_text("")  # a file made the ordinary way gets the umask's mode
    assert stat.S_IMODE(os.stat(ws / "pkg/sub/new.py").st_mode) == stat.S_IMODE(os.stat(ws / "reference").st_mode)
    assert result.change.before is None and result.change.diff.startswith("--- /dev/null")


def test_create_never_overwrites_a_non_empty_file(ws):
    (ws / "keep.py").write_text("precious\n")
    before = snapshot(ws / "keep.py")
    result = edit(ws, "keep.py", "", "overwritten")
    assert not result.ok and "already exists" in result.output
    assert snapshot(ws / "keep.py") == before


def test_create_fills_an_existing_empty_file_keeping_its_mode(ws):
    (ws / "empty.sh").write_text("")
    os.chmod(ws / "empty.sh", 0o750)
    result = edit(ws, "empty.sh", "", "echo hi\n")
    assert result.ok and result.change.before == ""
    assert stat.S_IMODE(os.stat(ws / "empty.sh").st_mode) == 0o750


def test_create_under_a_file_is_a_clear_error(ws):
    (ws / "plain").write_text("x")
    result = edit(ws, "plain/child.py", "", "x")
    assert not result.ok and "cannot create" in result.output


def test_crlf_stays_crlf(ws):
    (ws / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result = edit(ws, "w.txt", "one\ntwo", "ONE\nTWO\nextra")
    assert result.ok
    assert (ws / "w.txt").read_bytes() == b"ONE\r\nTWO\r\nextra\r\nthree\r\n"


def test_mixed_line_endings_untouched_outside_the_edit(ws):
    (ws / "mix.txt").write_bytes(b"a\r\nb\nc\r\n")
    assert edit(ws, "mix.txt", "b", "B").ok
    assert (ws / "mix.txt").read_bytes() == b"a\r\nB\nc\r\n"


@pytest.mark.parametrize("mode", [0o755, 0o640, 0o600])
def test_mode_is_kept(ws, mode):
    (ws / "s.sh").write_text("echo a\n")
    os.chmod(ws / "s.sh", mode)
    assert edit(ws, "s.sh", "a", "b").ok
    assert stat.S_IMODE(os.stat(ws / "s.sh").st_mode) == mode


def test_read_only_file_is_refused(ws):
    (ws / "ro.txt").write_text("a\n")
    os.chmod(ws / "ro.txt", 0o444)
    result = edit(ws, "ro.txt", "a", "b")
    assert not result.ok and "read-only" in result.output
    assert (ws / "ro.txt").read_text() == "a\n"


def test_no_temp_files_left_after_success_or_failure(ws, monkeypatch):
    (ws / "a.txt").write_text("hello\n")
    assert edit(ws, "a.txt", "hello", "bye").ok
    assert edit(ws, "new/b.txt", "", "x").ok
    assert not edit(ws, "a.txt", "absent", "x").ok

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tools.files.os, "replace", failing_replace)
    result = edit(ws, "a.txt", "bye", "ciao")
    assert not result.ok and "No space left" in result.output and "not changed" in result.output
    assert (ws / "a.txt").read_text() == "bye\n"
    assert sorted(p.name for p in ws.rglob("*")) == ["a.txt", "b.txt", "new"]


def test_line_number_prefixes_pasted_from_read_are_tolerated(ws):
    (ws / "p.py").write_text("def f():\n    return 1\n")
    shown = execute("Read", {"path": "p.py"}, ws).output  # "     1\tdef f():\n     2\t    return 1"
    pasted_new = shown.replace("return 1", "return 2")
    result = edit(ws, "p.py", shown, pasted_new)
    assert result.ok and "prefixes" in result.output
    assert (ws / "p.py").read_text() == "def f():\n    return 2\n"


def test_prefix_tolerance_keeps_an_unprefixed_new_string(ws):
    (ws / "p.py").write_text("a = 1\nb = 2\n")
    assert edit(ws, "p.py", "     2\tb = 2", "b = 3").ok
    assert (ws / "p.py").read_text() == "a = 1\nb = 3\n"


def test_latin1_file_round_trips_byte_for_byte(ws):
    original = b"/* caf\xe9 */\nint \xb5s = 1;\n\xff\xfe end\n"
    (ws / "l.c").write_bytes(original)
    result = edit(ws, "l.c", "int µs = 1;", "int µs = 2;")  # the text exactly as Read shows it
    assert result.ok and result.change.encoding == "latin-1"
    assert (ws / "l.c").read_bytes() == original.replace(b"= 1", b"= 2")


def test_latin1_file_refuses_characters_it_cannot_hold(ws):
    (ws / "l.c").write_bytes(b"caf\xe9\n")
    result = edit(ws, "l.c", "café", "café €")
    assert not result.ok and "latin-1" in result.output
    assert (ws / "l.c").read_bytes() == b"caf\xe9\n"


def test_unicode_edit(ws):
    (ws / "u.md").write_text("# 日本語\n絵文字 🎉\n", encoding="utf-8")
    assert edit(ws, "u.md", "🎉", "🚀✨").ok
    assert (ws / "u.md").read_text(encoding="utf-8") == "# 日本語\n絵文字 🚀✨\n"


@pytest.mark.parametrize("old,new,needle", [("same", "same", "identical")])
def test_identical_strings_refused(ws, old, new, needle):
    (ws / "f.txt").write_text("same\n")
    result = edit(ws, "f.txt", old, new)
    assert not result.ok and needle in result.output


def test_missing_file_points_to_creation(ws):
    result = edit(ws, "ghost.py", "x", "y")
    assert not result.ok and "does not exist" in result.output and "empty old_string" in result.output


def test_binary_and_directory_refused(ws):
    (ws / "blob.bin").write_bytes(b"\x00\x01abc")
    (ws / "dir").mkdir()
    assert "binary" in edit(ws, "blob.bin", "abc", "x").output
    assert "is a directory" in edit(ws, "dir", "abc", "x").output
    assert "is a directory" in edit(ws, "dir", "", "x").output
    assert (ws / "blob.bin").read_bytes() == b"\x00\x01abc"


def test_too_large_file_refused(ws, monkeypatch):
    monkeypatch.setattr(tools.files, "MAX_TEXT_BYTES", 10)
    (ws / "big.txt").write_text("x" * 100)
    result = edit(ws, "big.txt", "x", "y", replace_all="true")
    assert not result.ok and "too large" in result.output


def test_edit_through_symlink_changes_target_and_keeps_link(ws):
    (ws / "real.py").write_text("v = 1\n")
    (ws / "link.py").symlink_to("real.py")
    assert edit(ws, "link.py", "v = 1", "v = 2").ok
    assert (ws / "link.py").is_symlink() and (ws / "real.py").read_text() == "v = 2\n"


def test_diff_preview_is_short_but_change_holds_everything(ws):
    (ws / "big.py").write_text("".join(f"x{i} = {i}\n" for i in range(300)))
    result = edit(ws, "big.py", "x", "y", replace_all="true")
    assert result.ok and "diff cut" in result.output and len(result.output.split("\n")) < 70
    assert result.change.diff.count("\n+y") == 300


def test_undo_restores_exact_bytes_crlf_latin1_and_mode(ws):
    original = b"caf\xe9\r\nline two\r\n"
    (ws / "w.txt").write_bytes(original)
    os.chmod(ws / "w.txt", 0o754)
    change = edit(ws, "w.txt", "line two", "line 2").change
    result = undo(change, ws)
    assert result.ok and (ws / "w.txt").read_bytes() == original
    assert stat.S_IMODE(os.stat(ws / "w.txt").st_mode) == 0o754


def test_undo_of_creation_deletes_and_several_undos_go_newest_first(ws):
    first = edit(ws, "n.py", "", "a = 1\n").change
    second = edit(ws, "n.py", "a = 1", "a = 2").change
    assert not undo(first, ws).ok  # out of order: the file no longer holds first.after
    assert undo(second, ws).ok and (ws / "n.py").read_text() == "a = 1\n"
    assert undo(first, ws).ok and not (ws / "n.py").exists()
    assert not undo(first, ws).ok  # nothing left to undo; says so instead of raising


def test_undo_refuses_when_the_file_changed_since(ws):
    (ws / "c.py").write_text("a\n")
    change = edit(ws, "c.py", "a", "b").change
    (ws / "c.py").write_text("b\nuser typed this\n")
    result = undo(change, ws)
    assert not result.ok and "changed since" in result.output
    assert (ws / "c.py").read_text() == "b\nuser typed this\n"


# --- a save by another program between Edit's read and its write ------------------------------------------

def other_program_saves(monkeypatch, where, path, text, keep_mtime=False):
    """Make another program write `text` to `path` at `where`: right after Edit read the file
    ("after_read"), or while Edit's own write is being flushed to disk ("during_write", the slow part)."""
    real_load, real_fsync = tools.edit.load_text, tools.files.os.fsync
    saved = []

    def save():
        if saved:
            return
        st = os.stat(path) if path.exists() else None
        path.write_text(text)
        if keep_mtime and st is not None:  # a same-size save within one mtime tick: only the content tells
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        saved.append(True)

    if where == "after_read":
        def load_then_save(*args, **kwargs):
            file = real_load(*args, **kwargs)
            save()
            return file
        monkeypatch.setattr(tools.edit, "load_text", load_then_save)
    else:
        def fsync_then_save(fd):
            real_fsync(fd)
            save()
        monkeypatch.setattr(tools.files.os, "fsync", fsync_then_save)
    return saved


@pytest.mark.parametrize("where", ["after_read", "during_write"])
def test_a_concurrent_save_is_never_overwritten(ws, monkeypatch, where):
    target = ws / "a.py"
    target.write_text("x = 1\ny = 2\n")
    saved = other_program_saves(monkeypatch, where, target, "x = 1\ny = 2\nz = 3  # saved by the editor\n")
    result = edit(ws, "a.py", "y = 2", "y = 20")
    assert saved and not result.ok
    assert "changed by another program" in result.output and "Read a.py again" in result.output
    assert target.read_text() == "x = 1\ny = 2\nz = 3  # saved by the editor\n"
    assert sorted(p.name for p in ws.iterdir()) == ["a.py"]  # no temp file left behind
    monkeypatch.undo()
    again = edit(ws, "a.py", "y = 2", "y = 20")  # what the model does next: Read, then the same edit
    assert again.ok and target.read_text() == "x = 1\ny = 20\nz = 3  # saved by the editor\n"


def test_a_same_size_save_with_the_same_mtime_is_caught_by_the_content(ws, monkeypatch):
    target = ws / "a.py"
    target.write_text("value = 1\n")
    other_program_saves(monkeypatch, "after_read", target, "value = 7\n", keep_mtime=True)
    result = edit(ws, "a.py", "value = 1", "value = 2")
    assert not result.ok and "changed by another program" in result.output
    assert target.read_text() == "value = 7\n"


def test_a_touch_between_read_and_write_loses_nothing_and_does_not_block(ws, monkeypatch):
    target = ws / "a.py"
    target.write_text("value = 1\n")
    real_load = tools.edit.load_text

    def load_then_touch(*args, **kwargs):
        file = real_load(*args, **kwargs)
        os.utime(target)
        return file
    monkeypatch.setattr(tools.edit, "load_text", load_then_touch)
    assert edit(ws, "a.py", "value = 1", "value = 2").ok and target.read_text() == "value = 2\n"


def test_a_file_created_meanwhile_by_another_program_is_not_overwritten(ws, monkeypatch):
    other_program_saves(monkeypatch, "during_write", ws / "new.py", "print('theirs')\n")
    result = edit(ws, "new.py", "", "print('ours')\n")
    assert not result.ok and "changed by another program" in result.output
    assert (ws / "new.py").read_text() == "print('theirs')\n"


def test_a_real_writer_thread_never_loses_a_save(ws):
    """A thread keeps saving the file (read, append a line, write back through atomic_write) while Edit runs:
    every Edit succeeds on what it read or refuses, and no appended line is ever lost to a stale Edit."""
    import threading
    target = ws / "log.txt"
    target.write_text("counter 0\n")
    stop = threading.Event()

    def writer():  # a careful program: read, append a line, write back unless the file changed meanwhile
        n = 1
        while not stop.is_set():
            file = tools.files.load_text(target, "log.txt")
            try:
                tools.files.atomic_write(target, (file.text + f"line {n}\n").encode(), 0o644, file.version)
                n += 1
            except tools.files.FileChanged:
                pass
    thread = threading.Thread(target=writer)
    thread.start()
    results = []
    try:
        for i in range(40):
            text = target.read_text()
            counter = next(line for line in text.splitlines() if line.startswith("counter "))
            results.append(edit(ws, "log.txt", counter, f"counter {i + 1}"))
    finally:
        stop.set()
        thread.join()
    final = target.read_text()
    assert all(r.ok or "changed by another program" in r.output for r in results), \
        [r.output for r in results if not r.ok]
    # Whatever interleaving happened, no line any writer appended is missing.
    last = max(int(line.split()[1]) for line in final.splitlines() if line.startswith("line "))
    assert [line for line in final.splitlines() if line.startswith("line ")] == \
        [f"line {n}" for n in range(1, last + 1)]
