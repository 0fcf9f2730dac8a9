"""Shared fixtures: a tiny real tokenizer trained in the test session (no files from outside)."""
import os

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
