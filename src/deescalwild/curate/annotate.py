"""`deescalwild curate`: flag what is wrong with each turn and scenario, and say why.

Nothing is deleted. Each flag lands on its turn or scenario (`flags`), its reason in
`meta["curation"]["reasons"]`, and the policy's verdict in `meta["curation"]["excluded"]` and
`["excluded_turns"]`, which later stages read through `policy.is_excluded` / `kept_turns`.
The report counts every flag, the words it touches, and shows a few examples of each.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deescalwild.core import Role, Scenario, gc_paused, read_corpus, write_corpus
from deescalwild.curate import detectors as det
from deescalwild.curate.neardup import UnionFind, candidate_pairs, shingles, signatures
from deescalwild.curate.policy import (
    CURATION_SCHEMA,
    SCENARIO_FLAGS,
    TURN_FLAGS,
    Policy,
    load_policy,
)
from deescalwild.errors import DeescalwildError, InputError

CURATE_REPORT_SCHEMA = "deescalwild.curate-report/1"
EXAMPLES = 3
_LOOPS = frozenset({"repetition_loop", "alternating_loop", "duplicate_of_previous"})
Progress = Callable[[int, int], None]


@dataclass
class _FlagTally:
    turns: int = 0
    scenarios: set[str] = field(default_factory=set)
    words: int = 0
    candidates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def example(self, key: str, ex: dict[str, Any]) -> None:
        # keep the EXAMPLES smallest CRC32 keys: a spread-out sample, the same every run
        self.candidates.append((zlib.crc32(key.encode()), ex))
        if len(self.candidates) > 4 * EXAMPLES:
            self.candidates.sort(key=lambda c: c[0])
            del self.candidates[EXAMPLES:]

    def examples(self) -> list[dict[str, Any]]:
        return [ex for _, ex in sorted(self.candidates, key=lambda c: c[0])[:EXAMPLES]]


def _excerpt(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _turn_flags(sc: Scenario, norm: list[tuple[str, ...]],
                policy: Policy) -> dict[int, dict[str, str]]:
    """Position → {flag: reason} for one scenario's turns."""
    th = policy.thresholds
    found: dict[int, dict[str, str]] = {}
    for i, t in enumerate(sc.turns):
        ws = norm[i]
        if not ws:
            found.setdefault(i, {})["empty"] = "no words"
            continue
        if why := det.repetition_loop(ws, th):
            found.setdefault(i, {})["repetition_loop"] = why
        if why := det.advertisement(t.text):
            found.setdefault(i, {})["advertisement"] = why
        sr = sc.speakers.get(t.speaker)
        if why := det.narration(t, sr.evidence.value if sr else None):
            found.setdefault(i, {})["narration"] = why
    for flag, hits in (("duplicate_of_previous", det.duplicate_of_previous(sc.turns, norm, th)),
                       ("alternating_loop", det.alternating_loops(sc.turns, norm, th))):
        for i, why in hits.items():
            found.setdefault(i, {})[flag] = why
    return found


def _scenario_flags(sc: Scenario, norm: list[tuple[str, ...]], flagged: dict[int, dict],
                    kept: list[int], policy: Policy) -> dict[str, str]:
    th = policy.thresholds
    out: dict[str, str] = {}
    clean = [w for i, w in enumerate(norm) if not flagged.get(i, {}).keys() & _LOOPS]
    if why := det.off_domain(sc, clean, th):
        out["off_domain"] = why
    roles = Counter(sc.turns[i].role for i in kept)
    if not roles[Role.OFFICER] and not roles[Role.DISPATCHER]:  # a 911 call is police talk
        out["no_officer"] = ("no kept turn by an officer or dispatcher" if sc.turns
                             else "no turns")
    if not roles[Role.CIVILIAN]:
        out["no_civilian"] = ("no kept turn by a civilian" if sc.turns else "no turns")
    if len(kept) < th.min_turns:
        out["too_short"] = f"{len(kept)} kept turn(s) of {len(sc.turns)} (< {th.min_turns})"
    # shares over rows that are speech: one looping row must not decide the whole video
    looped = {i for i, f in flagged.items() if f.keys() & _LOOPS}
    total = sum(len(w) for i, w in enumerate(norm) if i not in looped)
    narrated = sum(len(norm[i]) for i, f in flagged.items()
                   if i not in looped and ("narration" in f or "advertisement" in f))
    if total and narrated / total > th.narration_max_share:
        out["mostly_narration"] = (f"{narrated / total:.0%} of words are narration or "
                                   f"advertisement (> {th.narration_max_share:.0%})")
    return out


