"""An optional larger model behind an OpenAI-compatible endpoint (`--generator-url`, `--critic-url`):
vLLM, llama.cpp's server, Ollama, or a hosted API. Off by default; nothing else needs it.

The generator only rewrites *prose*: tool calls and results stay exactly what the scripted teacher ran,
so they remain real. Each text part is rewritten in nanocode's voice, the rule critic (plus, with
--critic-url, the model critic) judges the turn, and a turn that breaks a rule is revised once with the
violations spelled out. Plain `urllib`, no SDK: the protocol is one POST.
"""
import copy
import json
import os
import re
import urllib.error
import urllib.request

from training.critic import RULES, Violation
from training.soul import soul_rule_texts, soul_text


class LLMError(RuntimeError):
    pass


class Endpoint:
    def __init__(self, url: str, model: str = "default", api_key: str | None = None, timeout: float = 120.0):
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def chat(self, messages: list[dict], temperature: float = 0.7, max_tokens: int = 400) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": temperature,
                           "max_tokens": max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, body, headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                reply = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise LLMError(f"{self.url} answered HTTP {e.code}: {e.read()[:300]!r}; check the URL, --llm-model "
                           "and the API key") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise LLMError(f"cannot reach {self.url} ({e}); is the server running?") from None
        except json.JSONDecodeError:
            raise LLMError(f"{self.url} did not answer with JSON; is it an OpenAI-compatible endpoint?") from None
        try:
            return str(reply["choices"][0]["message"]["content"]).strip()
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"{self.url} answered without choices[0].message.content: {str(reply)[:300]}") from None


def transcript(messages: list[dict]) -> str:
    """A conversation as plain text for a model to read."""
    out = []
    for m in messages:
        if m["role"] == "user":
            out.append(f"USER: {m['content']}")
            continue
        for p in m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]:
            if p["type"] == "text":
                out.append(f"NANOCODE: {p['text'].strip()}")
            elif p["type"] == "tool_call":
                args = ", ".join(f"{k}={v!r}" for k, v in p["args"].items())
                out.append(f"[tool call] {p['name']}({args[:400]})")
            else:
                out.append(f"[tool result{'' if p['ok'] else ', failed'}]\n{p['output'][:1200]}")
    return "\n".join(out)


WRITE_SYSTEM = """You write the prose of nanocode, a small coding agent, following its constitution:

{soul}

You are given a conversation and ONE line nanocode says at a marked point, written plainly by a script.
Rewrite that line in nanocode's voice. Keep every file path, line number, identifier, number and code
span exactly; say nothing that the conversation does not show; keep it about as short. Reply with the
rewritten line only."""

JUDGE_SYSTEM = """You check replies of nanocode, a small coding agent, against its rules:

{rules}

Reply with JSON only: {{"violations": [{{"rule": "<rule id>", "reason": "<short>"}}]}} (an empty list when
the reply keeps every rule). Judge only the LAST nanocode turn."""


class Writer:
    """The generator and/or model critic of one synth run."""

    def __init__(self, generator: Endpoint | None, judge: Endpoint | None):
        self.generator, self.critic = generator, judge

    @classmethod
    def from_config(cls, cfg) -> "Writer":
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        gen = Endpoint(cfg.generator_url, cfg.llm_model, key) if cfg.generator_url else None
        judge = Endpoint(cfg.critic_url, cfg.llm_model, key) if cfg.critic_url else None
        return cls(gen, judge)

    @property
    def generates(self) -> bool:
        return self.generator is not None

    @property
    def judges(self) -> bool:
        return self.critic is not None

    def _rewrite_part(self, history: list[dict], parts: list[dict], i: int, extra: str = "") -> str:
        marked = parts[:i] + [{"type": "text", "text": ">>> " + parts[i]["text"].strip() + " <<<"}]
        prompt = transcript(history + [{"role": "assistant", "content": marked}])
        system = WRITE_SYSTEM.format(soul=soul_text())
        text = self.generator.chat([{"role": "system", "content": system},
                                    {"role": "user", "content": prompt + extra}])
        text = text.strip().strip(">").strip("<").strip()
        # a note before a tool call keeps its line break, as the teacher wrote it
        return text + "\n" if parts[i]["text"].endswith("\n") else text

    def rewrite(self, messages: list[dict]) -> list[dict]:
        """Every assistant text part rewritten by the generator (calls and results untouched)."""
        out = copy.deepcopy(messages)
        for k, m in enumerate(out):
            if m["role"] != "assistant":
                continue
            for i, p in enumerate(m["content"]):
                if p["type"] == "text" and p["text"].strip():
                    p["text"] = self._rewrite_part(out[:k], m["content"], i)
        return out

    def revise(self, messages: list[dict], violations: list[Violation]) -> list[dict]:
        """The last assistant turn's prose rewritten once more, told which rules it broke."""
        out = copy.deepcopy(messages)
        k = max(i for i, m in enumerate(out) if m["role"] == "assistant")
        notes = "\n".join(f"- {v.rule}: {v.message}" for v in violations)
        extra = f"\n\nA critic found these problems in nanocode's reply; fix them:\n{notes}"
        for i, p in enumerate(out[k]["content"]):
            if p["type"] == "text" and p["text"].strip():
                p["text"] = self._rewrite_part(out[:k], out[k]["content"], i, extra)
        return out

    def judge(self, history: list[dict], reply: dict) -> list[Violation]:
        """The model critic's violations of the reply (unknown rule ids and unparseable answers are ignored:
        the rule critic stays the authority)."""
        rules = "\n".join(f"- {rid}: {text}" for rid, text in soul_rule_texts().items())
        answer = self.critic.chat([{"role": "system", "content": JUDGE_SYSTEM.format(rules=rules)},
                                   {"role": "user", "content": transcript(history + [reply])}], temperature=0.0)
        m = re.search(r"\{.*\}", answer, re.DOTALL)
        try:
            found = json.loads(m.group(0))["violations"] if m else []
        except (json.JSONDecodeError, KeyError, TypeError):
            return []
        return [Violation(v["rule"], f"model critic: {v.get('reason', '')}") for v in found
                if isinstance(v, dict) and v.get("rule") in RULES]
