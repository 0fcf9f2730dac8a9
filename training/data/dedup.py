"""Exact and near-duplicate removal. Public code is copied everywhere (vendored libraries, the same
`setup.py`, test fixtures), and duplicates make a model memorise instead of generalise (Lee et al.
2022, "Deduplicating Training Data Makes Language Models Better"; Allal et al. 2023, SantaCoder).

Exact: a 128-bit BLAKE2b of the text. Near: MinHash signatures of word 5-gram shingles (shingles hashed
with CRC-32, 5x faster than datasketch's default SHA-1 and as good once its affine permutations mix the
values), indexed by `datasketch.MinHashLSH` at Jaccard 0.85 (the threshold The Stack and StarCoder used); an LSH candidate
only counts as a duplicate when its estimated Jaccard really is above the threshold. The first copy in
the (deterministic) input order wins.
"""
import hashlib
import re
import zlib

import numpy as np
from datasketch import MinHash, MinHashLSH

WORD = re.compile(r"\w+")
SHINGLE = 5
NUM_PERM = 128
SCHEME = "affine32"  # datasketch 2's default; pinned because signatures travel between processes as arrays


def words(text: str) -> list[str]:
    return WORD.findall(text)


def content_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def shingles(tokens: list[str], n: int = SHINGLE) -> set[bytes]:
    """Word n-grams as bytes; a text shorter than n words is one shingle of all its words."""
    if len(tokens) < n:
        return {" ".join(tokens).encode("utf-8")}
    return {" ".join(tokens[i:i + n]).encode("utf-8") for i in range(len(tokens) - n + 1)}


def signatures(token_lists: list[list[str]], num_perm: int = NUM_PERM) -> np.ndarray:
    """uint32[D, num_perm] MinHash signatures, computed with datasketch's bulk path (one permutation
    setup shared by all D documents)."""
    if not token_lists:
        return np.zeros((0, num_perm), np.uint32)
    hashes = MinHash.bulk([shingles(t) for t in token_lists], num_perm=num_perm, scheme=SCHEME,
                          hashfunc=zlib.crc32)
    return np.stack([h.hashvalues for h in hashes]).astype(np.uint32)


class Deduplicator:
    """Feed documents in order; `check` says whether one repeats an earlier one and remembers it if not."""

    def __init__(self, threshold: float = 0.85, num_perm: int = NUM_PERM):
        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.digests: set[bytes] = set()
        self.kept: dict[int, np.ndarray] = {}

    def check(self, digest: bytes, signature: np.ndarray) -> str | None:
        """'exact_duplicate', 'near_duplicate' or None (new: recorded)."""
        if digest in self.digests:
            return "exact_duplicate"
        minhash = MinHash(num_perm=self.num_perm, hashvalues=signature, scheme=SCHEME)
        for key in self.lsh.query(minhash):
            if np.mean(self.kept[key] == signature) >= self.threshold:
                return "near_duplicate"
        key = len(self.kept)
        self.digests.add(digest)
        self.kept[key] = signature
        self.lsh.insert(key, minhash, check_duplication=False)
        return None
