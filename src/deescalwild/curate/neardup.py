"""Near-duplicate scenarios across a corpus: MinHash over word shingles, LSH for candidates.

Re-uploads of one video are transcribed twice by a noisy recogniser, so copies are near, not
exact: two transcripts of the same audio share ~75% of their word 5-grams on the published
corpus, and a "Part 1" clip is mostly *contained* in the full video while their Jaccard is
only ~0.3. So a pair is judged on both: the MinHash estimate of Jaccard similarity, and the
containment of the smaller scenario in the larger, derived from that estimate and the exact
shingle counts (C = J·(|A|+|B|) / ((1+J)·|A|)). datasketch does the hashing and the banding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCHEME = "affine32"  # datasketch 2's default hashing scheme, named so signatures stay stable


@dataclass(frozen=True, slots=True)
class Pair:
    """Two scenarios (indices, a < b) and how much of their text they share."""

    a: int
    b: int
    jaccard: float  # MinHash estimate
    containment: float  # of the smaller shingle set in the larger (estimate)


def shingles(ws: Sequence[str], n: int) -> set[bytes]:
    """Word n-grams of a scenario, encoded for hashing (one gram when it is shorter than n)."""
    if not ws:
        return set()
    if len(ws) <= n:
        return {" ".join(ws).encode()}
    return {" ".join(ws[i:i + n]).encode() for i in range(len(ws) - n + 1)}


def signatures(shingle_sets: Sequence[set[bytes]], num_perm: int) -> np.ndarray:
    """MinHash signatures, one row per scenario (deterministic: datasketch's seeded SHA-1)."""
    from datasketch import MinHash

    if not shingle_sets:
        return np.zeros((0, num_perm), dtype=np.uint64)
    hashes = MinHash.bulk([s or {b""} for s in shingle_sets], num_perm=num_perm, scheme=SCHEME)
    return np.vstack([h.hashvalues for h in hashes]).astype(np.uint64)


def _containment(j: float, small: int, large: int) -> float:
    if small == 0:
        return 0.0
    return min(1.0, j * (small + large) / ((1 + j) * small))


def candidate_pairs(sigs: np.ndarray, sizes: Sequence[int], threshold: float) -> list[Pair]:
    """Pairs whose estimated Jaccard reaches `threshold`, found by LSH banding (no all-pairs
    scan), with their Jaccard and containment estimates. Sorted, so output is reproducible."""
    from datasketch import MinHashLSH
    from datasketch.lean_minhash import LeanMinHash

    n, num_perm = sigs.shape
    if n < 2:
        return []
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    lean = [LeanMinHash(seed=1, hashvalues=sigs[i], scheme=SCHEME) for i in range(n)]
    for i, m in enumerate(lean):
        if sizes[i]:
            lsh.insert(i, m)
    found: set[tuple[int, int]] = set()
    for i, m in enumerate(lean):
        if sizes[i]:
            found.update((min(i, j), max(i, j)) for j in lsh.query(m) if j != i)
    pairs = []
    for a, b in sorted(found):
        j = float(np.mean(sigs[a] == sigs[b]))
        small, large = sorted((sizes[a], sizes[b]))
        c = _containment(j, small, large)
        if j >= threshold or c >= threshold:
            pairs.append(Pair(a, b, round(j, 4), round(c, 4)))
    return pairs


def max_cross_similarity(sigs: np.ndarray, groups: Sequence[str]) -> tuple[float, int, int]:
    """The highest estimated Jaccard between two scenarios of different groups (splits), over
    all pairs, not only LSH candidates: the number a split report shows to prove nothing leaks.
    Returns (score, i, j); memory is bounded by comparing a block of rows at a time."""
    n = len(groups)
    _, labels = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    chunk = max(1, 40_000_000 // max(1, n * sigs.shape[1]))
    best = (0.0, -1, -1)
    for start in range(0, n, chunk):
        block = sigs[start:start + chunk]
        sim = (block[:, None, :] == sigs[None, :, :]).mean(axis=2)
        cross = labels[start:start + chunk, None] != labels[None, :]
        sim = np.where(cross, sim, -1.0)
        k = int(np.argmax(sim))
        i, j = divmod(k, n)
        if sim[i, j] > best[0]:
            best = (float(sim[i, j]), start + i, j)
    return best


class UnionFind:
    """Connected components of 'similar enough' pairs; the root is the smallest index."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self) -> dict[int, list[int]]:
        comps: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            comps.setdefault(self.find(i), []).append(i)
        return comps
