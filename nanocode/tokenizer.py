"""The tokenizer: a byte-level BPE `tokenizer.json` (HF `tokenizers`) plus the special tokens of DESIGN.md.

Text is always encoded with special-token matching OFF: a file that contains the literal string
`<|tool_call_start|>` becomes ordinary bytes, never a tool call (injection safety). Special ids are
only ever produced by the template, through `special(name)`.
"""
from functools import cached_property
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

SPECIAL_TOKENS = (
    "<|bos|>",
    "<|user_start|>", "<|user_end|>",
    "<|assistant_start|>", "<|assistant_end|>",
    "<|tool_call_start|>", "<|tool_call_end|>",
    "<|tool_arg|>", "<|tool_val|>",
    "<|tool_result_start|>", "<|tool_result_end|>",
    "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_end|>",
)


def _byte_decoder() -> dict[str, int]:
    """The inverse of the GPT-2 byte-to-unicode table that ByteLevel BPE uses: one char per byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class TokenizerError(ValueError):
    pass


class Tokenizer:
    def __init__(self, hf: HFTokenizer, source: str = "<memory>"):
        missing = [t for t in SPECIAL_TOKENS if hf.token_to_id(t) is None]
        if missing:
            raise TokenizerError(f"{source} lacks the special tokens {missing}; retrain it with "
                                 "`nanocode train tokenizer`")
        hf.encode_special_tokens = True  # match added tokens as plain text: no text yields a special id
        self.hf = hf
        self._special = {t: hf.token_to_id(t) for t in SPECIAL_TOKENS}
        self.special_ids = frozenset(self._special.values())

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise TokenizerError(f"tokenizer file not found: {path}")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise TokenizerError(f"{path} is not a valid tokenizer.json ({e}); retrain it with "
                                 "`nanocode train tokenizer` or copy it again") from e
        return cls(hf, str(path))

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def special(self, name: str) -> int:
        """Id of a special token, by its full text (`<|bos|>`) or bare name (`bos`)."""
        key = name if name.startswith("<|") else f"<|{name}|>"
        try:
            return self._special[key]
        except KeyError:
            raise TokenizerError(f"unknown special token {name!r}; known: {', '.join(SPECIAL_TOKENS)}") from None

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encodes many texts in parallel (Rust threads)."""
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    @cached_property
    def token_bytes(self) -> list[bytes]:
        """The exact bytes each id stands for; a special token stands for its own text."""
        dec = _byte_decoder()
        out = []
        for i in range(self.vocab_size):
            tok = self.hf.id_to_token(i)
            if tok is None:
                out.append(b"")
            elif i in self.special_ids or any(c not in dec for c in tok):
                out.append(tok.encode("utf-8"))
            else:
                out.append(bytes(dec[c] for c in tok))
        return out

    @cached_property
    def token_byte_lengths(self) -> np.ndarray:
        """int32[V]: UTF-8 bytes per token, 0 for special tokens (they stand for no text). For bits-per-byte."""
        lengths = np.array([len(b) for b in self.token_bytes], dtype=np.int32)
        lengths[list(self.special_ids)] = 0
        return lengths

    def decode_bytes(self, ids) -> bytes:
        table = self.token_bytes
        return b"".join(table[i] for i in ids)

    def decode(self, ids) -> str:
        """Text for ids; special tokens appear as their literal text, broken UTF-8 as U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
