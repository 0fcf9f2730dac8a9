"""Read: numbering, paging, caps, and every kind of file that is not plain UTF-8 text."""
import os
import time

import pytest

import tools.read
from tools import execute


def read(ws, **args):
    return execute("Read", {k: str(v) for k, v in args.items()}, ws)


@pytest.fixture
def ws(tmp_path):
    return tmp_path


def test_numbered_lines_exact_format(ws):
    (ws / "a.py").write_text("import os\n\n\tx = 1\n")
    result = read(ws, path="a.py")
    assert result.ok
    assert result.output == "     1\timport os\n     2\t\n     3\t\tx = 1"


def test_last_line_without_newline_and_single_newline(ws):
    (ws / "a.txt").write_text("one\ntwo")
    assert read(ws, path="a.txt").output == "     1\tone\n     2\ttwo"
    (ws / "b.txt").write_text("\n")
    assert read(ws, path="b.txt").output == "     1\t"


def test_offset_and_limit_page_through_the_file(ws):
    (ws / "f.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    result = read(ws, path="f.txt", offset=4, limit=3)
    assert result.ok
    body, footer = result.output.rsplit("\n", 1)
    assert body == "     4\tline 4\n     5\tline 5\n     6\tline 6"
    assert "offset=7" in footer and "of 10" in footer
    assert "offset=" not in read(ws, path="f.txt", offset=8, limit=3).output  # reaches the end: no footer


def test_default_limit_is_2000_lines(ws):
    (ws / "long.txt").write_text("x\n" * 2500)
    out = read(ws, path="long.txt").output
    assert "  2000\tx" in out and "  2001\t" not in out
    assert "offset=2001" in out and "of 2500" in out


@pytest.mark.parametrize("offset,limit,needle", [(0, 5, "counted from 1"), (-3, 5, "counted from 1"),
                                                 (1, 0, "at least 1"), (50, 5, "past the end")])
def test_bad_offset_or_limit(ws, offset, limit, needle):
    (ws / "f.txt").write_text("a\nb\nc\n")
    result = read(ws, path="f.txt", offset=offset, limit=limit)
    assert not result.ok and needle in result.output
    if needle == "past the end":
        assert "has 3 lines" in result.output


def test_very_long_line_is_cut(ws):
    (ws / "min.js").write_text("a" * 10_000 + "\nshort\n")
    lines = read(ws, path="min.js").output.split("\n")
    assert lines[0] == "     1\t" + "a" * tools.read.MAX_LINE_CHARS + " [... line cut at 2000 characters]"
    assert lines[1] == "     2\tshort"


def test_multibyte_long_line_is_cut_on_a_character_boundary(ws):
    (ws / "u.txt").write_text("é" * 5000 + "\n")
    line = read(ws, path="u.txt").output
    assert "\ufffd" not in line and line.count("é") == tools.read.MAX_LINE_CHARS


def test_total_output_is_capped(ws):
    (ws / "wide.txt").write_text(("y" * 199 + "\n") * 1000)  # 200 KB
    result = read(ws, path="wide.txt")
    assert result.ok and len(result.output) <= tools.read.MAX_OUTPUT_CHARS + 200
    last_shown = int(result.output.split("\n")[-2].split("\t")[0])
    assert f"offset={last_shown + 1}" in result.output.split("\n")[-1]


def test_binary_file_is_refused(ws):
    (ws / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    result = read(ws, path="img.png")
    assert not result.ok and "binary" in result.output


def test_empty_file(ws):
    (ws / "empty.txt").write_bytes(b"")
    result = read(ws, path="empty.txt")
    assert result.ok and "empty" in result.output


def test_directory_lists_its_entries(ws):
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "main.py").write_text("")
    result = read(ws, path="src")
    assert not result.ok and "is a directory" in result.output
    assert "main.py" in result.output and "pkg/" in result.output


def test_missing_file_suggests_close_names(ws):
    (ws / "utils.py").write_text("")
    result = read(ws, path="util.py")
    assert not result.ok and "does not exist" in result.output and "'utils.py'" in result.output
    result = read(ws, path="nope/deeper/x.py")
    assert not result.ok and "does not exist" in result.output


def test_latin1_file_is_shown_not_crashed(ws):
    (ws / "legacy.c").write_bytes(b"/* caf\xe9 */\nint x;\n")
    result = read(ws, path="legacy.c")
    assert result.ok
    assert "     1\t/* café */" in result.output and "latin-1" in result.output


def test_utf8_unicode_and_crlf(ws):
    (ws / "u.txt").write_bytes("日本語 🎉\r\nsecond\r\n".encode())
    result = read(ws, path="u.txt")
    assert result.output == "     1\t日本語 🎉\n     2\tsecond"


def test_fifo_is_refused_without_hanging(ws):
    os.mkfifo(ws / "pipe")
    start = time.monotonic()
    result = read(ws, path="pipe")
    assert not result.ok and "not a regular file" in result.output
    assert time.monotonic() - start < 2


def test_files_too_big_to_decode_whole_are_paged_as_utf8(ws, monkeypatch):
    monkeypatch.setattr(tools.read, "MAX_TEXT_BYTES", 100)  # exercise the streaming path on a small file
    (ws / "big.log").write_bytes(b"ok line\n" * 20 + b"bad \xff byte\n" + b"z" * 30_000 + b"\nend\n")
    result = read(ws, path="big.log", offset=20, limit=3)
    assert result.ok
    lines = result.output.split("\n")
    assert lines[1] == "    21\tbad \ufffd byte"
    assert lines[2].endswith("[... line cut at 2000 characters]")
    assert "offset=23" in lines[3] and " of " not in lines[3]  # no total for files it did not read whole
    assert read(ws, path="big.log", offset=23).output == "    23\tend"
    past = read(ws, path="big.log", offset=99)
    assert not past.ok and "has 23 lines" in past.output
