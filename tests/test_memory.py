"""Project memory (agent/memory.py): AGENTS.md / NANOCODE.md from the repository root down to the working
directory, cut to its budget, read by the model at the head of every prompt, and shown by the app,
`nanocode run` and the REPL's start."""
import io
import json
from pathlib import Path

import pytest
from flax import nnx
from typer.testing import CliRunner

from agent.app import NanocodeApp
from agent.context import fit_prompt
from agent.headless import run_headless
from agent.loop import Agent
from agent.memory import budget_for, load_memory, memory_files, repository_root
from agent.permissions import Permissions
from agent.source import ScriptedSource
from agent.widgets.message import Notice
from nanocode.template import render_prompt
from test_app import SIZE, idle, send, transcript, until

NOTES = "Run the tests with `make test`.\nNever edit generated/."


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """outside/ holds notes that are not the repository's; outside/repo is a git repository."""
    (tmp_path / "AGENTS.md").write_text("not this repository's")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "AGENTS.md").write_text(NOTES)
    (repo / "pkg" / "deep").mkdir(parents=True)
    (repo / "pkg" / "NANOCODE.md").write_text("pkg: keep functions small")
    (repo / "pkg" / "deep" / "AGENTS.md").write_text("deep: no prints")
    (repo / "pkg" / "deep" / "NANOCODE.md").write_text("   \n")  # empty: skipped
    return repo


def test_files_from_the_repository_root_down_to_the_working_directory(repo, tiny_tokenizer):
    deep = repo / "pkg" / "deep"
    assert repository_root(deep) == repo.resolve()
    assert [p.relative_to(repo.resolve()).as_posix() for p in memory_files(deep)] == [
        "AGENTS.md", "pkg/NANOCODE.md", "pkg/deep/AGENTS.md", "pkg/deep/NANOCODE.md"]
    memory = load_memory(deep, tiny_tokenizer, 2048)
    assert memory.files == ("AGENTS.md", "pkg/NANOCODE.md", "pkg/deep/AGENTS.md")
    assert memory.text == (f"Notes from AGENTS.md:\n{NOTES}\n\nNotes from pkg/NANOCODE.md:\npkg: keep functions "
                           "small\n\nNotes from pkg/deep/AGENTS.md:\ndeep: no prints")
    assert not memory.cut and memory.tokens == len(tiny_tokenizer.encode(memory.text))
    assert memory.notice() == f"using AGENTS.md, pkg/NANOCODE.md, pkg/deep/AGENTS.md ({memory.tokens} tokens)"
    # from the root only the root's file; without a repository only the working directory's own
    assert load_memory(repo, tiny_tokenizer, 2048).files == ("AGENTS.md",)
    lone = repo.parent / "lone"
    lone.mkdir()
    assert load_memory(lone, tiny_tokenizer, 2048) is None


def test_a_file_over_the_budget_keeps_its_head_and_says_so(tmp_path, tiny_tokenizer):
    lines = [f"rule {i}: run the linter before every commit" for i in range(200)]
    (tmp_path / "AGENTS.md").write_text("\n".join(lines))
    memory = load_memory(tmp_path, tiny_tokenizer, 2048)
    assert budget_for(2048) == memory.budget == 341
    assert memory.cut and memory.tokens <= 341 < memory.total
    assert ("Notes from AGENTS.md:\n" + "\n".join(lines)).startswith(memory.text)
    assert memory.text.endswith(lines[memory.text.count("\n") - 1])  # cut at a line end
    assert memory.notice().startswith(f"using AGENTS.md ({memory.tokens} of {memory.total} tokens: only the head")


def test_the_memory_heads_every_prompt_even_when_old_turns_are_dropped(tiny_tokenizer):
    tok = tiny_tokenizer
    messages = [{"role": "user", "content": "hi"}]
    ids = fit_prompt(messages, tok, 500, memory=NOTES).ids
    assert tok.decode(ids) == tok.decode(render_prompt([{"role": "user", "content": f"{NOTES}\n\nhi"}], tok))
    long = []
    for k in range(12):
        long += [{"role": "user", "content": f"question {k} " * 8}, {"role": "assistant", "content": f"answer {k} " * 8}]
    long.append({"role": "user", "content": "the last question"})
    fit = fit_prompt(long, tok, 200, memory=NOTES)
    assert fit.dropped_messages and len(fit.ids) <= 200
    text = tok.decode(fit.ids)
    assert text.startswith(f"<|bos|><|user_start|>{NOTES}\n\n") and text.endswith("the last question<|user_end|>"
                                                                                 "<|assistant_start|>")


