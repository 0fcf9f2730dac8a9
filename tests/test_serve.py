"""`nanocode serve`: the OpenAI-compatible server. A real tiny (random-init) model answers whole and streamed
completions through Starlette's TestClient and through uvicorn on a localhost socket (also to the synth
client, training/synth/llm.py); tool calls are checked on the rendering and parsing functions and end to end
with a scripted sampler (a random model never writes a well-formed call)."""
import contextlib
import http.client
import json
import threading
import time

import pytest
import uvicorn
from flax import nnx
from starlette.testclient import TestClient

from agent.source import encode_script
from nanocode.model import GPT, ModelConfig
from nanocode.sampler import Sampler
from nanocode.serve.engine import Busy, Engine, Job
from nanocode.serve.protocol import describe_tools, parse_request, parse_tools, to_conversation
from nanocode.serve.reply import Reply, arguments_json
from nanocode.serve.server import build_app, main
from nanocode.template import TextPart, ToolCallPart, ToolResultPart, render_prompt

CONTEXT = 256
HI = [{"role": "user", "content": "where is parse_args defined?"}]
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "the weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "a city name"},
        "days": {"type": "integer"}, "metric": {"type": "boolean"}}, "required": ["city"]}}}]
GREP = [{"type": "function", "function": {"name": "Grep", "description": "search", "parameters": {
    "type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string"},
                                     "glob": {"type": "string"}}, "required": ["pattern"]}}}]


class ScriptedSampler:
    """Sampler.stream's contract with fixed replies (strings with literal special tokens): ids one by one,
    ending after a stop id or the budget. `delay` between ids, `gate` waited on before the first."""

    def __init__(self, tok, replies, delay: float = 0.0, gate: threading.Event | None = None):
        self.tok, self.replies, self.delay, self.gate = tok, list(replies), delay, gate
        self.calls: list[dict] = []
        self.active = self.most_active = 0

    def stream(self, prompt, max_new_tokens, temperature=0.0, top_k=None, top_p=None, stop=(), seed=0):
        self.calls.append(dict(prompt=list(prompt), max_new_tokens=max_new_tokens, temperature=temperature,
                               top_p=top_p, stop=set(stop), seed=seed))
        reply = encode_script(self.tok, self.replies.pop(0) if len(self.replies) > 1 else self.replies[0])
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.gate is not None:
                self.gate.wait(10)
            for i in reply[:max_new_tokens]:
                if self.delay:
                    time.sleep(self.delay)
                yield i
                if i in stop:
                    return
        finally:
            self.active -= 1


class Counting:
    """The real sampler, counting how many generations run at once (the engine must allow one)."""

    def __init__(self, sampler):
        self.sampler, self.active, self.most_active, self.calls = sampler, 0, 0, 0

    def stream(self, *args, **kwargs):
        self.active += 1
        self.calls += 1
        self.most_active = max(self.most_active, self.active)
        try:
            yield from self.sampler.stream(*args, **kwargs)
        finally:
            self.active -= 1


@pytest.fixture(scope="module")
def sampler(tiny_tokenizer):
    return Counting(Sampler(GPT(ModelConfig(depth=1, vocab_size=tiny_tokenizer.vocab_size, seq_len=CONTEXT),
                                rngs=nnx.Rngs(0))))


@pytest.fixture(scope="module")
def engine(sampler):
    e = Engine(sampler)
    yield e
    e.close()


@pytest.fixture
def client(engine, tiny_tokenizer):
    with TestClient(build_app(engine, tiny_tokenizer, model_id="tiny", context_len=CONTEXT)) as c:
        yield c


def scripted_client(tok, replies, **kwargs):
    engine = Engine(ScriptedSampler(tok, replies), **kwargs)
    return engine, TestClient(build_app(engine, tok, model_id="tiny", context_len=CONTEXT))


def events(response) -> list:
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


