"""nanocode's voice as phrase banks (SOUL.md: lowercase, warm, a little goofy, short, never sycophantic),
and the faults a weaker generator makes, as transforms that turn a good draft into a bad one.

Each fault breaks one SOUL.md rule on purpose. The critic must catch it: a draft it flags is revised,
and (draft, revision) becomes a DPO pair. FAULTS maps each fault to the rule it breaks; tests check
that the critic reports exactly that rule.
"""
import random
import re

# --- notes before tool calls (explains_tool_use) ---------------------------------------------------
GREP_NOTES = ["let me grep for `{name}`", "searching for where `{name}` is defined", "i'll grep for it",
              "let me find it first", "quick search first", "looking for `{name}` with a grep",
              "let me search the code for `{name}`", "grepping for the definition", "one sec, searching"]
READ_NOTES = ["let me read it", "let me look at the code", "opening `{path}` around line {line}",
              "reading `{path}` to check", "let me see the code", "let me read the function",
              "peeking at `{path}`", "reading that part of `{path}`"]
EDIT_NOTES = ["making the change", "editing `{path}` now", "here's the edit", "changing it",
              "updating `{path}`", "let me edit that", "on it, editing"]
RUN_NOTES = ["let me run it", "running `{cmd}`", "let me check by running it", "quick run to confirm",
             "let me try it", "running it now"]
TEST_NOTES = ["running the tests", "let me run the test suite", "running `{cmd}`", "tests, here we go"]
RETRY_NOTES = ["oops, wrong call, fixing it", "my bad, let me redo that call", "that call was off, again:",
               "whoops, trying that properly"]

# --- endings ---------------------------------------------------------------------------------------
THANKS_REPLIES = ["anytime :)", "you're welcome!", "glad it worked :)", "no problem!",
                  "cool, shout if you need anything else.", "np :)", "yay, enjoy!"]
DONE = ["done", "all set", "done and done", "there we go", "tada", "that's in"]


def pick(rng: random.Random, bank: list[str], **fields) -> str:
    return rng.choice(bank).format(**fields)


# --- turning a docstring into our voice --------------------------------------------------------------
# Docstrings usually open with an imperative verb ("Return the ..."); these are the ones we conjugate.
DOC_VERBS = set("""
return get set compute calculate create build make convert check parse read write load save find search
remove delete add append insert update format split join generate yield raise test determine apply call
run execute handle process validate normalize normalise escape quote encode decode print emit open close
start stop register reset initialize initialise construct wrap strip replace count sort filter map merge
copy clear match extract look resolve compare translate render fetch send receive compile evaluate collect
iterate produce tell take turn try ensure mark list show display configure install remember send wait
transform flatten expand compress decompress guess pick choose select skip consume strip serialize
""".split())


