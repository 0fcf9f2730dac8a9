"""`nanocode serve`: an OpenAI-compatible HTTP server over the sampler, so that aider, opencode, continue or
`nanocode data synth --generator-url` can use a model trained here.

    GET  /v1/models               the one model this server holds
    POST /v1/chat/completions     whole, or streamed as server-sent events ending in `data: [DONE]`
    GET  /health                  {"status": "ok"} once the model is loaded

Starlette + uvicorn: Starlette is a small, well-kept ASGI toolkit (the one FastAPI is built on) whose
StreamingResponse is all that server-sent events need and whose TestClient lets the tests drive the real app
in-process; uvicorn is its reference server. No pydantic or web framework: a request is checked by hand in
nanocode/serve/protocol.py, so every mistake gets an OpenAI-shaped 4xx saying what to fix.

It listens on 127.0.0.1 unless --host says otherwise; with --api-key-env VAR every request must carry
`Authorization: Bearer $VAR`.
"""
import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import os
import sys
import time
import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from nanocode.serve.engine import Busy, Engine, Job, fresh_seed
from nanocode.serve.protocol import ChatRequest, RequestError, parse_request
from nanocode.serve.reply import Reply, arguments_json
from nanocode.tokenizer import Tokenizer

MAX_BODY = 8 * 2**20  # bytes; a 2048-token context holds ~8 KB of text, so this is generous


