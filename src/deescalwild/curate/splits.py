"""`deescalwild split`: train/dev/test assignments that do not leak.

`paper` keeps the published train/test assignment (and can carve a dev split out of train).
`clean` assigns whole groups: scenarios whose texts overlap (MinHash near-duplicates and
looser "related" pairs, e.g. a clip contained in a longer upload) and videos of the same
source (the same title once "Part 2" is dropped; for TikTok, the title in the file name) are
one group, so no cluster spans two splits. Groups are shuffled with the seed and stratified by
platform; the same seed gives byte-identical output. The report proves the result: the highest
Jaccard similarity between any two scenarios in different splits, over all pairs.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deescalwild.core import Scenario, gc_paused, read_corpus, write_corpus
from deescalwild.curate.detectors import words
from deescalwild.curate.neardup import (
    UnionFind,
    candidate_pairs,
    max_cross_similarity,
    shingles,
    signatures,
)
from deescalwild.curate.policy import Policy, is_excluded, load_policy
from deescalwild.errors import DeescalwildError, InputError

SPLIT_REPORT_SCHEMA = "deescalwild.split-report/1"
STRATEGIES = ("clean", "paper")
SPLITS = ("train", "dev", "test")

# TikTok file names carry the video's title or, often, only its hashtags; hashtags say nothing
# about the source.
_HASHTAG_WORDS = frozenset("""police cops cop copsoftiktok copsoftikt bodycam policebody fyp fypシ
cam dashcam interrogation jcsi p1 p2 p3 part pt c""".split())
_PART = re.compile(r"\b(?:part|pt|p)\.?\s*\d+\b|\(\s*\d+\s*/\s*\d+\s*\)|\b\d+\s*of\s*\d+\b")


def source_key(sc: Scenario) -> str | None:
    """Which original video or story a scenario comes from, as far as its title tells:
    the title's first segment (before " | ") without part numbers. None when unknown."""
    title = sc.meta.get("title")
    if not title and sc.platform == "tiktok":
        m = re.match(r"tiktok_\d{4}_(.*)_[0-9a-f]{8}$", sc.id)
        title = m.group(1).replace("_", " ") if m else None
    if not title:
        return None
    head = _PART.sub(" ", str(title).split("|")[0].lower())
    ws = [w for w in words(head) if w not in _HASHTAG_WORDS]
    if len(ws) < 2:
        return None
    return f"{sc.platform}:{' '.join(ws)}"


def _groups(scenarios: Sequence[Scenario], pairs, policy: Policy) -> list[int]:
    """Group root per scenario: related texts and same-source videos share a group."""
    th = policy.thresholds
    uf = UnionFind(len(scenarios))
    for p in pairs:
        if p.jaccard >= th.related_jaccard or p.containment >= th.related_containment:
            uf.union(p.a, p.b)
    first: dict[str, int] = {}
    for i, sc in enumerate(scenarios):
        key = source_key(sc)
        if key is not None:
            uf.union(first.setdefault(key, i), i)
    return [uf.find(i) for i in range(len(scenarios))]


def _assign(members: dict[int, list[int]], scenarios: Sequence[Scenario], seed: int,
            fractions: dict[str, float], pool: Sequence[int] | None = None) -> dict[int, str]:
    """Greedy, seeded, per-platform assignment of whole groups to test, then dev, then train.
    Targets count kept (not excluded) scenarios; groups of excluded scenarios only go to train."""
    by_platform: dict[str, list[int]] = defaultdict(list)
    size = {g: sum(not is_excluded(scenarios[i]) for i in m) for g, m in members.items()}
    for g, m in members.items():
        if pool is not None and g not in pool:
            continue
        plats = Counter(scenarios[i].platform or "unknown" for i in m)
        by_platform[min(plats, key=lambda p: (-plats[p], p))].append(g)
    out: dict[int, str] = {}
    for plat in sorted(by_platform):
        groups = sorted(by_platform[plat], key=lambda g: min(scenarios[i].id for i in members[g]))
        random.Random(f"{seed}:{plat}").shuffle(groups)
        total = sum(size[g] for g in groups)
        target = {s: round(f * total) for s, f in fractions.items()}
        have = Counter()
        for g in groups:
            dest = "train"
            if size[g]:
                for s in ("test", "dev"):
                    if s in target and have[s] + size[g] <= target[s]:
                        dest = s
                        break
            have[dest] += size[g]
            out[g] = dest
    return out


