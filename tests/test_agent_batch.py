"""Batched agent loops (agent/batch.py): many episodes on one sampler give what each gives alone."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.batch import Batcher, _cut
from agent.source import SamplerSource
from nanocode.model import ModelConfig
from nanocode.sampler import Sampler
from test_model import random_model
from training.eval.agent import run_episode

PROMPTS = ["where is main defined?", "read util.py", "hi", "run the tests please", "rename foo to bar"]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return random_model(ModelConfig(depth=2, vocab_size=tiny_tokenizer.vocab_size, seq_len=256, head_dim=32),
                        seed=3)


def reject_all(call):  # a random model's calls never run: its Bash commands are random text
    return ("reject", "")


def episode(tmp_path, i, prompt, source, tok):
    ws = tmp_path / f"ws{i}"
    ws.mkdir(exist_ok=True)
    (ws / "util.py").write_text("def main():\n    return 1\n")
    return run_episode(ws, prompt, source, tok, max_steps=3, max_reply_tokens=24, ask=reject_all)


def test_batched_episodes_equal_one_by_one(model, tiny_tokenizer, tmp_path):
    sampler = Sampler(model)
    alone = [episode(tmp_path, i, p, SamplerSource(sampler, 256, seed=0), tiny_tokenizer).messages
             for i, p in enumerate(PROMPTS)]
    with Batcher(Sampler(model), 256, max_wait_s=5.0) as batcher:
        def run(i):
            row = batcher.row()
            try:
                return episode(tmp_path, i, PROMPTS[i], row, tiny_tokenizer).messages
            finally:
                row.finish()
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            together = list(pool.map(run, range(len(PROMPTS))))
        # five rows decode together (padded to eight), so there are fewer batches than generations
        generations = sum(len([p for p in m[-1]["content"] if p["type"] == "tool_call"]) + 1 for m in together)
        assert batcher.batches < generations
    assert together == alone


def test_a_busy_row_does_not_hold_the_others_back(model, tiny_tokenizer):
    # One row is registered but never asks (a row stuck in a long tool call): the other is served after
    # max_wait_s instead of waiting for it.
    with Batcher(Sampler(model), 256, max_wait_s=0.05) as batcher:
        stuck, row = batcher.row(), batcher.row()
        ids = next(row.stream([tiny_tokenizer.special("bos")], 5, ()))
        assert len(ids) == 5
        stuck.finish()
        row.finish()


def test_a_failed_batch_reaches_every_row_and_the_batcher_goes_on(model, tiny_tokenizer):
    with Batcher(Sampler(model), 256, max_wait_s=1.0) as batcher:
        rows = [batcher.row() for _ in range(2)]
        errors = []

        def bad(row):
            try:
                next(row.stream([], 5, ()))  # an empty prompt: the sampler refuses it
            except ValueError as e:
                errors.append(str(e))
        threads = [threading.Thread(target=bad, args=(r,)) for r in rows]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(errors) == 2 and all("empty prompt" in e for e in errors)
        assert len(next(rows[0].stream([tiny_tokenizer.special("bos")], 3, ()))) == 3  # still serving
        for r in rows:
            r.finish()
    with pytest.raises(RuntimeError, match="closed"):
        next(rows[0].stream([1], 3, ()))


def test_cut_stops_at_the_first_stop_and_the_limit():
    assert _cut([1, 2, 9, 3], 10, {9}) == [1, 2, 9]
    assert _cut([1, 2, 3, 4], 2, {9}) == [1, 2]
