"""Sessions on disk (agent/session.py), permissions (agent/permissions.py) and start-up checks (agent/setup.py)."""
import json
import os
import time

import pytest

from agent.permissions import Permissions, PermissionsError, parse_allow
from agent.session import Session, SessionError, sessions_dir

CONVO = [{"role": "user", "content": "hi ünï"}, {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]


def test_save_and_load_roundtrip_as_conversation_jsonl(tmp_path):
    s = Session.new(tmp_path, workspace=tmp_path / "repo", model="m")
    s.save([])
    assert not s.path.exists()  # nothing said: no file
    s.save(CONVO)
    lines = s.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["messages"] == CONVO  # what the SFT loader reads
    loaded = Session.load(s.id, tmp_path)
    assert loaded.messages == CONVO and loaded.id == s.id and loaded.workspace == tmp_path / "repo"
    assert s.path.parent == sessions_dir(tmp_path)
    assert not list(s.path.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_load_picks_latest_by_default_and_matches_prefixes(tmp_path):
    a = Session(sessions_dir(tmp_path), "20250101-000000-aaaa")
    b = Session(sessions_dir(tmp_path), "20250102-000000-bbbb")
    b.save(CONVO)
    a.save(CONVO[:1])
    os.utime(b.path, (time.time() - 100, time.time() - 100))
    assert Session.load(None, tmp_path).id == a.id  # most recently updated, not newest id
    assert Session.load("20250102", tmp_path).id == b.id
    with pytest.raises(SessionError, match="matches 2 sessions"):
        Session.load("2025", tmp_path)
    with pytest.raises(SessionError, match="no session 'zzz'.*recent sessions: 20250101"):
        Session.load("zzz", tmp_path)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(SessionError, match="no saved sessions.*nanocode chat"):
        Session.load(None, tmp_path)
    d = sessions_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(SessionError, match="broken.jsonl is not a session file"):
        Session.load("broken", tmp_path)
    (d / "odd.jsonl").write_text(json.dumps({"messages": [{"role": "assistant", "content": [{"type": "x"}]}]}))
    with pytest.raises(SessionError, match="odd.jsonl is not a session file.*unknown content part type"):
        Session.load("odd", tmp_path)


def test_preferences_are_appended_beside_the_sessions(tmp_path):
    s = Session.new(tmp_path)
    s.add_preference({"messages": CONVO[:1], "rejected": CONVO[1], "chosen": None, "note": "no"})
    s.add_preference({"messages": CONVO[:1], "rejected": CONVO[1], "chosen": CONVO[1], "note": ""})
    recs = [json.loads(x) for x in s.preferences_path.read_text().splitlines()]
    assert [r["note"] for r in recs] == ["no", ""] and all(r["session"] == s.id for r in recs)
    assert s.preferences_path.parent == sessions_dir(tmp_path) / "preferences"
    s.save(CONVO)
    assert Session.load(None, tmp_path).id == s.id  # preference files are not mistaken for sessions


def test_fresh_session_gets_a_new_id_in_the_same_place(tmp_path):
    s = Session.new(tmp_path, workspace=tmp_path)
    f = s.fresh()
    assert f.id != s.id and f.dir == s.dir and f.workspace == tmp_path and f.messages == []


def test_parse_allow():
    assert parse_allow("Read,grep, BASH") == ("Read", "Grep", "Bash")
    assert parse_allow(["Read", "Read,Edit"]) == ("Read", "Edit")
    assert parse_allow(None) == () and parse_allow("") == ()
    with pytest.raises(PermissionsError, match="unknown tool 'Fetch'; the tools are Read, Edit, Grep, Bash"):
        parse_allow("Read,Fetch")


def test_permissions_policy():
    p = Permissions(["Read"])
    assert p.preapproved("Read") and not p.preapproved("Bash")
    p.record("Bash", ("allow", ""))
    assert not p.preapproved("Bash")  # once only
    p.record("Bash", ("always", ""))
    assert p.preapproved("Bash") and not p.preapproved("Edit")
    p.record("Edit", ("reject", "no"))
    assert not p.preapproved("Edit")
    with pytest.raises(PermissionsError, match="unknown permission answer"):
        p.record("Edit", ("sure", ""))
    yes = Permissions(yes=True)
    assert all(yes.preapproved(t) for t in ("Read", "Edit", "Grep", "Bash"))
    assert "WITHOUT asking" in yes.summary() and "Read" in p.summary()
    assert "asks for permission" in Permissions().summary()