def curate_scenarios(scenarios: Sequence[Scenario], policy: Policy,
                     progress: Progress | None = None) -> dict[str, Any]:
    """Flag every turn and scenario in place and return the report's counts (see
    docs/curation.md). Idempotent: flags from an earlier curation are replaced, others kept."""
    th = policy.thresholds
    ours = set(TURN_FLAGS) | set(SCENARIO_FLAGS)
    turn_tally = {f: _FlagTally() for f in TURN_FLAGS}
    sc_tally = {f: _FlagTally() for f in SCENARIO_FLAGS}
    shingle_sets: list[set[bytes]] = []
    words_per: list[list[int]] = []
    records: list[dict[str, Any]] = []
    n = len(scenarios)
    for k, sc in enumerate(scenarios):
        norm = [tuple(det.words(t.text)) for t in sc.turns]
        flagged = _turn_flags(sc, norm, policy)
        kept = [i for i in range(len(sc.turns))
                if not (flagged.get(i, {}).keys() & policy.exclude_turns)]
        kept_set = set(kept)
        sc_flags = _scenario_flags(sc, norm, flagged, kept, policy)
        for i, t in enumerate(sc.turns):
            t.flags = [f for f in t.flags if f not in ours] + sorted(flagged.get(i, ()))
            for flag, why in flagged.get(i, {}).items():
                tally = turn_tally[flag]
                tally.turns += 1
                tally.scenarios.add(sc.id)
                tally.words += len(norm[i])
                tally.example(f"{sc.id}#{t.index}", {
                    "scenario": sc.id, "turn": t.index, "line": t.line, "speaker": t.speaker,
                    "reason": why, "text": _excerpt(t.text)})
        records.append({
            "flags": sc_flags,
            "turn_reasons": {str(sc.turns[i].index): dict(sorted(f.items()))
                             for i, f in sorted(flagged.items())},
            "excluded_turns": [sc.turns[i].index for i in range(len(sc.turns))
                               if i not in kept_set],
        })
        words_per.append([len(w) for w in norm])
        shingle_sets.append(shingles([w for ws in norm for w in ws], th.shingle_words))
        if progress:
            progress(k + 1, n)

    dup = _near_duplicates(scenarios, shingle_sets, policy)
    del shingle_sets
    totals = Counter()
    for sc, rec, wp in zip(scenarios, records, words_per):
        flags = rec["flags"]
        if sc.id in dup["flagged"]:
            flags["near_duplicate"] = dup["flagged"][sc.id]
        excluded_by = sorted(flags.keys() & policy.exclude_scenarios)
        sc.flags = [f for f in sc.flags if f not in ours] + sorted(flags)
        dropped = set(rec["excluded_turns"])
        kept_words = sum(w for t, w in zip(sc.turns, wp) if t.index not in dropped)
        sc.meta["curation"] = {
            "schema": CURATION_SCHEMA,
            "excluded": bool(excluded_by),
            "excluded_by": excluded_by,
            "excluded_turns": rec["excluded_turns"],
            "reasons": {"scenario": dict(sorted(flags.items())), "turns": rec["turn_reasons"]},
            "near_duplicate_of": dup["canonical_of"].get(sc.id),
            "group": dup["group_of"].get(sc.id),
        }
        words = sum(wp)
        totals["scenarios_in"] += 1
        totals["turns_in"] += len(sc.turns)
        totals["words_in"] += words
        if not excluded_by:
            totals["scenarios_kept"] += 1
            totals["turns_kept"] += len(sc.turns) - len(dropped)
            totals["words_kept"] += kept_words
        for flag, why in flags.items():
            tally = sc_tally[flag]
            tally.scenarios.add(sc.id)
            tally.turns += len(sc.turns)
            tally.words += words
            tally.example(sc.id, {"scenario": sc.id, "reason": why,
                                  "title": sc.meta.get("title")})

    def table(tallies: dict[str, _FlagTally], excl: frozenset[str]) -> dict[str, Any]:
        return {f: {"turns": t.turns, "scenarios": len(t.scenarios), "words": t.words,
                    "excludes": f in excl, "examples": t.examples()}
                for f, t in tallies.items()}

    return {
        "totals": {k: totals[k] for k in ("scenarios_in", "scenarios_kept", "turns_in",
                                          "turns_kept", "words_in", "words_kept")},
        "turn_flags": table(turn_tally, policy.exclude_turns),
        "scenario_flags": table(sc_tally, policy.exclude_scenarios),
        "near_duplicates": dup["report"],
    }


