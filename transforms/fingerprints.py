"""MinHash fingerprints of article bodies and the LSH band keys built from them.

A body becomes a set of word shingles (lower-cased word n-grams), the set a
MinHash signature (datasketch, fixed seed), and the signature `bands` keys of
`rows` values each. Two bodies that share any band key are candidate
near-duplicates; `similarity` then estimates how close they are.

Everything here is deterministic across processes, machines and runs: shingles
are hashed with CRC-32 (never Python's salted `hash()`; datasketch's
"affine32" scheme pre-mixes every input hash with the MurmurHash3 finalizer,
so a fast checksum is as good as SHA-1 here and 2x cheaper), the permutations
come from a fixed seed, and band keys are BLAKE2b digests. The
`scheme` string names every parameter a signature depends on, so stored
signatures made under other settings are recognised and rebuilt.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import numpy as np
from datasketch import MinHash

from transforms.records import Fingerprint

# Scripts written without spaces (Chinese, Japanese kana, Thai) have no words
# to split on: each of their characters is a token of its own.
_NO_SPACE = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_NO_SPACE_CHAR = re.compile(f"[{_NO_SPACE}]")
_WORD_OR_CHAR = re.compile(f"[{_NO_SPACE}]|[^\\W{_NO_SPACE}]+")
_WORD = re.compile(r"\w+")
_SEED = 1  # datasketch's permutation seed: changing it invalidates every stored signature
_MINHASH_SCHEME = "affine32"  # datasketch 2's default: uint32 values, bijective permutations


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> np.ndarray:
    """Drawing the permutations costs more than hashing a short article: draw once."""
    return cast(np.ndarray, MinHash(num_perm=num_perm, seed=_SEED, scheme=_MINHASH_SCHEME).permutations)


@dataclass(frozen=True, slots=True)
class StoryParams:
    """The story rule's parameters. Defaults and validation live in one place,
    `flows.settings.StorySettings`, which builds this."""

    shingle_size: int
    num_perm: int
    bands: int
    rows: int
    threshold: float  # estimated Jaccard at or above which two bodies are one story
    containment: float  # ... or the share of the shorter body found in the longer
    min_shingles: int  # bodies with fewer shingles only ever match exactly
    window_days: int  # an article joins only roots first seen this close to it; 0 = any (not in the scheme)

    @property
    def scheme(self) -> str:
        """Everything a stored signature and its band keys depend on."""
        return (f"minhash-{_MINHASH_SCHEME}-crc32-s{_SEED}:k{self.shingle_size}:p{self.num_perm}"
                f":b{self.bands}x{self.rows}")

    def candidate_probability(self, jaccard: float) -> float:
        """Chance that two bodies with this Jaccard share at least one band key."""
        return 1.0 - (1.0 - jaccard**self.rows) ** self.bands


def shingles(text: str, size: int) -> set[bytes]:
    """Word n-grams of the lower-cased text; a text shorter than one shingle is one shingle."""
    text = text.lower()
    words = (_WORD_OR_CHAR if _NO_SPACE_CHAR.search(text) else _WORD).findall(text)
    if not words:
        return set()
    if len(words) <= size:
        return {" ".join(words).encode()}
    return {" ".join(gram).encode() for gram in zip(*(words[i:] for i in range(size)))}


def band_keys(values: np.ndarray, params: StoryParams) -> tuple[int, ...]:
    keys = []
    for band in range(params.bands):
        chunk = values[band * params.rows:(band + 1) * params.rows]
        digest = hashlib.blake2b(band.to_bytes(2, "little") + chunk.tobytes(), digest_size=8).digest()
        keys.append(int.from_bytes(digest, "little", signed=True))
    return tuple(keys)


def fingerprint(text: str, params: StoryParams) -> Fingerprint:
    """Fingerprint of a normalized body. A body without words gets an empty
    one, stored like any other so that it is not fingerprinted again."""
    grams = shingles(text, params.shingle_size)
    if not grams:
        return Fingerprint(params.scheme, 0, b"", ())
    mh = MinHash(num_perm=params.num_perm, seed=_SEED, hashfunc=zlib.crc32,
                 permutations=_permutations(params.num_perm), scheme=_MINHASH_SCHEME)
    mh.update_batch(list(grams))
    values = mh.hashvalues.astype("<u4")
    return Fingerprint(params.scheme, len(grams), values.tobytes(), band_keys(values, params))


@dataclass(frozen=True, slots=True)
class Similarity:
    jaccard: float  # estimated |A∩B| / |A∪B|
    containment: float  # estimated |A∩B| / min(|A|, |B|): near 1 when one is a cut of the other

    def matches(self, params: StoryParams) -> bool:
        return self.jaccard >= params.threshold or self.containment >= params.containment


def similarity(a: Fingerprint, b: Fingerprint) -> Similarity:
    """Estimate Jaccard from the share of equal signature values, and the
    containment of the smaller set from Jaccard and the two set sizes."""
    if a.scheme != b.scheme:
        raise ValueError(f"fingerprints of different schemes: {a.scheme} vs {b.scheme}")
    jaccard = float(np.count_nonzero(a.values() == b.values())) / len(a.values())
    intersection = jaccard * (a.shingles + b.shingles) / (1.0 + jaccard)
    containment = min(1.0, intersection / min(a.shingles, b.shingles))
    return Similarity(jaccard, containment)
