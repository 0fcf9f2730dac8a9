"""Start-up (agent/setup.py) and the model lookup under it (nanocode/lookup.py): the test suite's own temporary
home (tests/conftest.py), dangling links in models/, and the --sandbox setting."""
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

import tools.sandbox
from agent.setup import SetupError, prepare
from nanocode import lookup


def real_home() -> Path:
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def write_model(directory: Path, mtime: float | None = None) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    if mtime is not None:
        os.utime(directory / "config.json", (mtime, mtime))
    return directory


def test_no_test_can_write_into_the_real_nanocode_home(isolated_home, tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp().resolve()
    real = real_home() / ".cache" / "nanocode"
    for home in (lookup.nanocode_home(), lookup.models_dir(), Path.home(), Path("~").expanduser()):
        assert home.resolve().is_relative_to(base) and not home.resolve().is_relative_to(real)
    monkeypatch.delenv("NANOCODE_HOME")  # the fallback (~/.cache/nanocode) is temporary too: $HOME is
    assert lookup.nanocode_home() == isolated_home / ".cache" / "nanocode"
    monkeypatch.setenv("NANOCODE_HOME", "")
    assert lookup.nanocode_home().resolve().is_relative_to(base)
    # ... and so is what a process started by a test sees
    child = subprocess.run([sys.executable, "-c", "from nanocode.lookup import models_dir; print(models_dir())"],
                           capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    assert Path(child.stdout.strip()).resolve().is_relative_to(base)


def test_what_a_test_publishes_stays_in_its_own_home(isolated_home):
    """What test_sft_dpo once did to the real ~/.cache/nanocode/models: link a finished test model there."""
    run = write_model(isolated_home / "runs" / "sft-d1" / "model")
    lookup.models_dir().mkdir(parents=True)
    (lookup.models_dir() / "sft-d1").symlink_to(run)
    assert lookup.find_model() == lookup.models_dir() / "sft-d1"
    assert lookup.models_dir() == isolated_home / ".cache" / "nanocode" / "models"


def test_lookup_skips_dangling_links_and_setup_says_so(isolated_home, tmp_path):
    models = lookup.models_dir()
    models.mkdir(parents=True)
    good = write_model(tmp_path / "runs" / "good", mtime=1_000_000)
    (models / "good").symlink_to(good)
    (models / "sft-d1").symlink_to(tmp_path / "pytest-of-someone" / "gone")  # its run directory was deleted
    assert lookup.find_model() == models / "good"
    assert lookup.dangling_links(models) == [models / "sft-d1"]
    setup = prepare(cwd=tmp_path, save_session=False)
    assert setup.model_dir == models / "good"
    assert any("skipped 1 link" in note and "sft-d1" in note for note in setup.notes)


def test_no_model_at_all_names_the_dangling_links_instead_of_claiming_none_was_trained(isolated_home, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setattr(lookup, "shipped_dir", lambda: tmp_path / "no-checkpoints")
    lookup.models_dir().mkdir(parents=True)
    (lookup.models_dir() / "sft-d1").symlink_to(tmp_path / "gone")
    with pytest.raises(lookup.CheckpointError, match=r"\(skipped: sft-d1, link to models that no longer exist\)"):
        lookup.find_model()


def test_a_model_deleted_while_the_lookup_runs_is_skipped(isolated_home, monkeypatch):
    models = lookup.models_dir()
    old, new = write_model(models / "old", mtime=1_000), write_model(models / "new", mtime=2_000)
    real_mtime = lookup._config_mtime

    def deleted_meanwhile(path):
        return None if path == new else real_mtime(path)  # stat() after is_file(): the file is gone
    monkeypatch.setattr(lookup, "_config_mtime", deleted_meanwhile)
    assert lookup.find_model() == old


def test_prepare_passes_the_sandbox_setting_and_reports_it_once(isolated_home, tmp_path):
    write_model(lookup.models_dir() / "m")
    on = prepare(cwd=tmp_path, save_session=False)
    off = prepare(cwd=tmp_path, save_session=False, sandbox="off")
    assert on.permissions.sandbox is True and off.permissions.sandbox is False
    assert tools.sandbox.status(True) in on.notes and tools.sandbox.status(False) in off.notes
    assert prepare(cwd=tmp_path, save_session=False, sandbox=False).permissions.sandbox is False
    with pytest.raises(SetupError, match="--sandbox takes on or off"):
        prepare(cwd=tmp_path, save_session=False, sandbox="sometimes")
