"""`nanocode report`: a Markdown and a self-contained HTML report from what a run directory holds.

The run is built from the real stages' outputs where they are cheap (corpus, tokenizer report, token
shards, a saved model, real eval results) and a training log written in pretrain.py's record format."""
import json
import re

import pytest

from training.eval import agent as eval_agent, humaneval as eval_humaneval
from training.eval import soul as eval_soul, tokenizer as eval_tokenizer
from training.eval.agent_tasks import make_suite
from training.eval.results import read_results, write_result
from training.common import StageError
from training.report import collect, write_report
from training.eval.sandbox import Limits


def write_log(run, tokens_dir):
    """log.jsonl and complete.json with the records training/pretrain.py writes, and a torn last line."""
    records = [{"event": "start", "step": 0, "config": {"depth": 1, "seq_len": 64, "matrix_lr": 0.02},
                "model": {"depth": 1, "vocab_size": 407, "seq_len": 64}, "num_steps": 40, "grad_accum": 1,
                "devices": 1, "processes": 1, "device_kind": "TFRT_CPU_0", "jax": "0.10.2", "python": "3.11.7",
                "params": 123456, "flops_per_token": 1000, "peak_flops": 1e12, "data": str(tokens_dir),
                "train_tokens": 99999}]
    for step in range(40):
        records.append({"step": step, "loss": 6.0 / (1 + step / 10), "grad_norm": 1.0, "lr_mult": 1.0,
                        "tokens_per_s": 1000.0 + step, "mfu": 40.0 + step / 10, "step_s": 0.5, "tokens": step * 512})
        if step % 10 == 9:
            records.append({"step": step + 1, "val_bpb_code": 3.0 / (1 + step / 20), "val_bpb_prose": 3.5 / (1 + step / 20)})
    records.append({"step": 40, "sample": "def fibonacci(n):\n    return n"})
    summary = {"step": 40, "tokens": 20480, "val_bpb": {"code": 1.2, "prose": 1.4}, "final_loss": 1.2,
               "model": "model", "config": {}, "peak": "1e12 (a guess for this CPU)"}
    records.append({"event": "complete", **summary})
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + '\n{"step": 41, "lo')
    (run / "complete.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer):
    from flax import nnx

    from nanocode.checkpoint import save_model
    from nanocode.model import GPT, ModelConfig
    from training.data.corpus import CorpusConfig, build_corpus, directory_sources
    from training.data.shards import tokenize_corpus
    from training.data.tokenizer_train import train_tokenizer

    root = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCODE_HOME", str(root))
    src = root / "src"
    src.mkdir()
    (src / "util.py").write_text("def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n    return a + b\n" * 4)
    (src / "NOTES.md").write_text("# notes\n\nthe project adds numbers and keeps a short readme for people.\n" * 4)
    corpus, tokens = root / "data" / "corpus", root / "data" / "tokens"
    build_corpus(CorpusConfig(sources=tuple(directory_sources([src])), out=corpus, val_fraction=0.5, workers=1),
                 progress=False)
    train_tokenizer(corpus, root / "tokenizer", vocab_size=300)
    tokenize_corpus(corpus, root / "tokenizer", tokens, progress=False)

    run = root / "runs" / "base-d1"
    run.mkdir(parents=True)
    write_log(run, tokens)
    model = GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=64), rngs=nnx.Rngs(0))
    model_dir = save_model(run / "model", model, tiny_tokenizer, meta={"stage": "base", "steps": 40,
                                                                         "val_bpb": {"code": 1.2, "prose": 1.4}})
    problems = eval_humaneval.load_problems(3)
    he = eval_humaneval.score(problems, [[p.canonical_solution, "    return None\n"] for p in problems],
                              ks=(1, 2), limits=Limits(timeout_s=5.0, cpu_s=5, memory_mb=512))
    write_result(model_dir, "humaneval", {"mode": "base", **he})
    write_result(model_dir, "agent", eval_agent.evaluate(
        make_suite(per_kind=1), lambda t: eval_agent.oracle_source(t, tiny_tokenizer), tiny_tokenizer))
    write_result(model_dir, "tokenizer", eval_tokenizer.measure_kinds(
        tiny_tokenizer, {"code": ["def f(x):\n    return x\n"], "prose": ["hello there"]}))
    write_result(model_dir, "soul", eval_soul.score([{"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi! GREAT QUESTION."}],
        "meta": {"prompt": "greeting"}}]))
    yield run
    mp.undo()


def test_eval_results_round_trip(run_dir):
    results = read_results(run_dir / "model")
    assert set(results) == {"humaneval", "agent", "tokenizer", "soul"}
    assert results["humaneval"]["pass@1"] == pytest.approx(0.5) and results["humaneval"]["eval"] == "humaneval"
    (run_dir / "model" / "eval" / "broken.json").write_text("{not json")
    assert "error" in read_results(run_dir / "model")["broken"]
    (run_dir / "model" / "eval" / "broken.json").unlink()


def test_collect_finds_the_model_the_log_and_the_data_behind_them(run_dir):
    run = collect(run_dir)
    assert [m.name for m in run.models] == ["model"]
    assert [s.name for s in run.stages] == ["."] and run.bad_log_lines == 1
    assert run.stages[0].complete["step"] == 40
    assert sorted(what for what, _ in run.data.values()) == ["corpus", "token shards", "tokenizer"]


def test_the_report_has_every_section_plots_and_a_self_contained_html(run_dir):
    md_path, html_path = write_report(run_dir)
    md = md_path.read_text()
    for heading in ("## Environment and config", "## Corpus and tokenizer", "## Training", "## Evaluation",
                    "## Samples", "## Model card"):
        assert heading in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(images) == {"loss.png", "bpb.png", "throughput.png", "mfu.png"}
    for name in images:
        assert (md_path.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| device_kind | TFRT_CPU_0 |" in md and "| matrix_lr | 0.02 |" in md  # environment, config
    assert "**Corpus (`" in md and "**Token shards (`" in md and "**Tokenizer compression on validation" in md
    assert "| final training loss | 1.2245 |" in md and "| MFU (median) | 42.3% |" in md
    assert "| validation bits/byte, code | 1.2000 |" in md
    assert "| pass@1 | 0.500 |" in md and "| task success | 1.000 |" in md
    assert "bpb: not run" in md  # named, not silently missing
    assert "agent task `locate`: can" in md and "validation bits per byte: code 1.200" in md  # the card
    assert "def fibonacci(n)" in md  # a sample from the training log

    html = html_path.read_text()
    assert html.count('src="data:image/png;base64,') == 4
    assert not re.search(r'src="(?!data:)', html) and "<link" not in html  # nothing to fetch
    assert "<table>" in html and "pass@1" in html


def test_a_directory_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match="not a directory"):
        collect(tmp_path / "missing")
    with pytest.raises(StageError, match="no model"):
        collect(tmp_path)
