"""`nanocode data synth`: valid conversations, real tool results (re-run them and compare), critic-
consistent pairs, a held-out split, HumanEval decontamination, and the optional model endpoint."""
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

import tools
from nanocode.template import render_conversation
from tools.spec import SPECS
from training.critic import critique
from training.data.decontam import humaneval_problems
from training.synth import testing, voice
from training.synth.driver import SynthConfig, read_jsonl, synth
from training.synth.sources import analyze, load_pool, rebuild

TEXTUTIL = '''"""Small text helpers."""

MAX_WIDTH = 80
REPEAT = 3


def shout(text):
    """Return the text in upper case with an exclamation mark."""
    return text.upper() + "!"


def clamp(value, low=0, high=10):
    """Clamp value into the range from low to high."""
    if value < low:
        return low
    if value > high:
        return high
    return value


def count_words(text):
    """Count the words in text."""
    return len(text.split())


def pad(text, width=8, fill=" "):
    """Pad text on the right to width characters."""
    if len(text) >= width:
        return text
    return text + fill * (width - len(text))


class Wrapper:
    """Wraps lines of text."""

    def __init__(self, width=MAX_WIDTH):
        self.width = width

    def wrap(self, text):
        """Split text into lines no longer than the width."""
        words, lines, line = text.split(), [], ""
        for word in words:
            if len(line) + len(word) + 1 > self.width:
                lines.append(line)
                line = word
            else:
                line = (line + " " + word).strip()
        return lines + [line]
'''

MATHUTIL = '''"""Number helpers."""

SCALE = 10
OFFSET = 2


def is_even(n):
    """Return True when n is even."""
    return n % 2 == 0


def total(values):
    """Add up the values."""
    result = 0
    for v in values:
        result = result + v
    return result


def mean(values, default=0):
    """Return the average of values, or default when there are none."""
    if len(values) == 0:
        return default
    return total(values) / len(values)


def scaled(x, factor=SCALE):
    """Multiply x by factor and add the offset."""
    return x * factor + OFFSET


def countdown(n):
    """Count down from n to one."""
    out = []
    while n > 0:
        out.append(n)
        n = n - 1
    return out
'''

APP = '''"""The command line entry point."""
import sys

from pkg.textutil import shout

RETRIES = 4


def parse_args(argv, strict=False):
    """Parse the command line arguments into a dict."""
    if strict and not argv:
        raise ValueError("no arguments")
    return {"args": list(argv)}


def main():
    """Print the arguments, loudly."""
    print(shout(" ".join(sys.argv[1:])))
'''


