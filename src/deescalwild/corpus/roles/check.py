"""Compare resolved roles with a hand-labelled set of (scenario, speaker label, role).

The gold file is JSON Lines; each line has `scenario` (an id, or `file`: a transcript path
whose stem is the id), the speaker as `label` or as `label_sha256` (the first 16 hex digits of
the SHA-256 of the UTF-8 label, so that a gold set can be shared without the names in it), and
`role`. Optional fields (`certainty`, `why`) are carried through. Accuracy is reported per label
kind, because the kinds differ so much in difficulty: labels that state a role, weak role words
(`[Mother]`, `[Employee]`), plain names, and generic labels (`[Voice 2]`, `[Man]`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deescalwild.core import Role, Scenario, read_json_lines
from deescalwild.corpus.roles.lexicon import classify_label
from deescalwild.errors import InputError

KINDS = ("role_word", "weak_role_word", "name", "generic")


def label_hash(label: str) -> str:
    return hashlib.sha256(label.encode("utf-8")).hexdigest()[:16]


def label_kind(label: str) -> str:
    """`role_word` (the label settles the role), `weak_role_word`, `name` or `generic`."""
    v = classify_label(label)
    if v.decisive:
        return "role_word"
    if v.kind == "role_word":
        return "weak_role_word"
    return "name" if v.kind == "name" else "generic"


def read_gold(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, d in read_json_lines(path, "labelled speaker"):
        sid = d.get("scenario") or (Path(d["file"]).stem if d.get("file") else None)
        if not sid or not ("label" in d or "label_sha256" in d) or "role" not in d:
            raise InputError(path, lineno, "expected fields scenario (or file), label (or "
                             "label_sha256) and role")
        try:
            Role(d["role"])
        except ValueError as e:
            raise InputError(path, lineno, f"role {d['role']!r} is not one of "
                             f"{', '.join(r.value for r in Role)}") from e
        rows.append({**d, "scenario": sid})
    return rows


def check_roles(scenarios: Sequence[Scenario], gold: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of the corpus's resolved roles against gold rows, overall and per label kind."""
    by_id = {sc.id: sc for sc in scenarios}
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    confusion: Counter[tuple[str, str]] = Counter()
    missing = []
    errors = []
    for g in gold:
        sc = by_id.get(g["scenario"])
        label = g.get("label")
        if sc is not None and label is None:
            label = next((lab for lab in sc.speakers if label_hash(lab) == g["label_sha256"]),
                         None)
        if sc is None or label not in sc.speakers:
            missing.append(g["scenario"])
            continue
        got = sc.speakers[label]
        kind = label_kind(label)
        ok = got.role.value == g["role"]
        for key in (kind, "all"):
            totals[key] += 1
            hits[key] += ok
        if g.get("certainty") in ("high", "medium"):
            totals["all_high_medium"] += 1
            hits["all_high_medium"] += ok
        confusion[(g["role"], got.role.value)] += 1
        if not ok:
            errors.append({"scenario": sc.id, "label_sha256": label_hash(label), "kind": kind,
                           "gold": g["role"], "resolved": got.role.value,
                           "evidence": got.evidence.value, "confidence": got.confidence})
    plain = totals["name"] + totals["generic"]
    return {
        "pairs": sum(totals[k] for k in KINDS),
        "missing": len(missing),
        "accuracy": {k: round(hits[k] / totals[k], 4) for k in (*KINDS, "all",
                                                                "all_high_medium")
                     if totals[k]},
        "accuracy_name_or_generic": round((hits["name"] + hits["generic"]) / plain, 4)
        if plain else None,
        "support": {k: totals[k] for k in (*KINDS, "all", "all_high_medium") if totals[k]},
        "confusion": {f"{a}->{b}": n for (a, b), n in sorted(confusion.items())},
        "errors": errors,
    }
