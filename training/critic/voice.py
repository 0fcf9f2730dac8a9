"""SOUL.md's rules about how the prose reads: lowercase, no shouting, no sycophancy, concise, friendly.
Each check returns a list of human-readable problems (empty = the turn keeps the rule)."""
import re

from nanocode.template import TextPart, ToolCallPart
from training.critic.turn import (ACRONYMS, COMMON_WORDS, PROPER_NOUNS, Turn, _identifiers, _looks_like_code,
                                  _sentences, strip_code, words)


def check_lowercase(t: Turn) -> list[str]:
    allowed = _identifiers(t.evidence())
    bad = []
    for w in words(strip_code(t.prose)):
        base = re.sub(r"['’]s$", "", w)
        if not any(c.isupper() for c in base) or _looks_like_code(base):
            continue
        letters = re.sub(r"[^A-Za-z]", "", base)
        if letters.isupper() and len(letters) > 1:
            continue  # all caps is `no_shouting`'s business
        if base in ("I", "I'm", "I'll", "I've", "I'd", "I’m", "I’ll", "I’ve", "I’d"):
            bad.append(w)
        elif base in PROPER_NOUNS:
            continue
        elif base.lower() in COMMON_WORDS or base not in allowed:
            bad.append(w)
    return [f"capitalised words outside code: {', '.join(sorted(set(bad)))}; write them in lowercase"] if bad else []


def check_no_shouting(t: Turn) -> list[str]:
    allowed = _identifiers(t.evidence())
    prose = strip_code(t.prose)
    shouted = []
    for w in words(prose):
        letters = re.sub(r"[^A-Za-z]", "", w)
        if len(letters) > 1 and letters.isupper() and not _looks_like_code(w) \
                and w not in ACRONYMS and w not in allowed:
            shouted.append(w)
    problems = []
    if shouted:
        problems.append(f"words in all caps: {', '.join(sorted(set(shouted)))}")
    if re.search(r"[!?]*![!?]*!", prose):
        problems.append("a run of exclamation marks; one is plenty")
    return problems


SYCOPHANCY = [
    r"\b(great|excellent|fantastic|amazing|wonderful|brilliant|awesome|good|interesting|fascinating|"
    r"smart|clever|insightful|perfect|lovely) (question|idea|point|catch|request|thinking|suggestion|"
    r"observation|call)\b",
    r"\b(what|such) an? (great|good|smart|clever|brilliant|excellent|fantastic|wonderful|insightful)\b",
    r"\byou'?re (absolutely|totally|completely|so|entirely|100%) right\b",
    r"\byou are (absolutely|totally|completely|so|entirely) right\b",
    r"\bi'?d be (happy|glad|delighted|thrilled) to\b",
    r"\bi would be (happy|glad|delighted|thrilled) to\b",
    r"\b(happy|glad|delighted|thrilled) to help\b",
    r"\byou'?re (a genius|so smart|brilliant|amazing)\b",
    r"\bthank you (so much )?for (asking|your (great|excellent|wonderful) question)\b",
    r"^\W*(absolutely|certainly|of course|definitely|gladly)\s*[!,.]",
]


def check_no_sycophancy(t: Turn) -> list[str]:
    prose = strip_code(t.prose).lower()
    hits = [m.group(0).strip() for pat in SYCOPHANCY for m in [re.search(pat, prose, re.MULTILINE)] if m]
    return [f"sycophantic phrase: {h!r}" for h in hits]


MAX_TURN_WORDS = 120  # an explanation fits in a short paragraph; longer answers read as rambling
MAX_CALL_NOTE_WORDS = 30  # "say briefly why": one sentence before a tool call
FILLER = [
    r"\bi hope (this|that) helps\b", r"\blet me know if you (have|need) any\b", r"\bfeel free to\b",
    r"\bin conclusion\b", r"\bin summary\b", r"\bto summari[sz]e\b", r"\bit'?s worth noting\b",
    r"\bit is (important|worth) (to note|noting)\b", r"\bas an ai\b", r"\bhappy coding\b",
    r"\bplease don'?t hesitate\b", r"\bas (you|we) can see\b", r"\bwithout further ado\b",
]


def check_concise(t: Turn) -> list[str]:
    problems = []
    n = len(words(strip_code(t.prose, inline=False)))
    if n > MAX_TURN_WORDS:
        problems.append(f"{n} words of prose in one turn; keep it under {MAX_TURN_WORDS}")
    for i, p in enumerate(t.parts):
        if isinstance(p, ToolCallPart) and i > 0 and isinstance(t.parts[i - 1], TextPart):
            k = len(words(strip_code(t.parts[i - 1].text, inline=False)))
            if k > MAX_CALL_NOTE_WORDS:
                problems.append(f"{k} words before the {p.name} call; one short sentence is enough")
    low = strip_code(t.prose).lower()
    problems += [f"filler phrase: {m.group(0)!r}" for pat in FILLER for m in [re.search(pat, low)] if m]
    seen = set()
    for s in _sentences(strip_code(t.prose).lower()):
        key = " ".join(words(s))
        if len(key.split()) >= 4 and key in seen:
            problems.append(f"says the same sentence twice: {s!r}")
        seen.add(key)
    return problems


RUDE = [
    r"\bobviously\b", r"\bas i (already |just )?(said|told you|mentioned)\b", r"\bread the (docs|manual)\b",
    r"\brtfm\b", r"\bstupid\b", r"\bdumb\b", r"\bidiot", r"\byou should (already )?know\b",
    r"\bnot my problem\b", r"\bfigure it out yourself\b", r"\bclearly you\b",
    r"\beven a beginner\b", r"\bugh\b",
]


def check_friendly(t: Turn) -> list[str]:
    low = strip_code(t.prose).lower()
    problems = [f"dismissive phrase: {m.group(0)!r}" for pat in RUDE for m in [re.search(pat, low)] if m]
    if t.finished and not words(t.final_text()):
        problems.append("the turn ends without a word to the user; finish with a short answer")
    return problems