def test_the_agent_reads_it_but_the_session_does_not_keep_it(repo, tiny_tokenizer):
    source = ScriptedSource(["ok<|assistant_end|>"], tiny_tokenizer, chunk=4)
    memory = load_memory(repo, tiny_tokenizer, 2048)
    agent = Agent(source, tiny_tokenizer, repo, Permissions(), memory=memory)
    out, err = io.StringIO(), io.StringIO()
    assert run_headless(agent, "how do I test?", out=out, err=err) == 0
    assert "Run the tests with `make test`" in tiny_tokenizer.decode(source.prompts[0])
    assert agent.messages[0] == {"role": "user", "content": "how do I test?"}
    assert err.getvalue() == f"nanocode: using AGENTS.md ({memory.tokens} tokens)\n" and out.getvalue() == "ok\n"


@pytest.mark.asyncio
async def test_the_app_says_which_files_the_model_reads(tmp_path, tiny_tokenizer):
    (tmp_path / "AGENTS.md").write_text("\n".join(f"rule {i}: be brief" for i in range(300)))
    source = ScriptedSource(["fine<|assistant_end|>"], tiny_tokenizer, chunk=2)
    memory = load_memory(tmp_path, tiny_tokenizer, 2048)
    agent = Agent(source, tiny_tokenizer, tmp_path, Permissions(), memory=memory)
    app = NanocodeApp(lambda: agent, model_name="scripted", workspace=None)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: idle(app))
        notices = [n for n in transcript(app, Notice) if "AGENTS.md" in str(n.render())]
        assert len(notices) == 1 and notices[0].kind == "error"  # cut: shown as a warning
        assert f"using AGENTS.md ({memory.tokens} of {memory.total} tokens" in str(notices[0].render())
        assert "AGENTS.md" in str(app.status.render())
        await send(pilot, "hello")
        await until(pilot, lambda: idle(app) and len(source.prompts) == 1)
    assert tiny_tokenizer.decode(source.prompts[0]).startswith("<|bos|><|user_start|>Notes from AGENTS.md:\nrule 0")


def test_nanocode_run_loads_it_with_a_real_model(tmp_path, tiny_tokenizer, monkeypatch):
    from nanocode.checkpoint import save_model
    from nanocode.cli import app
    from nanocode.model import GPT, ModelConfig
    model_dir = save_model(tmp_path / "tiny", GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size,
                                                              seq_len=256), rngs=nnx.Rngs(0)), tiny_tokenizer)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "AGENTS.md").write_text(NOTES)
    # by default only a model trained with notes in its prompts reads them; this one was not
    plain = CliRunner().invoke(app, ["run", "-p", "hi", "--model", str(model_dir), "--cwd", str(ws), "--max-steps", "1"])
    assert plain.exit_code in (0, 1) and "AGENTS.md not read: this model was not trained with project notes" in \
        plain.stderr
    result = CliRunner().invoke(app, ["run", "-p", "hi", "--json", "--model", str(model_dir), "--cwd", str(ws),
                                      "--max-steps", "1", "--memory"])
    assert result.exit_code in (0, 1), result.output
    assert f"nanocode: {load_memory(ws, tiny_tokenizer, 256).notice()}\n" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["type"] == "turn_end"  # stdout stays the event lines
    off = CliRunner().invoke(app, ["run", "-p", "hi", "--model", str(model_dir), "--cwd", str(ws), "--max-steps",
                                   "1", "--no-memory"])
    assert off.exit_code in (0, 1) and "AGENTS.md" not in off.stderr
    info = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**info, "meta": {"project_notes": True}}))
    (model_dir / "sha256.json").unlink(missing_ok=True)  # edited by hand: no longer what was saved
    trained = CliRunner().invoke(app, ["run", "-p", "hi", "--model", str(model_dir), "--cwd", str(ws), "--max-steps",
                                       "1"])
    assert trained.exit_code in (0, 1) and "nanocode: using AGENTS.md" in trained.stderr


def test_training_renders_notes_where_the_agent_puts_them(tiny_tokenizer):
    from nanocode.template import notes_text, render_conversation
    tok = tiny_tokenizer
    notes = notes_text([("AGENTS.md", NOTES), ("pkg/AGENTS.md", "- keep it small")])
    conv = [{"role": "user", "content": "where is main?"},
            {"role": "assistant", "content": [{"type": "text", "text": "in cli.py."}]}]
    ids, mask = render_conversation(conv, tok, notes)
    prompt = fit_prompt(conv[:1], tok, 2048, memory=notes).ids
    assert ids[:len(prompt)] == prompt and not any(mask[:len(prompt)])  # the notes are read, never trained on
    plain, plain_mask = render_conversation(conv, tok)
    assert len(ids) - len(plain) == len(tok.encode(notes + "\n\n")) and sum(mask) == sum(plain_mask)
