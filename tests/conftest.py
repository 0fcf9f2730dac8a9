"""Shared fixtures: a tiny real tokenizer trained in the test session (no files from outside), and a temporary
$NANOCODE_HOME and $HOME for every test, so that no test reads or writes the user's ~/.cache/nanocode."""
import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest
from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

from nanocode.tokenizer import SPECIAL_TOKENS, Tokenizer

SAMPLE_TEXT = [
    "def parse_args(argv):\n    return argv[1:]\n",
    "import os\nimport sys\n\nclass Foo:\n    def __init__(self, x):\n        self.x = x\n",
    "where is parse_args defined? let me grep for it. it's in cli.py, line 12 :)\n",
    "for i in range(10):\n    print(i * 2)\n",
    "Ünïcödé text, 日本語, emoji 🎉 and tabs\tand CRLF\r\n",
] * 20


def train_tiny_tokenizer(vocab_size: int = 512) -> Tokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(SAMPLE_TEXT, trainer=trainer)
    return Tokenizer(hf)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    return train_tiny_tokenizer()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test runs with $HOME and $NANOCODE_HOME in a fresh temporary directory: models a test publishes,
    sessions, histories and caches land there (a test once published a depth-1 model into the real
    ~/.cache/nanocode/models, and `nanocode chat` then loaded it). $HOME too, for anything that falls back
    to ~ (nanocode_home() does when $NANOCODE_HOME is unset or empty). A $NANOCODE_HOME that a wider-scoped
    fixture already pointed into pytest's temporary directory (test_pretrain shares one compilation cache
    across a module) is kept."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    current = os.environ.get("NANOCODE_HOME")
    base = tmp_path_factory.getbasetemp().resolve()
    if not (current and Path(current).resolve().is_relative_to(base)):
        monkeypatch.setenv("NANOCODE_HOME", str(home / ".cache" / "nanocode"))
    return home
