"""Requests written the way people type them: templates x slots x surface transforms, seeded.

    ask(intent, rng, name=..., kind=..., file=..., **slots) -> Request(text, pattern, forms)

An intent (`locate`, `read_head`, `thanks`, ...) has a bank of templates in requests/. A template is a
line of a tiny grammar: its first character is its class (`?` a question, `!` an imperative, `.` a
statement), `<a|b|>` picks one alternative, `[x]` is optional, `{slot}` is filled in. The slots that
name code are rendered with a *name style* (bare, in backticks, in quotes, with `()`, with or without
"the function"), a file with or without its name; then surface transforms: an opener or a polite
closer fitting the class, a sentence of context before or after, lower- or sentence-case, the ending
punctuation, dropped apostrophes, an occasional typo in an ordinary word (never in a name: the name is
what the request is about; the recovery family makes its own typo'd names).

Held-out patterns. Every template and every opener, closer, context sentence and kind phrase has a
stable id (a hash of its text). A fixed fifth of them (HOLDOUT) is never used in training data: they
exist only for the generalisation eval (training/eval/phrasing_split.py), which asks with them to
measure success on phrasings the model never saw. `with split("unseen"):` makes `ask` use held-out
templates only (and held-out surface options when a bank has them); the default split is "seen".

Why compositional rather than a list: the shipped model solved 2 of 12 requests of a held-out suite
phrased by people, and answered right only when the name was in backticks, as 88% of its training
requests had it (issue 15). A few dozen templates per intent times the name, file and surface choices
give millions of surface forms for a handful of patterns, so the model has to read the request
instead of matching it.
"""
import hashlib
import random
import re
from contextlib import contextmanager
from dataclasses import dataclass

from training.synth.requests import BANK

HOLDOUT = 0.2          # share of templates (and of surface options with a bank of them) kept for the eval
SPLITS = ("seen", "unseen")
_SPLIT = "seen"        # what `ask` draws from; the synth driver never changes it


@contextmanager
def split(name: str):
    """Draw templates from the held-out patterns ("unseen") or the training ones ("seen") inside the block."""
    global _SPLIT
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
    old, _SPLIT = _SPLIT, name
    try:
        yield
    finally:
        _SPLIT = old


def option_id(bank: str, text: str) -> str:
    return f"{bank}/{hashlib.blake2b(text.encode('utf-8'), digest_size=3).hexdigest()}"


