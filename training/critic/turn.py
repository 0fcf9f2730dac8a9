"""What a SOUL.md check sees (`Turn`), what it reports (`Violation`), and the text helpers the checks share."""
import re
from dataclasses import dataclass, field

from nanocode.template import Part, TextPart, ToolCallPart, ToolResultPart, assistant_parts


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str


@dataclass
class Turn:
    parts: list[Part]
    request: str = ""
    history: list[dict] = field(default_factory=list)
    allowed_paths: frozenset[str] | None = None
    finished: bool = True  # a stored turn ended with <|assistant_end|>; a turn in progress may not have

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.parts if isinstance(p, TextPart)]

    @property
    def prose(self) -> str:
        return "\n".join(self.texts)

    @property
    def calls(self) -> list[ToolCallPart]:
        return [p for p in self.parts if isinstance(p, ToolCallPart)]

    def final_text(self) -> str:
        """Prose after the last tool call/result: the answer the user reads at the end."""
        out = []
        for p in reversed(self.parts):
            if not isinstance(p, TextPart):
                break
            out.append(p.text)
        return "".join(reversed(out))

    def evidence(self) -> str:
        """Everything the model was given or did this turn and before: where names and paths may come from."""
        chunks = [self.request]
        for m in self.history:
            if m["role"] == "user":
                chunks.append(str(m["content"]))
            else:
                chunks += [_part_evidence(p) for p in assistant_parts(m)]
        chunks += [_part_evidence(p) for p in self.parts]
        return "\n".join(chunks)


def _part_evidence(p: Part) -> str:
    if isinstance(p, ToolCallPart):
        return p.name + "\n" + "\n".join(p.args.values())
    if isinstance(p, ToolResultPart):
        return p.output
    return ""  # the model's own prose licenses nothing


# --- text helpers ---------------------------------------------------------------------------------

FENCED = re.compile(r"```.*?(```|\Z)", re.DOTALL)
INLINE = re.compile(r"`[^`\n]*`")


def strip_code(text: str, inline: bool = True) -> str:
    """Prose without fenced code blocks (and, by default, without `inline code`)."""
    text = FENCED.sub(" ", text)
    return INLINE.sub(" ", text) if inline else text


PUNCT = "\"'“”‘’.,;:!?()[]{}<>*~"


def words(text: str) -> list[str]:
    """Whitespace-separated words with surrounding punctuation removed (inner characters kept)."""
    out = []
    for w in text.split():
        w = w.strip(PUNCT)
        if w:
            out.append(w)
    return out


def _looks_like_code(w: str) -> bool:
    """A token that is code even outside backticks: a path, a call, a dotted or snake_case name."""
    return bool(re.search(r"[_./\\()=<>\[\]{}#@$%^&+|0-9]", w)) or w.startswith("-")  # -I, --verbose


def _inflect(*verbs: str) -> frozenset[str]:
    """A verb and its -s/-ed/-ing forms (good enough for the verbs we list: regular English verbs)."""
    forms = set()
    for v in verbs:
        stem = v[:-1] if v.endswith("e") else v
        forms |= {v, v + "s", v + "es", stem + "ed", stem + "ing", v + "d", v + "ed"}
    return frozenset(forms)


# Ordinary English words are never exempt from `lowercase`, even when a file's docstring contains them
# capitalised ("The", "Return"): otherwise reading any prose file would license sentence-case answers.
COMMON_WORDS = frozenset("""
a about above after again all already also although always am an and another any anything anyway are
around as at back be because been before being below both but by can cannot could did do does doing done
down during each either else even ever every everything first for found from further go going good got
had has have having he her here hers him his how however i if in into is it its itself just last later
let lets like look looks looked made make many maybe me might mine more most much must my need needs next
no nope nor not nothing now of off ok okay on once one only or other our ours out over own perhaps please
quick quite rather really right same see seems she should since so some something sorry still such sure
than thanks thank that the their theirs them then there these they thing things this those though through
thus to too try trying under until up upon us very want was we well were what when where whether which
while who whom whose why will with within without would yes yet you your yours yep yeah hey hi hello
oh oops hmm alright done found fixed added changed renamed updated created ran running reading searching
checking grepping here's there's that's it's let's i'm i'll i've i'd you're you've you'll don't didn't
doesn't can't couldn't won't wouldn't isn't aren't wasn't weren't shouldn't nice cool great awesome
perfect absolutely certainly definitely of course sure thing what's who's how's where's now onto
first second finally also note looks seems should basically actually honestly great good done
""".split())

PROPER_NOUNS = frozenset("""
Read Edit Grep Bash Python Python3 CPython PyPI JAX Flax Optax Orbax NumPy SciPy GitHub GitLab Git Linux
macOS Windows Unix Docker Jupyter Markdown HumanEval nanocode Claude Rust JavaScript TypeScript Java Go
Ruby Perl Django Flask FastAPI Pandas PyTorch TensorFlow Unicode Monday Tuesday Wednesday Thursday Friday
Saturday Sunday January February March April May June July August September October November December
""".split())

ACRONYMS = frozenset("""
API APIs CLI CPU CPUs GPU GPUs TPU TPUs JSON JSONL YAML TOML XML HTML CSS CSV TSV SQL HTTP HTTPS URL URLs
URI UTF UTF-8 ASCII BPE FIM SFT DPO EOF PR CI OS IO I/O RAM SSD PID UID UUID REPL IDE AST PEP PEPs TODO
FIXME NaN
""".split())


def _identifiers(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]
