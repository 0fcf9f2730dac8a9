"""SFT and DPO data: conversations -> token rows with loss masks, packed, batched deterministically.

SFT rows. Each conversation is rendered by nanocode/template.py (ids, and a mask that is 1 exactly on
what the assistant writes: prose, tool calls, <|assistant_end|>; DESIGN.md). Whole conversations are
packed into rows of T+1 tokens (first fit, largest first, within a window of the shuffled order) and the
rest of a row is padding with mask 0; a conversation never straddles two rows, so every example keeps its
beginning (the user's request) in view. A conversation longer than a row is left out and counted. The
target mask is the token mask shifted by one: the loss at position t is about token t+1. Packed rows
attend across conversation boundaries, exactly like pretraining's packed documents (every conversation
starts with <|bos|>).

`ConversationBatches(...).batch(step)` is a pure function of (seed, step, process index), like the
pretraining loader: a resumed run sees the same rows. With `replay`, a share of each batch's rows are
pretraining rows (code and fill-in-the-middle, every token trained) so SFT does not wear off the base
model's ability to write code.

DPO rows. A preference pair {"messages": prompt, "chosen": msg, "rejected": msg} becomes two padded rows
whose masks cover only the final assistant message (the response the pair is about); when the two first
differ at a tool call, both stop right after it (focus_pair).
"""
import hashlib
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nanocode.template import render_conversation
from nanocode.tokenizer import Tokenizer


def _seeded(*keys: int) -> np.random.Generator:
    digest = hashlib.blake2b(struct.pack(f"<{len(keys)}q", *keys), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


@dataclass(frozen=True)
class Example:
    ids: np.ndarray    # int32[n]
    mask: np.ndarray   # int8[n]: 1 where the model writes the token


def tokenize(conversations: list[dict], tok: Tokenizer, seq_len: int) -> tuple[list[Example], int]:
    """(examples that fit a row of seq_len+1 tokens, how many did not fit)."""
    out, too_long = [], 0
    for conv in conversations:
        ids, mask = render_conversation(conv["messages"], tok, conv.get("meta", {}).get("notes", ""))
        if len(ids) > seq_len + 1:
            too_long += 1
            continue
        out.append(Example(np.asarray(ids, np.int32), np.asarray(mask, np.int8)))
    return out, too_long


def pack(examples: list[Example], order: np.ndarray, seq_len: int, pad_id: int, window: int = 64):
    """Rows (tokens int32[R, T+1], target mask int8[R, T]) holding the examples in `order`, packed first-fit
    decreasing within windows of `window` examples (deterministic; padding per row is small)."""
    row_len = seq_len + 1
    rows: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -len(examples[i].ids))
        open_rows: list[tuple[int, list[int]]] = []  # (free space, example indices)
        for i in chunk:
            n = len(examples[i].ids)
            for k, (free, members) in enumerate(open_rows):
                if n <= free:
                    open_rows[k] = (free - n, members + [i])
                    break
            else:
                open_rows.append((row_len - n, [i]))
        rows += [members for _, members in open_rows]
    tokens = np.full((len(rows), row_len), pad_id, np.int32)
    mask = np.zeros((len(rows), row_len), np.int8)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            e = examples[i]
            tokens[r, at:at + len(e.ids)] = e.ids
            mask[r, at:at + len(e.mask)] = e.mask
            at += len(e.ids)
    return tokens, mask[:, 1:]