def is_held_out(oid: str) -> bool:
    digest = hashlib.blake2b(("holdout:" + oid).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < HOLDOUT * 2**64


def partition(bank: str, options: list[str]) -> dict[str, list[str]]:
    """The seen and unseen options of a bank. A bank of 3+ options keeps at least one of each (an intent
    must be trainable, and testable on something it was not trained on); smaller banks are all seen. The
    first option is always seen: requests/ lists an intent's plainest phrasing first ("read the file
    X"), the one the most users type, and the product must not lose it to the eval."""
    if len(options) < 3:
        return {"seen": list(options), "unseen": []}
    held = [o for o in options[1:] if is_held_out(option_id(bank, o))]
    seen = [o for o in options if o not in held]
    if not seen:
        seen, held = held[:1], held[1:]
    if not held:
        held, seen = seen[-1:], seen[:-1]
    return {"seen": seen, "unseen": held}


_PARTS: dict[str, dict[str, list[str]]] = {}


class NoOption(LookupError):
    """No option of the current split fits (e.g. every unseen template of an intent needs a missing slot)."""


def parts_of(bank: str, options: list[str]) -> dict[str, list[str]]:
    parts = _PARTS.get(bank)
    if parts is None:
        parts = _PARTS[bank] = partition(bank, options)
    return parts


def held_out_ids() -> set[str]:
    """Ids of every held-out option of the banks used so far in this process."""
    return {option_id(bank, o) for bank, parts in _PARTS.items() for o in parts["unseen"]}


def choose(bank: str, options: list[str], rng: random.Random, forms: list[str] | None = None,
           strict: bool = False, keep=None) -> str:
    """One option of a bank from the current split. The split is made over the whole bank (`options`,
    always the same list for a bank name), and `keep` then filters it, so whether an option is held out
    never depends on which others fit. Unseen draws fall back to seen options when the bank has no
    held-out ones, unless strict (templates: an unseen request must use an unseen template)."""
    parts = parts_of(bank, options)
    pool = parts[_SPLIT] if _SPLIT == "seen" or strict else (parts["unseen"] or parts["seen"])
    if _SPLIT == "unseen" and not strict and parts["unseen"] and rng.random() < 0.5:
        pool = options  # unseen requests mix held-out surface options with seen ones
    if keep is not None:
        pool = [o for o in pool if keep(o)]
    if not pool:
        raise NoOption(f"bank {bank} has no {_SPLIT} option that fits")
    pick = rng.choice(pool)
    if forms is not None:
        forms.append(option_id(bank, pick))
    return pick


# --- the grammar --------------------------------------------------------------------------------

def expand(template: str, rng: random.Random) -> str:
    """`<a|b|>` -> one alternative, `[x]` -> x or nothing (nested freely); slots are left as `{slot}`."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c in "<[":
            depth, j = 1, i + 1
            while depth:
                depth += (template[j] in "<[") - (template[j] in ">]")
                j += 1
            inner = template[i + 1:j - 1]
            if c == "[":
                out.append(expand(inner, rng) if rng.random() < 0.5 else "")
            else:
                out.append(expand(rng.choice(_split_top(inner)), rng))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _split_top(inner: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for k, c in enumerate(inner):
        depth += (c in "<[") - (c in ">]")
        if c == "|" and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    return parts + [inner[start:]]


SLOT = re.compile(r"\{(\w+)\}")


def slots_of(template: str) -> set[str]:
    return set(SLOT.findall(template))


# --- rendering names and files --------------------------------------------------------------------

# How a name is written. Weighted to what people type: mostly bare, a third in backticks (issue 15: the
# shipped data had 88% backticks and the model failed on bare names).
NAME_STYLES = [("bare", 46), ("tick", 34), ("squote", 7), ("dquote", 5), ("parens", 8)]
KIND_WORDS = {
    "function": ["the function {n}", "the {n} function", "function {n}", "{n} function", "the {n} helper",
                 "the {n} func", "func {n}"],
    "method": ["the method {n}", "the {n} method", "method {n}", "{n} in {cls}", "{cls}.{n}", "{cls}'s {n}",
               "the {n} method of {cls}", "{cls}'s {n} method"],
    "class": ["the class {n}", "the {n} class", "class {n}", "{n} class"],
    "constant": ["the constant {n}", "the {n} constant", "{n} setting", "the {n} setting", "the {n} value"],
}
FILE_STYLES = [("bare", 62), ("tick", 30), ("squote", 5), ("dquote", 3)]


def style_name(name: str, style: str, callable_: bool) -> str:
    if style == "tick":
        return f"`{name}`"
    if style == "squote":
        return f"'{name}'"
    if style == "dquote":
        return f'"{name}"'
    if style == "parens" and callable_:
        return f"{name}()"
    return name


def _weighted(rng: random.Random, options: list[tuple[str, int]]) -> str:
    names, weights = zip(*options)
    return rng.choices(names, weights)[0]


@dataclass(frozen=True)
class Request:
    text: str
    pattern: str               # the template's id: `intent/abc123`
    forms: tuple[str, ...]     # ids of the surface options used (name style, opener, context, ...)


# Slots holding code that is not a plain name (a call, a signature, `param=value`): quoted or not like a name.
CODE_SLOTS = {"call", "want", "sig", "pd", "code", "old_code", "new_code", "cmd", "test_name"}
NAME_SLOTS = {"name", "new", "p", "cls"}


def ask(intent: str, rng: random.Random, mention: tuple[str, ...] = (), **slots) -> Request:
    """A request for `intent` with the given slots. `name` (+ `kind`: function, method, class, constant;
    `cls` for a method) and `file` get styles; `target` (the name as a noun phrase, maybe "the function
    X") and `where` (" in FILE" or nothing) are derived from them. Templates needing a slot that was not
    given are skipped; with `mention`, so are templates that leave out one of those slots (`name` counts as
    mentioned by {target}, `file` by {where} only when it renders the file)."""
    if intent not in BANK:
        raise KeyError(f"no request templates for intent {intent!r}")
    given = {k for k, v in slots.items() if v is not None}
    if "name" in given:
        given.add("target")
    if "file" in given:
        given.add("where")
    usable = [t for t in BANK[intent] if slots_of(t) <= given
              and all(m in slots_of(t) or (m == "name" and "target" in slots_of(t)) for m in mention)]
    if not usable:
        raise KeyError(f"no template of {intent!r} fits the slots {sorted(given)}")
    edits = intent in EDIT_INTENTS
    for _ in range(12):
        req = _render(intent, usable, rng, slots)
        if not edits or not _question_only(req.text):
            return req
    return req  # the families check the critic anyway; a rare question-shaped edit request is skipped there


def _question_only(text: str) -> bool:
    from training.critic import is_question_only
    return is_question_only(text)


# Intents whose request asks for a change: rendered until the critic reads them as asking for one (its
# no_extra_work rule flags an edit made for a request that only asks a question).
EDIT_INTENTS = {"rename", "rename_all", "constant", "default", "add_param", "stub", "create_function",
                "bugfix", "create_program", "add_docstring", "delete_function", "fix_tests", "replace_text",
                "then_rename", "edit_exact", "then_set", "then_docstring"}


def _render(intent: str, usable: list[str], rng: random.Random, slots: dict) -> Request:
    forms: list[str] = []
    template = choose(f"t:{intent}", BANK[intent], rng, strict=True, keep=usable.__contains__)
    pattern = option_id(f"t:{intent}", template)
    cls, body = (template[0], template[2:]) if template[:2] in ("? ", "! ", ". ") else ("", template)
    text = expand(body, rng)

    values: dict[str, str] = {}
    nstyle = _weighted(rng, NAME_STYLES)
    forms.append(f"name/{nstyle}")
    kind = slots.get("kind") or "function"
    callable_ = kind in ("function", "method")
    for k, v in slots.items():
        if v is None or k == "kind":
            continue
        v = str(v)
        if k in NAME_SLOTS:
            values[k] = style_name(v, nstyle if k != "p" or nstyle != "parens" else "tick",
                                   callable_ and k in ("name", "new"))
        elif k in CODE_SLOTS:
            values[k] = style_name(v, "tick" if nstyle in ("tick", "parens") else
                                   ("bare" if rng.random() < 0.5 else nstyle), False)
        elif k == "file":
            values[k] = style_name(v, _weighted(rng, FILE_STYLES), False)
        else:
            values[k] = v
    if "name" in slots and slots["name"] is not None:
        values["target"] = _target(slots["name"], kind, slots.get("cls"), nstyle, rng, forms)
    if "file" in values:
        values["where"] = choose("where", WHERE, rng, forms).format(file=values["file"]) \
            if rng.random() < 0.55 else ""

    # Surface transforms act on the template's words only: slot values go in as placeholders.
    holes = {}

    def hole(m):
        key = f"\x00{len(holes)}\x00"
        holes[key] = values[m.group(1)]
        return key

    text = SLOT.sub(hole, text)
    text = _surface(text, cls, intent, rng, forms, lambda s: SLOT.sub(hole, s) if slots_of(s) <= set(values) else None)
    text = re.sub(r"[ \t]+([,.?!:;)])(?=\s|$)", r"\1", re.sub(r"[ \t]+", " ", text)).strip()
    for key, value in holes.items():
        text = text.replace(key, value)
    text = re.sub(r" {2,}", " ", text).strip()
    return Request(text, pattern, tuple(forms))


def _target(name: str, kind: str, cls: str | None, nstyle: str, rng: random.Random, forms: list[str]) -> str:
    """The name as a noun phrase: `x`, "the function x", "the x method of Y", "Y.x"."""
    shown = style_name(name, nstyle, kind in ("function", "method"))
    words = KIND_WORDS.get(kind, [])
    if not words or rng.random() >= (0.6 if kind == "method" and cls else 0.35):
        return shown
    # a possessive after a quote reads badly ("'Foo''s bar"): quoted names take the other phrasings
    fits = lambda w: (bool(cls) or "{cls}" not in w) and not ("'s" in w and nstyle in ("squote", "dquote"))
    try:
        phrase = choose(f"kind:{kind}", words, rng, forms, keep=fits)
    except NoOption:
        return shown
    if phrase == "{cls}.{n}":  # one dotted name, styled as a whole
        return style_name(f"{cls}.{name}", nstyle, True)
    return phrase.format(n=shown, cls=style_name(cls, "tick" if nstyle == "parens" else nstyle, False) if cls else "")


WHERE = [" in {file}", " in the file {file}", " ({file})", " over in {file}", " from {file}", " inside {file}",
         " in {file} i think", " which is in {file}", ", in {file}", " in the {file} file"]


# --- surface transforms ----------------------------------------------------------------------------

OPENERS = {
    "?": ["hey, ", "quick question: ", "sorry, ", "hmm, ", "ok so ", "so ", "um, ", "question: ", "hi! ",
          "hey nanocode, ", "random question, ", "yo, ", "one thing: ", "btw "],
    "!": ["please ", "can you ", "could you ", "pls ", "would you ", "hey, can you ", "hey, ", "ok, ",
          "could you please ", "can you please ", "i need you to ", "go ahead and ", "quick one: ",
          "hey could you "],
    ".": ["hey, ", "so ", "ok, ", "hmm. ", "well, ", "fyi ", "right, "],
}
CLOSERS = {
    "?": [" thanks", " (thanks!)", " thx", " ty", " cheers"],
    "!": [" please", ", thanks", " pls", " for me", " thx", " when you get a chance", ", ty", " :)", " real quick"],
    ".": [" thanks", " :)", ", thanks"],
}
# A sentence of context, as people add one: generic, or about what the request is about.
CONTEXT = {
    "any": ["i'm new to this codebase", "just getting oriented here", "trying to understand this repo",
            "i'm reviewing a pull request", "doing some cleanup today", "context: i inherited this code",
            "for a code review", "my teammate asked me about this", "been staring at this for a while",
            "first day on this project", "sorry if this is obvious", "working through some old code",
            "quick one before my meeting", "no rush", "this is for a refactor i'm planning",
            "i'm back after a long break", "bear with me", "i'm on my phone so excuse the typos",
            "we're tidying up before a release", "i'm pairing with a colleague"],
    "code": ["i keep seeing {name} in the code", "{name} came up in a stack trace", "i think {name} is the culprit",
             "someone mentioned {name} in standup", "{name} looks important"],
    "file": ["i'm looking at {file}", "{file} is where i'm stuck", "i just opened {file}",
             "{file} came up in a review"],
    "test": ["ci went red this morning", "i just pulled main", "about to push a change",
             "want to make sure nothing broke", "i changed a few things yesterday"],
    "edit": ["the reviewer asked for it", "it's a small change", "we agreed on this in review",
             "this has bugged me for a while", "keep everything else as is"],
}
# Which context sentences fit which intents (generic ones fit all).
CONTEXT_GROUPS = {"test": {"run_tests", "fix_tests", "tests_named"},
                  "edit": EDIT_INTENTS}
CAPITAL_I = re.compile(r"(?<![\w'])i(?=('m|'ll|'ve|'d)?\b)")
# Ordinary words misspelled the way fast typists do (the name slots are placeholders here: never touched).
TYPO_OPS = ("swap", "drop", "double")
SPELLING = {"the": "teh", "function": "fucntion", "definition": "defintion", "which": "wich", "where": "wehre",
            "please": "pleae", "what": "waht", "file": "fiel", "change": "chnage", "rename": "renmae",
            "because": "becuase", "project": "porject", "does": "dose", "tests": "tets"}


def _typo(text: str, rng: random.Random) -> str:
    words = [m for m in re.finditer(r"(?<![\x00\w])[a-z]{4,}(?![\w\x00])", text)]
    if not words:
        return text
    m = rng.choice(words)
    w = m.group(0)
    if w in SPELLING and rng.random() < 0.5:
        bad = SPELLING[w]
    else:
        k = rng.randrange(1, len(w) - 1)
        op = rng.choice(TYPO_OPS)
        bad = (w[:k] + w[k + 1] + w[k] + w[k + 2:] if op == "swap" else
               w[:k] + w[k + 1:] if op == "drop" else w[:k] + w[k] + w[k:])
    return text[:m.start()] + bad + text[m.end():]


def _context(intent: str, rng: random.Random, forms: list[str], fill) -> str | None:
    """A context sentence for the intent; `fill` puts slot values in as placeholders (None: a slot is missing)."""
    groups = ["any"] * 3 + [g for g, intents in CONTEXT_GROUPS.items() if intent in intents] * 2
    groups += [g for g, slot in (("code", "{name}"), ("file", "{file}")) if fill(slot) is not None]
    g = rng.choice(groups)
    return fill(choose(f"ctx:{g}", CONTEXT[g], rng, forms))


def _surface(text: str, cls: str, intent: str, rng: random.Random, forms: list[str], fill) -> str:
    if not cls:  # a request that is its own few words ("thanks!", "hi"): only its case may change
        if rng.random() < 0.25:
            text = text[:1].swapcase() + text[1:]
        return text
    # an opener or a closer fitting the sentence's class ("can you" turns an imperative into a question)
    question = cls == "?"
    r = rng.random()
    if r < 0.30 and intent not in BARE_INTENTS:
        opener = choose(f"open:{cls}", OPENERS[cls], rng, forms)
        question = question or opener.rstrip(", ").endswith(("can you", "could you", "would you", "please"))
        question = question and not opener.startswith(("please", "go ahead", "i need"))
        text = opener + text
        # "please please rename", "so so what's": the opener repeats the template's first word
        text = re.sub(r"^(\w+)[ ,]+\1\b", r"\1", text, flags=re.IGNORECASE)
    elif r < 0.45 and intent not in BARE_INTENTS:
        closer = choose(f"close:{cls}", CLOSERS[cls], rng, forms)
        text += closer if closer.strip(" ,") not in text else ""
    # the ending
    e = rng.random()
    if question:
        end = "?" if e < 0.86 else ("" if e < 0.97 else "??")
    elif cls == "!":
        end = "" if e < 0.55 else ("." if e < 0.9 else "!")
    else:
        end = "." if e < 0.55 else ""
    if text.endswith((":)", "!", "?", ".")):
        end = ""
    text += end
    # a sentence of context, before or after
    # requests naming no code get context more often: "run the tests" alone repeats across 50,000 conversations
    p_ctx = 0.2 if fill("{name}") is not None or fill("{file}") is not None else 0.35
    ctx = _context(intent, rng, forms, fill) if rng.random() < p_ctx and intent not in BARE_INTENTS else None
    if ctx:
        if rng.random() < 0.6:
            text = ctx + rng.choice([". ", ", ", " - ", ".\n", "... "]) + text
        else:
            before, after = rng.choice([(" ", ""), (" ", "."), (" (", ")"), (" - ", ""), ("\n", "")])
            text = text.rstrip() + before + ctx + after
    # case, apostrophes, a typo
    c = rng.random()
    if c < 0.3:
        text = text[:1].upper() + text[1:]
        if rng.random() < 0.7:
            text = CAPITAL_I.sub("I", text)
        forms.append("case/sentence")
    if rng.random() < 0.1:
        text = re.sub(r"(?<=[a-z])'(?=(s|t|m|re|ll|ve|d)\b)", "", text)
        forms.append("apostrophes/dropped")
    if rng.random() < 0.06:
        text = _typo(text, rng)
        forms.append("typo")
    return text


# Requests whose whole point is their few words ("thanks", "hi"): no opener, closer or context around them.
BARE_INTENTS = {"thanks", "greet"}


# --- measuring a batch of requests ------------------------------------------------------------------

def diversity(requests: list[str]) -> dict:
    """Distinct share and the share with backticks: both go into every synth run's stats.json."""
    n = len(requests)
    if not n:
        return {"n": 0, "distinct_share": None, "backtick_share": None}
    return {"n": n, "distinct_share": round(len(set(requests)) / n, 4),
            "backtick_share": round(sum("`" in r for r in requests) / n, 4)}
