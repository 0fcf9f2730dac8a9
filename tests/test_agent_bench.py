from agent.bench_startup import COLUMNS, run


def test_bench_chat_times_every_phase_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCODE_HOME", str(tmp_path / "home"))
    (tmp_path / "main.py").write_text("def main():\n    pass\n")
    [row] = run(None, tmp_path, "where is main defined?", repeats=1)  # the shipped model
    assert set(row) >= {key for key, _ in COLUMNS}
    assert 0 < row["prepare"] <= row["ui"] <= row["loaded"] <= row["ready"]
    assert row["first_text"] is None or row["first_text"] > 0