def make_src(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "textutil.py").write_text(TEXTUTIL)
    (root / "pkg" / "mathutil.py").write_text(MATHUTIL)
    (root / "app.py").write_text(APP)
    p = humaneval_problems()[0]  # a leaked benchmark problem: every conversation showing it must go
    (root / "pkg" / "leaked.py").write_text('"""Copied from somewhere."""\n\n' + p["prompt"] + p["canonical_solution"])
    return root


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    src = make_src(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("synth")
    stats = synth(SynthConfig(out=out, src=src, n=36, seed=3, workers=2, fault_rate=0.9))
    return src, out, stats


def _texts(src: Path) -> dict[str, str]:
    return {p.relative_to(src).as_posix(): p.read_text() for p in src.rglob("*.py")}


def test_outputs_and_stats(synth_run):
    src, out, stats = synth_run
    for name in ("train.jsonl", "val.jsonl", "pairs_train.jsonl", "pairs_val.jsonl", "stats.json"):
        assert (out / name).is_file()
    assert json.loads((out / "stats.json").read_text()) == stats
    assert stats["conversations"]["train"] + stats["conversations"]["val"] >= 30
    assert stats["conversations"]["val"] >= 1 and stats["pairs"]["train"] >= 10
    assert len(stats["family"]) >= 6  # the task families all get a turn
    assert "missed" not in stats  # the critic caught every seeded fault
    assert stats["decontaminated"] >= 1 and "teacher_violation" not in stats
    convs = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    with_notes = [c for c in convs if "notes" in c["meta"]]  # a share carry AGENTS.md notes (synth/notes.py)
    assert len(with_notes) == stats["with_notes"] >= 1 and with_notes[0]["meta"]["notes"].startswith("Notes from ")


def test_conversations_are_valid_and_keep_the_soul(synth_run, tiny_tokenizer):
    _, out, _ = synth_run
    convs = read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")
    for conv in convs:
        msgs = conv["messages"]
        assert msgs[0]["role"] == "user" and [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
        for m in msgs[1::2]:
            for p in m["content"]:
                if p["type"] == "tool_call":
                    spec = SPECS[p["name"]]
                    assert set(p["args"]) <= set(spec.arg_names) and set(spec.required) <= set(p["args"])
        assert critique(conv) == [], conv["meta"]
        ids, mask = render_conversation(msgs, tiny_tokenizer)
        assert len(ids) == len(mask) and 0 < sum(mask) < len(mask)
        # what the mask trains on is exactly the assistant's prose and calls
        trained = tiny_tokenizer.decode([i for i, k in zip(ids, mask) if k])
        assert msgs[0]["content"] not in trained and trained.endswith("<|assistant_end|>")
        assert "has_close_elements" not in json.dumps(conv)  # decontaminated


def test_tool_results_match_rerunning_the_tools(synth_run, tmp_path, monkeypatch):
    monkeypatch.setenv(*next(iter(testing.ENV.items())))  # as the synth workers run pytest
    src, out, _ = synth_run
    texts = _texts(src)
    convs = read_jsonl(out / "train.jsonl")
    assert convs
    for n, conv in enumerate(convs):
        ws = rebuild(conv["meta"]["workspace"], texts, tmp_path / f"ws{n}")
        for m in conv["messages"][1::2]:
            parts = m["content"]
            for call, result in zip(parts, parts[1:]):
                if call["type"] != "tool_call":
                    continue
                if result["output"].startswith("the user declined"):
                    continue  # a rejected call never ran
                got = tools.execute(call["name"], call["args"], ws)
                norm = lambda s: re.sub(r"\b\d+\.\d+s\b", "T s",  # test runners print their timings
                                        re.sub(r"/tmp/[\w./-]*?nanocode-synth-\w+/|" + re.escape(str(ws)) + "/", "WS/", s))
                assert (got.ok, norm(got.output)) == (result["ok"], norm(result["output"])), (conv["meta"], call)


def test_pairs_are_critic_consistent(synth_run):
    _, out, _ = synth_run
    pairs = read_jsonl(out / "pairs_train.jsonl") + read_jsonl(out / "pairs_val.jsonl")
    faults = set()
    for pair in pairs:
        fault, prompt = pair["meta"]["fault"], pair["messages"]
        faults.add(fault)
        assert prompt[-1]["role"] == "user" and pair["chosen"] != pair["rejected"]
        ctx = {"request": prompt[-1]["content"], "history": prompt[:-1],
               "allowed_paths": pair["meta"]["allowed_paths"]}
        assert critique(pair["chosen"], context=ctx) == []
        broken = {v.rule for v in critique(pair["rejected"], context=ctx)}
        assert voice.FAULTS[fault] in broken and set(pair["meta"]["violations"]) == broken
    assert len(faults) >= 6


def test_validation_uses_other_source_files(synth_run):
    _, out, _ = synth_run
    train = {c["meta"]["source"] for c in read_jsonl(out / "train.jsonl")}
    val = {c["meta"]["source"] for c in read_jsonl(out / "val.jsonl")}
    assert val and not train & val


def test_same_seed_same_data_whatever_the_worker_count(tmp_path):
    src = make_src(tmp_path / "src")
    a = synth(SynthConfig(out=tmp_path / "a", src=src, n=6, seed=11, workers=1))
    b = synth(SynthConfig(out=tmp_path / "b", src=src, n=6, seed=11, workers=2))
    strip = lambda rows: [json.dumps(r["messages"]) for r in rows]
    for name in ("train.jsonl", "pairs_train.jsonl"):
        ra, rb = read_jsonl(tmp_path / "a" / name), read_jsonl(tmp_path / "b" / name)
        norm = lambda rows: [re.sub(r"nanocode-synth-\w+", "WS", s) for s in strip(rows)]
        assert norm(ra) == norm(rb)
    assert a["conversations"] == b["conversations"]


def test_every_prose_fault_breaks_its_rule():
    req = "where is parse_args defined?"
    turn = [{"type": "text", "text": "let me grep for it\n"},
            {"type": "tool_call", "name": "Grep", "args": {"pattern": "def parse_args"}},
            {"type": "tool_result", "ok": True, "output": "cli.py:12:def parse_args(argv):"},
            {"type": "text", "text": "it's in `cli.py`, line 12 and it parses the arguments."}]
    assert critique({"role": "assistant", "content": turn}, context={"request": req}) == []
    for fault in voice.PROSE_FAULTS:
        bad = voice.apply_prose_fault(fault, turn, random.Random(0))
        rules = {v.rule for v in critique({"role": "assistant", "content": bad}, context={"request": req})}
        assert rules == {voice.FAULTS[fault]}, fault


def test_sources_analysis_and_errors(tmp_path):
    info = analyze(MATHUTIL)
    mean = next(f for f in info.functions if f.name == "mean")
    assert mean.doc.startswith("Return the average") and mean.params[1].default == "0"
    assert next(f for f in info.functions if f.name == "is_even").self_contained
    assert not mean.self_contained  # calls total(), a module function
    assert [c.name for c in info.constants] == ["SCALE", "OFFSET"]
    assert analyze("def broken(:\n") is None
    with pytest.raises(ValueError, match="exactly one of --corpus"):
        load_pool()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable Python files"):
        load_pool(src=tmp_path / "empty")


class _FakeLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint: the 'generator' flatters on its first try and behaves when told
    what it did wrong; the 'critic' finds nothing."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        if "Reply with JSON only" in body["messages"][0]["content"]:
            content = '{"violations": []}'
        else:
            line = re.search(r">>> (.*?) <<<", prompt, re.DOTALL).group(1)
            fixing = "A critic found these problems" in prompt
            content = line.replace("great question! ", "") if fixing else "great question! " + line
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_generator_and_critic_endpoints(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _FakeLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        src = make_src(tmp_path / "src")
        stats = synth(SynthConfig(out=tmp_path / "out", src=src, n=5, seed=1, workers=1, fault_rate=0.0,
                                  generator_url=url, critic_url=url))
    finally:
        server.shutdown()
    assert stats["llm"]["revised"] >= 4 and stats["llm"]["revision_kept"] >= 4 and stats["llm"]["judged"] >= 4
    pairs = read_jsonl(tmp_path / "out" / "pairs_train.jsonl") + read_jsonl(tmp_path / "out" / "pairs_val.jsonl")
    assert pairs and all(p["meta"]["fault"] == "llm_draft" and "no_sycophancy" in p["meta"]["violations"]
                         for p in pairs)
    for conv in read_jsonl(tmp_path / "out" / "train.jsonl"):
        assert critique(conv) == [] and "great question" not in json.dumps(conv)


def test_probing_a_function_of_many_parameters_samples_its_arguments():
    """11 candidate values for each of 9 parameters is 2.4 billion combinations: they are sampled, not
    listed (listing them took 24 GB and the OOM killer in a cpu speedrun)."""
    import random
    from training.synth.probe import MAX_CALLS, probe
    params = [f"p{i}" for i in range(9)]
    source = f"def wide({', '.join(params)}):\n    return repr(p0)[:5]\n"
    probes, _ = probe(source, "wide", params, random.Random(0), with_mutants=False)
    assert 1 <= len(probes) <= MAX_CALLS