class ConversationBatches:
    """batch(step) -> {"tokens": int32[B, T+1], "mask": int8[B, T]}: this process's B rows of the global
    batch (process p of P takes rows [(step*P + p)*B, ... + B) of an endless stream of epochs, each epoch a
    fresh seeded shuffle of the conversations, packed). The first `replay_rows` rows of every batch come
    from `replay` (a pretraining Loader of that many rows) when given."""

    def __init__(self, examples: list[Example], seq_len: int, batch_size: int, pad_id: int, seed: int = 0,
                 process_index: int = 0, process_count: int = 1, replay=None, replay_rows: int = 0,
                 shuffle: bool = True):
        if not examples:
            raise ValueError("no conversations fit the model's context; generate data with `nanocode data "
                             "synth` or raise --seq-len")
        if not 0 <= replay_rows < batch_size:
            raise ValueError(f"replay rows ({replay_rows}) must leave room for conversations in a batch of "
                             f"{batch_size} rows; lower --replay")
        if replay_rows and replay is None:
            raise ValueError("replay rows requested without a pretraining token directory to draw them from")
        self.examples, self.seq_len, self.pad_id, self.seed, self.shuffle = examples, seq_len, pad_id, seed, shuffle
        self.batch_size, self.replay, self.replay_rows = batch_size, replay, replay_rows
        self.conv_rows = batch_size - replay_rows
        self.process_index, self.process_count = process_index, process_count
        self._epochs: list[tuple[np.ndarray, np.ndarray]] = []
        self._starts = [0]  # global row index where each packed epoch begins

    def epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        while len(self._epochs) <= e:
            k = len(self._epochs)
            order = _seeded(self.seed, k).permutation(len(self.examples)) if self.shuffle \
                else np.arange(len(self.examples))
            self._epochs.append(pack(self.examples, order, self.seq_len, self.pad_id))
            self._starts.append(self._starts[-1] + len(self._epochs[-1][0]))
        return self._epochs[e]

    @property
    def rows_per_epoch(self) -> int:
        return len(self.epoch(0)[0])

    def steps_per_epoch(self) -> float:
        return self.rows_per_epoch / (self.conv_rows * self.process_count)

    def _row(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        e = 0
        while True:
            self.epoch(e)
            if g < self._starts[e + 1]:
                tokens, mask = self._epochs[e]
                return tokens[g - self._starts[e]], mask[g - self._starts[e]]
            e += 1

    def batch(self, step: int) -> dict:
        first = (step * self.process_count + self.process_index) * self.conv_rows
        rows = [self._row(first + j) for j in range(self.conv_rows)]
        tokens = np.stack([r[0] for r in rows])
        mask = np.stack([r[1] for r in rows])
        if self.replay_rows:
            extra = self.replay.batch(step)
            tokens = np.concatenate([extra, tokens])
            mask = np.concatenate([np.ones((len(extra), self.seq_len), np.int8), mask])
        return {"tokens": tokens, "mask": mask}


def all_rows(examples: list[Example], seq_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Every example once, packed in order (for validation loss)."""
    return pack(examples, np.arange(len(examples)), seq_len, pad_id)


# --- DPO ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairRows:
    chosen: np.ndarray          # int32[N, T+1]
    chosen_mask: np.ndarray     # int8[N, T]: 1 on the targets that are the chosen response
    rejected: np.ndarray
    rejected_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.chosen)

    def take(self, idx) -> "PairRows":
        return PairRows(self.chosen[idx], self.chosen_mask[idx], self.rejected[idx], self.rejected_mask[idx])


def _response_row(prompt_ids: list[int], messages: list[dict], tok: Tokenizer, row_len: int, pad_id: int,
                  notes: str = ""):
    ids, mask = render_conversation(messages, tok, notes)
    if ids[:len(prompt_ids)] != prompt_ids:
        raise ValueError("rendering is not prefix-stable for this pair; please report it")
    mask = [0] * len(prompt_ids) + mask[len(prompt_ids):]
    content = messages[-1]["content"]
    if isinstance(content, list) and content and content[-1].get("type") == "tool_call":
        # A response that stops at a call (a session's rejected call, or the step that replaced it) was
        # never ended by the model: no <|assistant_end|> after it.
        ids, mask = ids[:-1], mask[:-1]
    if len(ids) > row_len:
        return None
    row = np.full(row_len, pad_id, np.int32)
    m = np.zeros(row_len, np.int8)
    row[:len(ids)], m[:len(mask)] = ids, mask
    return row, m[1:]


def focus_pair(chosen: dict, rejected: dict) -> tuple[dict, dict]:
    """The two responses cut right after their first difference when that difference is a tool call (a
    malformed call against the well-formed one: the synth `malformed` pairs, 37 of the cpu speedrun's 465).
    Uncut, the rejected side goes on with the error, a retry note and the very call the chosen side makes,
    so DPO is also told that well-formed call is worse. A difference in prose is left whole: it is the
    preference. (On its own this did not keep DPO's tool calls; with dpo.py's chosen-NLL term it helps:
    agent-task call rate 0.42 -> 0.92 at lr_frac 0.02.)"""
    c, r = chosen.get("content"), rejected.get("content")
    if not isinstance(c, list) or not isinstance(r, list):
        return chosen, rejected
    i = next((i for i, (a, b) in enumerate(zip(c, r)) if a != b), None)
    if i is None or c[i].get("type") != "tool_call" or r[i].get("type") != "tool_call":
        return chosen, rejected
    return {**chosen, "content": c[:i + 1]}, {**rejected, "content": r[:i + 1]}


def pair_rows(pairs: list[dict], tok: Tokenizer, seq_len: int) -> tuple[PairRows, int]:
    """(rows of the pairs that fit, how many did not). Each pair is focused first (focus_pair)."""
    row_len, pad = seq_len + 1, tok.special("bos")
    cols = ([], [], [], [])
    too_long = 0
    for p in pairs:
        for key in ("messages", "chosen", "rejected"):
            if key not in p:
                raise ValueError(f"a preference pair lacks {key!r}; pairs are {{'messages': [...], 'chosen': "
                                 "{...}, 'rejected': {...}}} (DESIGN.md)")
        notes = p.get("meta", {}).get("notes", "")  # project memory in the prompt (synth: a share of them)
        prompt_ids, _ = render_conversation(p["messages"], tok, notes)
        chosen, rejected = focus_pair(p["chosen"], p["rejected"])
        c = _response_row(prompt_ids, p["messages"] + [chosen], tok, row_len, pad, notes)
        r = _response_row(prompt_ids, p["messages"] + [rejected], tok, row_len, pad, notes)
        if c is None or r is None:
            too_long += 1
            continue
        for col, v in zip(cols, (c[0], c[1], r[0], r[1])):
            col.append(v)
    if not cols[0]:
        return PairRows(*(np.zeros((0, n), t) for n, t in ((row_len, np.int32), (seq_len, np.int8)) * 2)), too_long
    return PairRows(*(np.stack(c) for c in cols)), too_long


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return _seeded(seed, epoch, 1).permutation(n)


def pair_batch_indices(n: int, batch_size: int, step: int, seed: int, process_index: int = 0,
                       process_count: int = 1) -> np.ndarray:
    """Indices of this process's pairs at `step`: an endless stream of seeded epoch shuffles."""
    first = (step * process_count + process_index) * batch_size
    return np.asarray([_permutation(n, seed, g // n)[g % n] for g in range(first, first + batch_size)])