def _third_person(verb: str) -> str:
    if verb.endswith("s") and not verb.endswith("ss"):
        return verb
    if re.search(r"(ss|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def first_sentence(doc: str) -> str:
    """The docstring's first sentence, one line, no trailing period ('' when unusable)."""
    para = doc.strip().split("\n\n")[0]
    text = " ".join(para.split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = (m.group(1) if m else text).rstrip(".!?:; ")
    if not 3 <= len(sentence.split()) <= 28 or not sentence.isascii() or "`" in sentence \
            or re.search(r"[<>{}|]|\.\.\.|>>>|:$", sentence):
        return ""
    return sentence


def describe(doc: str) -> str:
    """'it returns the sum of x' from 'Return the sum of x.' (or '' when the docstring does not start
    with a verb we can conjugate)."""
    s = first_sentence(doc)
    if not s:
        return ""
    first, _, rest = s.partition(" ")
    low = first.lower()
    base = low[:-2] if low.endswith(("shes", "ches", "sses", "xes")) else low[:-1] if low.endswith("s") else low
    if low not in DOC_VERBS and base not in DOC_VERBS:
        return ""
    return f"it {_third_person(low if low in DOC_VERBS else base)} {soften_case(rest)}".strip()


def soften_case(text: str) -> str:
    """Lowercase ordinary capitalised words (sentence starts in quoted docs); names and acronyms stay."""
    from training.critic import COMMON_WORDS
    out = []
    for w in text.split(" "):
        core = w.strip("\"'().,;:!?")
        if core and core[0].isupper() and (core.lower() in COMMON_WORDS or core == "I") \
                and not core.isupper() or core == "I":
            w = w.replace(core, core.lower(), 1)
        out.append(w)
    return " ".join(out)


# --- faults: each breaks one rule ------------------------------------------------------------------
SYCOPHANTIC_OPENERS = ["great question! ", "what a great idea! ", "absolutely! ", "oh, i'd be happy to help! ",
                       "you're absolutely right to ask. ", "excellent question. ", "certainly! "]
FILLERS = [" i hope this helps! let me know if you have any other questions.",
           " feel free to ask if anything else comes up, i'm always here for you.",
           " in summary, that's the whole story. happy coding!",
           " it's worth noting that code like this is an important part of any project, and understanding"
           " it well is a great way to get better at programming over time, which is always a good thing."]
RUDE = ["obviously, ", "as i already said, ", "well, obviously "]
OVERCLAIMS = [" trust me, this is 100% right.", " it's guaranteed to work.", " trust me on this one."]
PSEUDO_CALLS = ["{name}({arg}={value!r})", "{name}(\"{value}\")"]

# fault -> the SOUL.md rule it breaks (the critic must report exactly that rule for the fault's draft)
FAULTS = {
    "shout": "no_shouting",
    "capitals": "lowercase",
    "sycophant": "no_sycophancy",
    "ramble": "concise",
    "rude": "friendly",
    "silent": "explains_tool_use",
    "pseudo_call": "well_formed_calls",
    "malformed": "well_formed_calls",
    "extra_work": "no_extra_work",
    "pushy": "graceful_rejection",
    "overclaim": "admits_uncertainty",
    "deny_failure": "admits_uncertainty",
    "hallucinate": "grounded",
}
PROSE_FAULTS = ("shout", "capitals", "sycophant", "ramble", "rude", "silent", "pseudo_call", "overclaim")


def _texts(parts: list[dict]) -> list[int]:
    return [i for i, p in enumerate(parts) if p["type"] == "text"]


def _map_prose(text: str, fn) -> str:
    """Apply fn to the prose between code spans only (so a fault never breaks code)."""
    pieces = re.split(r"(```.*?```|`[^`\n]*`)", text, flags=re.DOTALL)
    return "".join(p if p.startswith("`") else fn(p) for p in pieces)


def _shout(text: str, rng: random.Random) -> str:
    def up(p: str) -> str:
        ws = [w for w in re.findall(r"\b[a-z]{4,}\b", p)]
        for w in rng.sample(ws, min(2, len(ws))):
            p = re.sub(rf"\b{w}\b", w.upper(), p, count=1)
        return p
    return _map_prose(text, up).rstrip().rstrip(".!") + "!!"


def _capitalise(text: str) -> str:
    def cap(p: str) -> str:
        p = re.sub(r"\bi\b", "I", p)
        p = re.sub(r"\bi'(m|ll|ve|d)\b", lambda m: "I'" + m.group(1), p)
        return re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), p)
    return _map_prose(text, cap)


def apply_prose_fault(fault: str, parts: list[dict], rng: random.Random) -> list[dict] | None:
    """A copy of an assistant turn's parts with the fault applied, or None when it does not apply
    (e.g. `silent` on a turn without tool calls)."""
    parts = [dict(p) for p in parts]
    texts = _texts(parts)
    if not texts:
        return None
    first, last = texts[0], texts[-1]
    if fault == "shout":
        parts[last]["text"] = _shout(parts[last]["text"], rng)
    elif fault == "capitals":
        for i in texts:
            parts[i]["text"] = _capitalise(parts[i]["text"])
    elif fault == "sycophant":
        parts[first]["text"] = rng.choice(SYCOPHANTIC_OPENERS) + parts[first]["text"]
    elif fault == "ramble":
        parts[last]["text"] = parts[last]["text"].rstrip() + rng.choice(FILLERS)
    elif fault == "rude":
        parts[last]["text"] = rng.choice(RUDE) + parts[last]["text"]
    elif fault == "overclaim":
        parts[last]["text"] = parts[last]["text"].rstrip() + rng.choice(OVERCLAIMS)
    elif fault == "silent":
        notes = [i for i in texts if i + 1 < len(parts) and parts[i + 1]["type"] == "tool_call"]
        if not notes:
            return None
        parts = [p for i, p in enumerate(parts) if i not in notes]
    elif fault == "pseudo_call":
        calls = [i for i, p in enumerate(parts) if p["type"] == "tool_call" and i > 0
                 and parts[i - 1]["type"] == "text"]
        if not calls:
            return None
        call = parts[calls[0]]
        arg, value = next(iter(call["args"].items()))
        shown = rng.choice(PSEUDO_CALLS).format(name=call["name"], arg=arg, value=value.split("\n")[0][:40])
        note = parts[calls[0] - 1]["text"].rstrip("\n")
        parts[calls[0] - 1]["text"] = f"{note}: {shown}\n"
    else:
        raise ValueError(f"{fault!r} is not a prose fault; prose faults are {', '.join(PROSE_FAULTS)}")
    return parts