@contextlib.contextmanager
def running(app):
    """uvicorn serving `app` on a free localhost port, in a thread."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def post(port: int, body: dict, timeout: float = 60) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    out = r.status, json.loads(r.read())
    conn.close()
    return out


# --- the real model --------------------------------------------------------------------------------

def test_models_list_and_one_model(client):
    listing = client.get("/v1/models").json()
    assert listing["object"] == "list" and [m["id"] for m in listing["data"]] == ["tiny"]
    assert listing["data"][0]["object"] == "model"
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    missing = client.get("/v1/models/gpt-4")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert client.get("/health").json() == {"status": "ok"}


def test_whole_and_streamed_completions_agree(client, sampler, tiny_tokenizer):
    body = {"model": "anything", "messages": HI, "max_tokens": 12, "temperature": 0}
    sampler.sampler.reset()  # both replies decode from a fresh prefill (no reused prefix), so they match exactly
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    whole = r.json()
    assert whole["object"] == "chat.completion" and whole["id"].startswith("chatcmpl-") and whole["model"] == "tiny"
    choice = whole["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    prompt_tokens = len(render_prompt(HI, tiny_tokenizer))
    assert whole["usage"]["prompt_tokens"] == prompt_tokens
    assert 1 <= whole["usage"]["completion_tokens"] <= 12
    assert whole["usage"]["total_tokens"] == prompt_tokens + whole["usage"]["completion_tokens"]

    sampler.sampler.reset()
    with client.stream("POST", "/v1/chat/completions",
                       json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        chunks = events(r)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finals == [choice["finish_reason"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    # Greedy decoding of the same prompt: the stream spells out the whole reply exactly.
    assert text == choice["message"]["content"]


def test_concurrent_requests_on_a_real_socket_are_queued(sampler, engine, tiny_tokenizer):
    app = build_app(engine, tiny_tokenizer, model_id="tiny", context_len=CONTEXT)
    with running(app) as port:
        results: list = [None] * 4

        def ask(k):
            results[k] = post(port, {"messages": [{"role": "user", "content": f"question {k}"}],
                                     "max_tokens": 6, "temperature": 0})
        threads = [threading.Thread(target=ask, args=(k,)) for k in range(4)]
        before = sampler.calls
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert all(status == 200 for status, _ in results), results
    for _, reply in results:
        assert reply["usage"]["completion_tokens"] <= 6 and reply["choices"][0]["finish_reason"] in ("stop", "length")
    assert sampler.calls - before == 4 and sampler.most_active == 1


def test_the_synth_client_can_use_it_as_its_generator(engine, tiny_tokenizer):
    from training.synth.llm import Endpoint
    with running(build_app(engine, tiny_tokenizer, model_id="tiny", context_len=CONTEXT)) as port:
        text = Endpoint(f"http://127.0.0.1:{port}/v1", model="default").chat(
            [{"role": "system", "content": "rewrite it"}, {"role": "user", "content": "hello"}],
            temperature=0.0, max_tokens=8)
    assert isinstance(text, str)


# --- requests -> our protocol ----------------------------------------------------------------------

def test_history_with_system_tools_calls_and_results_renders_as_one_assistant_turn(tiny_tokenizer):
    tools = parse_tools(WEATHER + GREP)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather in "}, {"type": "text", "text": "Oslo?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 2}'}},
            {"id": "b", "type": "function", "function": {"name": "Grep", "arguments": '{"pattern": "x"}'}}]},
        {"role": "tool", "tool_call_id": "b", "content": "a.py:1:x"},
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "assistant", "content": "sunny, and x is in a.py"},
        {"role": "user", "content": "thanks"},
    ]
    preamble = describe_tools(tools)
    # Grep with our arguments is the model's own tool: only the new one is described.
    assert preamble.startswith("You can also call these tools:") and "Grep" not in preamble
    assert "get_weather(city, days?, metric?): the weather in a city (city: a city name)" in preamble
    conversation = to_conversation(messages, preamble)
    assert conversation == [
        {"role": "user", "content": f"be brief\n\n{preamble}\n\nweather in Oslo?"},
        {"role": "assistant", "content": [ToolCallPart("get_weather", {"city": "Oslo", "days": "2"}),
                                          ToolResultPart(True, "sunny"), ToolCallPart("Grep", {"pattern": "x"}),
                                          ToolResultPart(True, "a.py:1:x"), TextPart("sunny, and x is in a.py")]},
        {"role": "user", "content": "thanks"}]
    req = parse_request({"messages": messages, "tools": WEATHER + GREP}, tiny_tokenizer, 2048)
    assert req.prompt == render_prompt(conversation, tiny_tokenizer) and set(req.tools) == {"get_weather", "Grep"}
    # A conversation that ends with a tool result leaves the assistant turn open for the model to go on.
    open_turn = parse_request({"messages": messages[:5], "tools": WEATHER + GREP}, tiny_tokenizer, 2048)
    assert open_turn.prompt[-1] == tiny_tokenizer.special("tool_result_end")


def test_tool_choice_none_required_and_named(tiny_tokenizer):
    tok = tiny_tokenizer
    none = parse_request({"messages": HI, "tools": WEATHER, "tool_choice": "none"}, tok, 2048)
    assert none.tools == {} and "get_weather" not in tok.decode(none.prompt)
    required = parse_request({"messages": HI, "tools": WEATHER, "tool_choice": "required"}, tok, 2048)
    assert required.prompt[-1] == tok.special("tool_call_start") and required.forced == [tok.special("tool_call_start")]
    named = parse_request({"messages": HI, "tools": WEATHER + GREP,
                           "tool_choice": {"type": "function", "function": {"name": "Grep"}}}, tok, 2048)
    assert set(named.tools) == {"Grep"} and tok.decode(named.prompt).endswith("<|tool_call_start|>Grep")


def test_reply_turns_our_call_into_typed_json_arguments(tiny_tokenizer):
    tok = tiny_tokenizer
    tools = parse_tools(WEATHER)
    reply = Reply(tok, tools)
    ids = encode_script(tok, "let me look\n<|tool_call_start|>get_weather<|tool_arg|>city<|tool_val|>Oslo"
                             "<|tool_arg|>days<|tool_val|>3<|tool_arg|>metric<|tool_val|>true<|tool_call_end|>")
    shown = "".join(reply.feed([i]) for i in ids)
    assert shown == "let me look\n" and reply.content == shown and reply.finish_reason == "tool_calls"
    assert reply.call == ToolCallPart("get_weather", {"city": "Oslo", "days": "3", "metric": "true"})
    assert json.loads(arguments_json(reply.call, tools["get_weather"])) == {"city": "Oslo", "days": 3, "metric": True}
    assert reply.tokens == len(ids)


def test_a_forced_call_is_parsed_from_the_prefix_the_prompt_opened(tiny_tokenizer):
    tok = tiny_tokenizer
    req = parse_request({"messages": HI, "tools": WEATHER,
                         "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, tok, 2048)
    reply = Reply(tok, req.tools, forced=req.forced)
    assert reply.feed(encode_script(tok, "<|tool_arg|>city<|tool_val|>Oslo<|tool_call_end|>")) == ""
    assert reply.call == ToolCallPart("get_weather", {"city": "Oslo"}) and reply.finish_reason == "tool_calls"
    # cut off by max_tokens inside the call: what it wrote comes back as text
    reply = Reply(tok, req.tools, forced=req.forced)
    reply.feed(encode_script(tok, "<|tool_arg|>city"))
    assert reply.close() == "<|tool_call_start|>get_weather<|tool_arg|>city" and reply.finish_reason == "length"


def test_reply_without_tools_a_malformed_call_and_stop_strings(tiny_tokenizer):
    tok = tiny_tokenizer
    # No tools declared: a call cannot be run by the client, so it ends the reply.
    reply = Reply(tok, {})
    reply.feed(encode_script(tok, "hi<|tool_call_start|>Read<|tool_arg|>path<|tool_val|>a.py<|tool_call_end|>"))
    assert (reply.content, reply.finish_reason, reply.call) == ("hi", "stop", None)
    # A call to a tool the request does not have comes back as the text the model wrote.
    reply = Reply(tok, parse_tools(WEATHER))
    reply.feed(encode_script(tok, "ok<|tool_call_start|>Read<|tool_arg|>path<|tool_val|>a.py<|tool_call_end|>"))
    assert reply.finish_reason == "stop" and reply.call is None
    assert reply.content == "ok<|tool_call_start|>Read<|tool_arg|>path<|tool_val|>a.py<|tool_call_end|>"
    # A stop string split across tokens is held back until it is known, and never shown.
    reply = Reply(tok, {}, stop=["END"])
    shown = [reply.feed(tok.encode(piece)) for piece in ("one E", "N", "D two")]
    assert "".join(shown) == "one " and reply.finish_reason == "stop"
    reply = Reply(tok, {}, stop=["END"])
    assert reply.feed(tok.encode("one E")) == "one " and reply.close() == "E" and reply.finish_reason == "length"


# --- tool calls end to end (scripted sampler) ------------------------------------------------------

CALL = ("let me check\n<|tool_call_start|>get_weather<|tool_arg|>city<|tool_val|>Oslo<|tool_arg|>days<|tool_val|>2"
        "<|tool_call_end|>")


def test_a_tool_call_comes_back_as_tool_calls_whole_and_streamed(tiny_tokenizer):
    engine, client = scripted_client(tiny_tokenizer, [CALL])
    body = {"messages": HI, "tools": WEATHER, "temperature": 0.5, "top_p": 0.9, "seed": 7}
    with client:
        whole = client.post("/v1/chat/completions", json=body).json()
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            chunks = events(r)
    engine.close()
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "let me check\n"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo", "days": 2}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content", "") for d in deltas) == "let me check\n"
    (streamed,) = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert streamed[0]["index"] == 0 and streamed[0]["function"] == call["function"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # the settings reached the sampler; a call may be written, the other special tokens stop it
    used = engine.sampler.calls[0]
    assert (used["temperature"], used["top_p"], used["seed"]) == (0.5, 0.9, 7)
    assert tiny_tokenizer.special("tool_call_end") in used["stop"]
    assert tiny_tokenizer.special("tool_call_start") not in used["stop"]


def test_max_tokens_and_stop_are_honoured(tiny_tokenizer):
    engine, client = scripted_client(tiny_tokenizer, ["one two three four five six seven eight"])
    with client:
        short = client.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 2}).json()
        stopped = client.post("/v1/chat/completions", json={"messages": HI, "stop": [" four"]}).json()
    engine.close()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 2
    assert engine.sampler.calls[0]["max_new_tokens"] == 2
    assert stopped["choices"][0]["message"]["content"] == "one two three"
    assert stopped["choices"][0]["finish_reason"] == "stop"
    # without max_tokens the reply may fill what the prompt leaves of the context
    assert engine.sampler.calls[1]["max_new_tokens"] == CONTEXT - len(engine.sampler.calls[1]["prompt"])


# --- mistakes are 4xx in OpenAI's shape --------------------------------------------------------------

@pytest.mark.parametrize("body, param, code", [
    ({"messages": []}, "messages", None),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", None),
    ({"messages": HI, "temperature": 5}, "temperature", None),
    ({"messages": HI, "max_tokens": 0}, "max_tokens", None),
    ({"messages": HI, "top_p": "high"}, "top_p", None),
    ({"messages": HI, "n": 2}, "n", None),
    ({"messages": HI, "stream": "yes"}, "stream", None),
    ({"messages": HI, "stop": ["a", "b", "c", "d", "e"]}, "stop", None),
    ({"messages": HI, "tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools[0].function.name",
     None),
    ({"messages": HI, "tools": WEATHER, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", None),
    ({"messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}, "messages[0]", None),
    ({"messages": HI + [{"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {
        "name": "Read", "arguments": "{not json"}}]}]}, "messages[1].tool_calls[0].function.arguments", None),
    ({"messages": HI + [{"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {
        "name": "Read", "arguments": "{}"}}]}]}, "messages", None),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content", None),
    ({"messages": [{"role": "user", "content": "word " * 400}]}, "messages", "context_length_exceeded"),
])
def test_bad_requests_get_a_400_in_openai_shape(tiny_tokenizer, body, param, code):
    engine, client = scripted_client(tiny_tokenizer, ["unused"])
    with client:
        r = client.post("/v1/chat/completions", json=body)
    engine.close()
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param and err["code"] == code and err["message"]
    assert engine.sampler.calls == []  # nothing reached the model


def test_other_mistakes_and_the_api_key(tiny_tokenizer):
    engine = Engine(ScriptedSampler(tiny_tokenizer, ["fine"]))
    app = build_app(engine, tiny_tokenizer, model_id="tiny", context_len=CONTEXT, api_key="s3cret")
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 401
        wrong = client.post("/v1/chat/completions", json={"messages": HI}, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        auth = {"Authorization": "Bearer s3cret"}
        assert client.post("/v1/chat/completions", json={"messages": HI}, headers=auth).status_code == 200
        bad_json = client.post("/v1/chat/completions", content=b"{nope", headers=auth)
        assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
        not_object = client.post("/v1/chat/completions", json=[1, 2], headers=auth)
        assert not_object.status_code == 400
        unknown = client.get("/v1/completions", headers=auth)
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
        wrong_method = client.get("/v1/chat/completions", headers=auth)
        assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
        assert "error" in wrong_method.json()
    engine.close()


def test_a_full_queue_answers_429_and_a_gone_client_frees_the_model(tiny_tokenizer):
    gate = threading.Event()
    sampler = ScriptedSampler(tiny_tokenizer, ["word " * 200], delay=0.01, gate=gate)
    engine = Engine(sampler, max_waiting=1)
    with running(build_app(engine, tiny_tokenizer, model_id="tiny", context_len=CONTEXT)) as port:
        # A streamed request takes the model (held at the gate), a second one waits, a third is refused.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps({"messages": HI, "stream": True}))
        stream = conn.getresponse()
        assert stream.status == 200 and stream.readline().startswith(b"data: ")
        results: list = []
        waiting = threading.Thread(target=lambda: results.append(post(port, {"messages": HI, "max_tokens": 3})))
        waiting.start()
        deadline = time.monotonic() + 10
        while engine.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, refused = post(port, {"messages": HI})
        assert status == 429 and refused["error"]["code"] == "server_busy"
        # The streaming client hangs up mid-reply: its generation stops and the waiting request is served.
        gate.set()
        stream.readline()
        conn.close()
        waiting.join(30)
    engine.close()
    assert results and results[0][0] == 200 and results[0][1]["usage"]["completion_tokens"] == 3
    assert len(sampler.calls) == 2


def test_a_failing_generation_is_a_500_in_openai_shape_and_the_server_goes_on(tiny_tokenizer):
    class Failing(ScriptedSampler):
        def stream(self, *args, **kwargs):
            if not self.calls:
                self.calls.append({})
                raise RuntimeError("device lost")
            yield from super().stream(*args, **kwargs)

    engine = Engine(Failing(tiny_tokenizer, ["fine"]))
    with TestClient(build_app(engine, tiny_tokenizer, model_id="tiny", context_len=CONTEXT)) as client:
        r = client.post("/v1/chat/completions", json={"messages": HI})
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        assert "device lost" in r.json()["error"]["message"]
        assert client.post("/v1/chat/completions", json={"messages": HI}).json()["choices"][0]["message"]["content"] \
            == "fine"
    engine.close()


def test_engine_refuses_when_full(tiny_tokenizer):
    gate = threading.Event()
    engine = Engine(ScriptedSampler(tiny_tokenizer, ["x"], gate=gate), max_waiting=1)
    done = threading.Event()
    job = lambda: Job([1], 4, 0.0, None, None, (), 0, emit=lambda item: item is None and done.set())
    engine.submit(job())
    time.sleep(0.1)  # the worker took the first job and waits at the gate
    engine.submit(job())
    with pytest.raises(Busy):
        engine.submit(job())
    gate.set()
    assert done.wait(10)
    engine.close()


def test_serve_command_checks_its_flags_before_loading(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("NANOCODE_KEY", raising=False)
    assert main(["--api-key-env", "NANOCODE_KEY", "--model", str(tmp_path)]) == 2
    assert "$NANOCODE_KEY is empty or unset" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "none")]) == 2
    assert "no model there" in capsys.readouterr().err
    assert main(["--port", "70000"]) == 2
