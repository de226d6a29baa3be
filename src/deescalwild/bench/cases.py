"""Benchmark cases: teacher-forced next-turn prediction, the paper's protocol, without its leak.

One case per civilian message that answers an officer: the history is the conversation up to
(never including) that message, the reference is the message. The paper's code put the
reference reply into the history it gave the model; here the history ends at the officer's turn,
and a test pins it. Case ids are `SCENARIO_ID#TURN_INDEX` (the first turn of the reply), stable
across runs and independent of the history length.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deescalwild.core import Case, Scenario, read_corpus, write_cases
from deescalwild.curate.policy import is_excluded
from deescalwild.dialogue import messages, scene_context
from deescalwild.errors import InputError

# at most this many messages of history per case, starting on the officer side (so 11 when the
# 12th-last message is the civilian's); 0 or None = the whole conversation so far
DEFAULT_HISTORY = 12


def scenario_cases(scenario: Scenario, history: int | None = DEFAULT_HISTORY) -> Iterator[Case]:
    """The cases of one scenario (none when curation excluded it)."""
    if is_excluded(scenario):
        return
    msgs = messages(scenario)
    context = scene_context(scenario)
    split_meta = scenario.meta.get("split") or {}
    group = split_meta.get("group") or scenario.id
    leaks = (split_meta.get("cross_split") or {}).get("near_duplicate_pairs_across", 0)
    for i in range(1, len(msgs)):
        m, prev = msgs[i], msgs[i - 1]
        if m.role != "assistant" or not prev.has_officer:
            continue
        start = 0 if not history else max(0, i - history)
        if msgs[start].role == "assistant" and start < i - 1:
            start += 1  # open on the officer side: strict chat templates require it
        yield Case(
            id=f"{scenario.id}#{m.turn_indices[0]}",
            scenario_id=scenario.id,
            context=context,
            history=[x.to_chat() for x in msgs[start:i]],
            reference=m.content,
            meta={"split": scenario.split, "platform": scenario.platform,
                  "turn_index": m.turn_indices[0], "position": i, "history_cut": start,
                  "group": group, "leaks": leaks},
        )


@dataclass
class CasesSummary:
    cases: int = 0
    scenarios: int = 0  # scenarios of the split that gave at least one case
    in_split: int = 0  # scenarios of the split read
    excluded: int = 0  # of those, left out by the curation policy
    no_cases: int = 0  # kept, but without any civilian reply to an officer
    other_splits: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"cases": self.cases, "scenarios": self.scenarios, "in_split": self.in_split,
                "excluded": self.excluded, "no_cases": self.no_cases,
                "other_splits": dict(self.other_splits), "problems": self.problems}


def cases_from_corpus(path: str | Path, split: str | None = "test",
                      history: int | None = DEFAULT_HISTORY,
                      summary: CasesSummary | None = None) -> Iterator[Case]:
    """Cases of every scenario of `split` (None: all scenarios) in a corpus file, in file order."""
    s = summary if summary is not None else CasesSummary()
    for sc in read_corpus(path):
        if split is not None and sc.split != split:
            s.other_splits[sc.split or "none"] += 1
            continue
        s.in_split += 1
        if is_excluded(sc):
            s.excluded += 1
            continue
        n = 0
        for case in scenario_cases(sc, history):
            n += 1
            yield case
        s.cases += n
        s.scenarios += n > 0
        s.no_cases += n == 0


def make_cases(source: str | Path, output: str | Path, split: str | None = "test",
               history: int | None = DEFAULT_HISTORY,
               progress: Callable[[int, int], None] | None = None) -> CasesSummary:
    """`deescalwild cases`: write the cases of one split; fails when the split has none."""
    summary = CasesSummary()
    cases = list(cases_from_corpus(source, split, history, summary))
    if not cases:
        have = ", ".join(f"{k} ({v})" for k, v in sorted(summary.other_splits.items())) or "none"
        raise InputError(source, None, f"no cases for split {split!r} (scenarios in it: "
                         f"{summary.in_split}, excluded: {summary.excluded}; other splits: "
                         f"{have}); run `deescalwild split` first or choose --split")
    write_cases(output, cases)
    return summary


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (cases and training files are identified by it)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
