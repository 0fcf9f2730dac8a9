"""The Markdown pieces of `nanocode report` (training/report.py gathers the run; this renders it): tables,
the corpus / shards / tokenizer summaries, transcripts, and the model card. Functions taking `run` or
`model` read the plain dataclasses of training/report.py.
"""
import json

from training.eval.results import Table, fmt


# --- Markdown pieces ----------------------------------------------------------------------------------

def md_table(table: Table) -> str:
    def cell(s) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = [f"**{table.title}**", "", "| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def flat_items(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, value) rows, lists shortened."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += flat_items(v, key + ".")
        elif isinstance(v, list):
            out.append((key, json.dumps(v)[:120]))
        elif isinstance(v, float):
            out.append((key, f"{v:.6g}"))
        else:
            out.append((key, fmt(v)))
    return out


def kv_table(title: str, d: dict) -> str:
    return md_table(Table(title, ["key", "value"], [[k, v] for k, v in flat_items(d)]))


def mb(n) -> str:
    return f"{n / 1e6:,.2f}" if isinstance(n, (int, float)) else "-"


def corpus_table(path: str, s: dict) -> str:
    rows = [["seen (source files)", fmt(s.get("seen", {}).get("files")), mb(s.get("seen", {}).get("bytes"))]]
    for reason, slot in sorted(s.get("removed", {}).items(), key=lambda kv: -kv[1].get("bytes", 0)):
        rows.append([f"removed: {reason}", fmt(slot.get("files")), mb(slot.get("bytes"))])
    rows.append(["kept", fmt(s.get("kept", {}).get("files")), mb(s.get("kept", {}).get("bytes"))])
    text = md_table(Table(f"Corpus (`{path}`)", ["files", "count", "MB"], rows))
    splits = [[name, fmt(v.get("docs")), mb(v.get("code_bytes")), mb(v.get("prose_bytes"))]
              for name, v in s.get("splits", {}).items()]
    if splits:
        text += "\n" + md_table(Table("Corpus splits", ["split", "documents", "code MB", "prose MB"], splits))
    langs = sorted(s.get("by_lang", {}).items(), key=lambda kv: -kv[1].get("bytes", 0))[:12]
    if langs:
        text += "\n" + md_table(Table("Languages (largest first)", ["language", "files", "MB"],
                                      [[k, fmt(v.get("files")), mb(v.get("bytes"))] for k, v in langs]))
    return text


def shards_table(path: str, meta: dict) -> str:
    rows = []
    for split, s in meta.get("splits", {}).items():
        for kind in ("code", "prose"):
            k = s.get(kind, {})
            tokens, n_bytes = k.get("n_tokens"), k.get("n_bytes")
            rows.append([split, kind, fmt(k.get("n_docs")), fmt(tokens), mb(n_bytes),
                         fmt(n_bytes / tokens if tokens else None, 3)])
    return md_table(Table(f"Token shards (`{path}`, vocab {meta.get('vocab_size', '?')})",
                          ["split", "text", "documents", "tokens", "MB", "bytes/token"], rows))


def compression_table(path: str, report: dict) -> str:
    rows = [[kind, fmt(v.get("docs")), mb(v.get("bytes")), fmt(v.get("nanocode"), 3), fmt(v.get("gpt4_split"), 3)]
            for kind, v in report.get("val", {}).items()]
    return md_table(Table(f"Tokenizer compression on validation text (`{path}`, vocab "
                          f"{report.get('vocab_size', '?')})",
                          ["text", "documents", "MB", "nanocode bytes/token", "GPT-4 split bytes/token"], rows))


DATA_TABLES = {"corpus": corpus_table, "token shards": shards_table, "tokenizer": compression_table}


def data_section(run) -> list[str]:
    parts = []
    for path, (what, data) in run.data.items():
        try:
            parts.append(DATA_TABLES[what](path, data))
        except (AttributeError, TypeError, KeyError):  # an older or foreign file: show it as it is
            parts.append(kv_table(f"`{path}`", data))
    return parts or ["No corpus statistics, token shards or tokenizer report found for this run.\n"]


def environment(run) -> dict:
    """The machine and software each stage's start record describes."""
    env = {}
    for stage in run.stages:
        for k, v in stage.start.items():
            if k not in ("event", "step", "config", "model") and not isinstance(v, (dict, list)):
                env[k if stage.name == "." else f"{stage.name}.{k}"] = v
    return env


def models_table(run) -> str:
    rows = []
    for m in run.models:
        arch, meta = m.config.get("model", {}), m.config.get("meta", {})
        params = params_of(m.config)
        rows.append([m.name, str(meta.get("stage", "-")), f"{params / 1e6:.1f}M" if params else "-",
                     fmt(arch.get("depth")), fmt(arch.get("seq_len")), fmt(arch.get("vocab_size")),
                     fmt(meta.get("steps")), str(m.config.get("created", "-"))])
    return md_table(Table("Models", ["directory", "stage", "parameters", "depth", "context", "vocab", "steps",
                                     "saved"], rows))


def conversation_text(messages: list[dict], limit: int = 3000) -> str:
    """A transcript as plain text, tool calls and results marked, for a fenced block."""
    out = []
    for m in messages:
        if m["role"] == "user":
            out.append(f"user: {m['content']}")
            continue
        content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for p in content:
            if p["type"] == "text":
                out.append(f"assistant: {p['text']}")
            elif p["type"] == "tool_call":
                args = ", ".join(f"{k}={v!r}" for k, v in p["args"].items())
                out.append(f"  -> {p['name']}({args})")
            else:
                body = p["output"] if len(p["output"]) < 600 else p["output"][:600] + " [...]"
                out.append(f"  <- {'ok' if p['ok'] else 'error'}: {body}")
    text = "\n".join(out)
    return text if len(text) <= limit else text[:limit] + "\n[... transcript cut]"


def fence(text: str, lang: str = "") -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def log_samples(run, per_stage: int = 4) -> list[tuple[str, str]]:
    """(where, text) of the last samples each stage's log recorded."""
    out = []
    for stage in run.stages:
        where = "" if stage.name == "." else f"{stage.name} "
        found = [(f"{where}step {r.get('step', '?')}", r["sample"]) for r in stage.records
                 if isinstance(r.get("sample"), str) and r["sample"].strip()]
        out += found[-per_stage:]
    return out


def params_of(config: dict) -> int | None:
    from nanocode.model import ModelConfig

    try:
        return ModelConfig.from_dict(config.get("model", {})).num_params()
    except Exception:  # noqa: BLE001 - an older or foreign config: the report just omits the size
        return None


# --- the model card -----------------------------------------------------------------------------------

def ability(rate: float | None) -> str:
    if rate is None:
        return "not measured"
    return "can" if rate >= 0.7 else "sometimes" if rate >= 0.3 else "cannot yet"


def model_card(model) -> str:
    """What the model can and cannot do, read off its eval results; no claim without a number behind it."""
    ev = model.evals
    arch, meta = model.config.get("model", {}), model.config.get("meta", {})
    lines = [f"### Model card: `{model.name}`", ""]
    params = params_of(model.config)
    facts = [f"{params / 1e6:.1f}M parameters"] if params else []
    facts += [f"{arch[key]} {label}" for key, label in (("depth", "layers"), ("seq_len", "tokens of context"),
                                                        ("vocab_size", "token vocabulary")) if key in arch]
    if meta.get("stage"):
        facts.append(f"training stage: {meta['stage']}")
    if facts:
        lines += ["- " + ", ".join(facts) + ".", ""]
    measured = []
    agent = ev.get("agent", {})
    for kind, rate in agent.get("success_by_kind", {}).items():
        measured.append(f"- agent task `{kind}`: {ability(rate)} ({fmt(rate, 2)} of tasks)")
    if "unseen" in agent:
        measured.append(f"- agent tasks asked as its training data asks: {fmt(agent['seen'].get('success_rate'), 2)}"
                        f"; asked in phrasings it never trained on: {fmt(agent['unseen'].get('success_rate'), 2)}")
    if "well_formed_call_rate" in agent:
        measured.append(f"- writes well-formed tool calls: {fmt(agent['well_formed_call_rate'], 2)} of its calls")
    if agent.get("repeated_failed_call_turns") is not None:
        measured.append(f"- repeats a call that just failed in {fmt(agent['repeated_failed_call_turns'], 2)} of turns")
    he = ev.get("humaneval", {})
    if "pass@1" in he:
        measured.append(f"- writes a short Python function from its docstring (HumanEval pass@1): "
                        f"{fmt(he['pass@1'], 3)}")
    soul = ev.get("soul", {})
    if "pass_rate" in soul:
        weak = [r for r, v in soul["pass_rate"].items() if isinstance(v, float) and v < 0.7]
        measured.append(f"- keeps every SOUL.md rule in {fmt(soul.get('all_rules'), 2)} of replies "
                        f"({fmt(soul.get('finished'), 2)} of them finished their turn)"
                        + (f"; weakest rules: {', '.join(weak)}" if weak else ""))
    bpb = ev.get("bpb", {}).get("bpb") or meta.get("val_bpb")
    if bpb:
        measured.append("- validation bits per byte: " + ", ".join(f"{k} {fmt(v, 3)}" for k, v in bpb.items()))
    lines += ["What it does, measured:"] + (measured or [
        f"- nothing measured yet: run `nanocode eval agent|humaneval|soul|bpb --model {model.path}`"])
    weak_kinds = [kind for kind, rate in agent.get("success_by_kind", {}).items() if rate < 0.3]
    lines += ["", "Limits: " + (f"it does not yet manage the agent tasks {', '.join(weak_kinds)}. " if weak_kinds
                                else "")
              + "It is a small model trained from scratch on the code of one machine's corpus; it knows nothing "
              "outside that corpus, has no network access, and asks before every tool call. What the evals "
              "above do not measure is unknown, not a strength.", ""]
    return "\n".join(lines)