def split_scenarios(scenarios: Sequence[Scenario], *, strategy: str = "clean", seed: int = 0,
                    test_fraction: float = 0.1, dev_fraction: float = 0.1,
                    policy: Policy | None = None) -> dict[str, Any]:
    """Set `split` and `meta["split"]` on every scenario; return the split report."""
    if strategy not in STRATEGIES:
        raise DeescalwildError(f"unknown split strategy {strategy!r}; expected clean or paper")
    for name, f in (("test", test_fraction), ("dev", dev_fraction)):
        if not 0 <= f < 1:
            raise DeescalwildError(f"--{name}-fraction must be in [0, 1), got {f}")
    if test_fraction + dev_fraction >= 1:
        raise DeescalwildError("test and dev fractions leave nothing for train")
    policy = policy or load_policy()
    th = policy.thresholds
    sets = [shingles([w for t in sc.turns for w in words(t.text)], th.shingle_words)
            for sc in scenarios]
    sizes = [len(s) for s in sets]
    sigs = signatures(sets, th.num_perm)
    del sets
    pairs = candidate_pairs(sigs, sizes, min(th.related_jaccard, th.related_containment))
    roots = _groups(scenarios, pairs, policy)
    members: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(roots):
        members[r].append(i)

    if strategy == "clean":
        dest = _assign(members, scenarios, seed, {"test": test_fraction, "dev": dev_fraction})
        for i, sc in enumerate(scenarios):
            sc.split = dest[roots[i]]
    else:
        for sc in scenarios:
            if sc.split not in ("train", "test", "dev"):
                sc.split = "train"
        if dev_fraction:
            # dev from groups wholly in the published train split; test stays as published
            pure = {g for g, m in members.items() if all(scenarios[i].split == "train"
                                                          for i in m)}
            kept_train = sum(not is_excluded(sc) for sc in scenarios if sc.split == "train")
            kept_all = sum(not is_excluded(sc) for sc in scenarios)
            frac = min(0.99, dev_fraction * kept_all / max(1, kept_train))
            dest = _assign(members, scenarios, seed, {"dev": frac}, pool=pure)
            for g, s in dest.items():
                for i in members[g]:
                    scenarios[i].split = s
    for i, sc in enumerate(scenarios):
        sc.meta["split"] = {"strategy": strategy, "seed": seed,
                            "group": scenarios[roots[i]].id}
    report = _report(scenarios, sigs, pairs, roots, strategy, seed, test_fraction,
                     dev_fraction, policy)
    summary = {k: report["cross_split"][k] for k in ("max_jaccard", "max_pair",
                                                     "groups_spanning_splits",
                                                     "near_duplicate_pairs_across")}
    for sc in scenarios:  # the dataset card shows the proof without the report at hand
        sc.meta["split"]["cross_split"] = summary
    return report


def _report(scenarios, sigs, pairs, roots, strategy, seed, test_fraction, dev_fraction,
            policy) -> dict[str, Any]:
    th = policy.thresholds
    counts: dict[str, dict[str, Any]] = {}
    for sc in scenarios:
        c = counts.setdefault(sc.split, {"scenarios": 0, "kept": 0, "turns": 0,
                                         "platforms": Counter(), "kept_platforms": Counter()})
        c["scenarios"] += 1
        c["turns"] += len(sc.turns)
        c["platforms"][sc.platform or "unknown"] += 1
        if not is_excluded(sc):
            c["kept"] += 1
            c["kept_platforms"][sc.platform or "unknown"] += 1
    score, a, b = max_cross_similarity(sigs, [sc.split for sc in scenarios])
    leaks = [{"a": scenarios[p.a].id, "b": scenarios[p.b].id, "jaccard": p.jaccard,
              "containment": p.containment, "splits": [scenarios[p.a].split,
                                                       scenarios[p.b].split]}
             for p in pairs if scenarios[p.a].split != scenarios[p.b].split]
    group_splits: dict[int, set[str]] = defaultdict(set)
    for i, sc in enumerate(scenarios):
        group_splits[roots[i]].add(sc.split)
    spanning = sum(len(s) > 1 for s in group_splits.values())
    near = [lk for lk in leaks if lk["jaccard"] >= th.near_duplicate_jaccard
            or lk["containment"] >= th.near_duplicate_containment]
    return {
        "schema": SPLIT_REPORT_SCHEMA,
        "strategy": strategy,
        "seed": seed,
        "fractions": {"test": test_fraction, "dev": dev_fraction},
        "counts": {s: {**{k: v for k, v in counts[s].items() if "platforms" not in k},
                       "platforms": dict(sorted(counts[s]["platforms"].items())),
                       "kept_platforms": dict(sorted(counts[s]["kept_platforms"].items()))}
                   for s in SPLITS if s in counts},
        "groups": len(set(roots)),
        "largest_group": max(Counter(roots).values(), default=0),
        "cross_split": {
            "max_jaccard": round(score, 4),
            "max_pair": ([scenarios[a].id, scenarios[b].id] if a >= 0 else None),
            "groups_spanning_splits": spanning,
            "near_duplicate_pairs_across": len(near),
            "candidate_pairs_across": leaks,
        },
        "method": {"shingle_words": th.shingle_words, "num_perm": th.num_perm,
                   "related_jaccard": th.related_jaccard,
                   "related_containment": th.related_containment},
    }


def split_file(source: str | Path, output: str | Path, *, strategy: str = "clean",
               seed: int = 0, test_fraction: float = 0.1, dev_fraction: float = 0.1,
               policy_path: str | Path | None = None, strict: bool = False) -> dict[str, Any]:
    """Read a (curated) corpus, split it, write it atomically; return the report."""
    from deescalwild.provenance import git_commit, versions

    t0 = time.perf_counter()
    policy = load_policy(policy_path)
    problems: list[InputError] | None = None if strict else []
    with gc_paused():
        scenarios = list(read_corpus(source, problems))
        if not scenarios:
            raise DeescalwildError(f"{source}: no scenarios to split")
        report = split_scenarios(scenarios, strategy=strategy, seed=seed,
                                 test_fraction=test_fraction, dev_fraction=dev_fraction,
                                 policy=policy)
        write_corpus(output, scenarios)
    report.update({
        "input": str(source), "output": str(output),
        "problems": [str(p) for p in problems or []],
        "provenance": {"versions": versions("datasketch", "numpy"), "git_commit": git_commit(),
                       "seconds": round(time.perf_counter() - t0, 2)},
    })
    return report