def _near_duplicates(scenarios: Sequence[Scenario], shingle_sets: list[set[bytes]],
                     policy: Policy) -> dict[str, Any]:
    """Clusters of near-copies (flag all but the longest) and wider groups of related scenarios
    (the split stage keeps each group inside one split)."""
    th = policy.thresholds
    sizes = [len(s) for s in shingle_sets]
    sigs = signatures(shingle_sets, th.num_perm)
    low = min(th.related_jaccard, th.related_containment)
    pairs = candidate_pairs(sigs, sizes, low)
    near = UnionFind(len(scenarios))
    related = UnionFind(len(scenarios))
    best_pair: dict[tuple[int, int], Any] = {}
    for p in pairs:
        if p.jaccard >= th.related_jaccard or p.containment >= th.related_containment:
            related.union(p.a, p.b)
        if p.jaccard >= th.near_duplicate_jaccard or p.containment >= th.near_duplicate_containment:
            near.union(p.a, p.b)
            best_pair[(p.a, p.b)] = p

    def canonical(members: list[int]) -> int:  # the longest text; ties by id
        return min(members, key=lambda i: (-sizes[i], scenarios[i].id))

    flagged: dict[str, str] = {}
    canonical_of: dict[str, str] = {}
    clusters = []
    for members in near.components().values():
        if len(members) < 2:
            continue
        c = canonical(members)
        for m in members:
            if m == c:
                continue
            p = best_pair.get((min(m, c), max(m, c)))
            sim = (f"Jaccard ≈ {p.jaccard:.2f}, {p.containment:.0%} contained" if p
                   else "linked through another copy")
            flagged[scenarios[m].id] = f"near-copy of {scenarios[c].id} ({sim})"
            canonical_of[scenarios[m].id] = scenarios[c].id
        clusters.append({
            "canonical": scenarios[c].id,
            "members": sorted(scenarios[m].id for m in members),
            "splits": sorted({scenarios[m].split or "none" for m in members}),
            "pairs": [{"a": scenarios[p.a].id, "b": scenarios[p.b].id,
                       "jaccard": p.jaccard, "containment": p.containment}
                      for (a, b), p in sorted(best_pair.items()) if near.find(a) == near.find(c)],
        })
    group_of: dict[str, str] = {}
    n_groups = 0
    for members in related.components().values():
        if len(members) < 2:
            continue
        n_groups += 1
        key = scenarios[canonical(members)].id
        for m in members:
            group_of[scenarios[m].id] = key
    clusters.sort(key=lambda c: c["canonical"])
    return {
        "flagged": flagged,
        "canonical_of": canonical_of,
        "group_of": group_of,
        "report": {
            "method": {"shingle_words": th.shingle_words, "num_perm": th.num_perm,
                       "near_duplicate_jaccard": th.near_duplicate_jaccard,
                       "near_duplicate_containment": th.near_duplicate_containment,
                       "related_jaccard": th.related_jaccard,
                       "related_containment": th.related_containment},
            "candidate_pairs": len(pairs),
            "near_duplicate_pairs": len(best_pair),
            "clusters": clusters,
            "cross_split_clusters": sum(len(c["splits"]) > 1 for c in clusters),
            "related_groups": n_groups,
            "related_pairs": [{"a": scenarios[p.a].id, "b": scenarios[p.b].id,
                               "jaccard": p.jaccard, "containment": p.containment}
                              for p in pairs if (p.a, p.b) not in best_pair
                              and (p.jaccard >= th.related_jaccard
                                   or p.containment >= th.related_containment)],
        },
    }


def curate_file(source: str | Path, output: str | Path, *, policy_path: str | Path | None = None,
                strict: bool = False, pseudonymize: bool = False,
                progress: Progress | None = None) -> dict[str, Any]:
    """Read a corpus, curate it, write it atomically; return the report (schema
    `deescalwild.curate-report/1`). Bad lines are reported and skipped unless `strict`."""
    from deescalwild.provenance import git_commit, versions

    t0 = time.perf_counter()
    policy = load_policy(policy_path)
    problems: list[InputError] | None = None if strict else []
    with gc_paused():
        scenarios = list(read_corpus(source, problems))
        if not scenarios and not problems:
            raise DeescalwildError(f"{source}: no scenarios to curate")
        report = curate_scenarios(scenarios, policy, progress)
        privacy = None
        if pseudonymize:
            from deescalwild.curate.privacy import PrivacyCounts
            from deescalwild.curate.privacy import pseudonymize as pseudo

            counts = PrivacyCounts()
            for sc in scenarios:
                counts.add(pseudo(sc))
            privacy = counts.to_dict()
        recorded = {**policy.to_dict(), "source": Path(policy.source).name}
        for sc in scenarios:
            sc.meta.setdefault("curation", {})["policy"] = recorded
        write_corpus(output, scenarios)
    return {
        "schema": CURATE_REPORT_SCHEMA,
        "input": str(source),
        "output": str(output),
        "policy": policy.to_dict(),
        **report,
        "privacy": privacy,
        "problems": [str(p) for p in problems or []],
        "provenance": {"versions": versions("datasketch", "numpy"), "git_commit": git_commit(),
                       "seconds": round(time.perf_counter() - t0, 2)},
    }