def error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
          code: str | None = None, headers: dict | None = None) -> JSONResponse:
    """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status,
                        headers=headers)


def build_app(engine: Engine, tok: Tokenizer, *, model_id: str, context_len: int, api_key: str | None = None,
              created: int | None = None) -> Starlette:
    created = int(created if created is not None else time.time())
    model_card = {"id": model_id, "object": "model", "created": created, "owned_by": "nanocode"}

    def authorized(request: Request) -> bool:
        if not api_key:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode())

    def unauthorized() -> JSONResponse:
        return error(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY' with the key "
                     "the server was started with (--api-key-env)", code="invalid_api_key")

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def models(request: Request):
        if not authorized(request):
            return unauthorized()
        return JSONResponse({"object": "list", "data": [model_card]})

    async def model(request: Request):
        if not authorized(request):
            return unauthorized()
        if request.path_params["name"] != model_id:
            return error(404, f"no model {request.path_params['name']!r} here; this server has {model_id!r}",
                         code="model_not_found", param="model")
        return JSONResponse(model_card)

    async def chat_completions(request: Request):
        if not authorized(request):
            return unauthorized()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return error(413, f"the request body is over {MAX_BODY // 2**20} MiB")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return error(400, f"the request body is not valid JSON ({e})")
        try:
            req = parse_request(data, tok, context_len)
        except RequestError as e:
            return error(e.status, str(e), e.kind, e.param, e.code)
        max_new = min(req.max_tokens or context_len, context_len - len(req.prompt))
        job = Job(req.prompt, max_new, req.temperature, req.top_p, req.top_k, stop_ids(tok, req),
                  req.seed % 2**31 if req.seed is not None else fresh_seed(), emit=lambda _: None)
        try:
            ids = start(engine, job)
        except Busy as e:
            return error(429, f"the server is busy: {e}", "rate_limit_error", code="server_busy")
        reply = Reply(tok, req.tools, req.stop, req.forced)
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model_id}
        if req.stream:
            return StreamingResponse(sse(ids, reply, req, meta), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        watcher = asyncio.create_task(cancel_on_disconnect(request, job))
        try:
            async with contextlib.aclosing(ids):
                async for new in ids:
                    reply.feed(new)
                    if reply.done:
                        break
        except Exception as e:
            return error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")
        finally:
            watcher.cancel()
        reply.close()
        message = {"role": "assistant", "content": reply.content or (None if reply.call else "")}
        if reply.call is not None:
            message["tool_calls"] = [tool_call(reply, req)]
        return JSONResponse({**meta, "object": "chat.completion", "choices": [
            {"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": usage(req, reply)})

    async def http_error(request: Request, exc: HTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        hint = " (the API is under /v1: /v1/models, /v1/chat/completions)" if exc.status_code == 404 else ""
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}{hint}", kind,
                     headers=exc.headers)  # 405 keeps its Allow header

    async def server_error(request: Request, exc: Exception):
        return error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    routes = [
        Route("/health", health),
        Route("/v1/models", models),
        Route("/v1/models/{name:path}", model),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})


def stop_ids(tok: Tokenizer, req: ChatRequest) -> tuple[int, ...]:
    """The sampler stops at every special token that cannot continue the reply: all of them, except, when the
    model may call a tool, the ones a call is written with (the Reply ends at <|tool_call_end|>)."""
    keep = {"tool_call_start", "tool_arg", "tool_val"} if req.tools else set()
    return tuple(sorted(tok.special_ids - {tok.special(n) for n in keep}))


def start(engine: Engine, job: Job):
    """Queues the job; returns an async iterator of its new ids (closing it cancels the job)."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()

    def emit(item) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            job.cancel.set()

    job.emit = emit
    engine.submit(job)

    async def ids():
        try:
            while (item := await items.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # the reply is complete, the client went away, or the server stops: the worker moves on
            job.cancel.set()
    return ids()


async def cancel_on_disconnect(request: Request, job: Job) -> None:
    """A client that gave up (a timeout, then a retry) must not keep the model busy for nobody: the queue
    would fill with abandoned requests. A streamed reply notices on its next write; a whole one polls."""
    while not job.cancel.is_set():
        if await request.is_disconnected():
            job.cancel.set()
            return
        await asyncio.sleep(0.25)


def tool_call(reply: Reply, req: ChatRequest) -> dict:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": reply.call.name, "arguments": arguments_json(reply.call, req.tools[reply.call.name])}}


def usage(req: ChatRequest, reply: Reply) -> dict:
    return {"prompt_tokens": len(req.prompt), "completion_tokens": reply.tokens,
            "total_tokens": len(req.prompt) + reply.tokens}


async def sse(ids, reply: Reply, req: ChatRequest, meta: dict):
    """The streamed reply: OpenAI's chat.completion.chunk events, then `data: [DONE]`."""
    def event(delta: dict | None, finish: str | None = None, **extra) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return f"data: {json.dumps({**meta, 'object': 'chat.completion.chunk', 'choices': choices, **extra})}\n\n"

    yield event({"role": "assistant", "content": ""})
    try:
        async with contextlib.aclosing(ids):
            async for new in ids:
                if text := reply.feed(new):
                    yield event({"content": text})
                if reply.done:
                    break
    except Exception as e:  # the status line is long gone: say it in the stream, as OpenAI does
        failure = {"message": f"generation failed: {type(e).__name__}: {e}", "type": "server_error", "param": None,
                   "code": None}
        yield f"data: {json.dumps({'error': failure})}\n\n"
        yield "data: [DONE]\n\n"
        return
    if text := reply.close():
        yield event({"content": text})
    if reply.call is not None:
        yield event({"tool_calls": [{"index": 0, **tool_call(reply, req)}]})
    yield event({}, reply.finish_reason)
    if req.include_usage:
        yield event(None, usage=usage(req, reply))
    yield "data: [DONE]\n\n"


# --- the command ----------------------------------------------------------------------------------

def flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanocode serve", description="An OpenAI-compatible server over a nanocode "
                                "model: GET /v1/models, POST /v1/chat/completions (whole or streamed).")
    p.add_argument("--model", help="model directory (default: $NANOCODE_MODEL, then the newest model trained "
                   "under $NANOCODE_HOME, then the one in checkpoints/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                   "only; 0.0.0.0 opens it to the network, so set --api-key-env too)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key-env", metavar="VAR", help="require 'Authorization: Bearer $VAR' on every request")
    p.add_argument("--max-waiting", type=int, default=32, help="requests that may wait for the model before "
                   "new ones get 429 (default 32)")
    return p


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None) -> int:
    a = flags().parse_args(argv)
    if not 0 <= a.port < 65536:
        return _fail(f"--port must be 0-65535, got {a.port}")
    if a.max_waiting < 1:
        return _fail(f"--max-waiting must be at least 1, got {a.max_waiting}")
    api_key = None
    if a.api_key_env:
        api_key = os.environ.get(a.api_key_env)
        if not api_key:
            return _fail(f"--api-key-env {a.api_key_env}: ${a.api_key_env} is empty or unset; export the key "
                         "clients will send")
    from nanocode.lookup import CheckpointError, find_model
    try:
        model_dir = find_model(a.model)
    except CheckpointError as e:
        return _fail(str(e))

    import uvicorn  # the heavy imports only once the flags are known to be good

    from nanocode.checkpoint import load_model
    from nanocode.sampler import Sampler
    try:
        net, tok, _ = load_model(model_dir)
    except CheckpointError as e:
        return _fail(str(e))
    sampler = Sampler(net)
    context_len = net.config.seq_len
    print(f"nanocode serve: compiling {model_dir.name} (context {context_len} tokens)...", file=sys.stderr)
    # The first request's programs compile now instead of inside it (the default sampling settings).
    sampler.generate([tok.special("bos"), tok.special("user_start")], 2, temperature=1.0)
    engine = Engine(sampler, max_waiting=a.max_waiting)
    app = build_app(engine, tok, model_id=model_dir.name, context_len=context_len, api_key=api_key,
                    created=int((model_dir / "config.json").stat().st_mtime))
    if not _loopback(a.host) and not api_key:
        print(f"warning: listening on {a.host} without --api-key-env: anyone who can reach this machine can "
              "use the model", file=sys.stderr)
    print(f"nanocode serve: {model_dir.name} at http://{a.host}:{a.port}/v1 (OpenAI-compatible; any model name "
          "is accepted)", file=sys.stderr)
    try:
        uvicorn.run(app, host=a.host, port=a.port, log_level="info")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
