"""Fit the role classifier on a corpus's own role-labelled speakers, and measure it honestly.

The training examples are the speakers whose labels state their role decisively. Their labels
are hidden from the features (only their words and conversation shape are used), so the model
learns what an officer, a civilian or a narrator sounds like and can then be applied to `John`
and `[Voice 2]`. Agreement is measured by cross-validation grouped by scenario: no speaker is
predicted by a model that saw any speaker of the same video, and the vocabulary is rebuilt
inside each fold.

Plain names are not distributed like role-labelled speakers (most named speakers are civilians,
most labelled ones officers), so after fitting, the spread of roles among name-labelled and
generic-labelled speakers is estimated from those unlabelled speakers themselves by EM
(Saerens, Latinne & Decaestecker 2002) and stored as the model's kind priors.
"""

from __future__ import annotations

import hashlib
import platform
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from deescalwild import __version__
from deescalwild.core import Role, Scenario
from deescalwild.corpus.roles.cues import decide
from deescalwild.corpus.roles.features import ROLE_ORDER
from deescalwild.corpus.roles.model import RoleModel, Views
from deescalwild.corpus.roles.resolve import (
    Item,
    cues_for,
    fill_text,
    posteriors,
    speaker_items,
    views,
)
from deescalwild.corpus.roles.vectorize import build_vocabulary

MIN_VIDEOS = 5  # a term enters the vocabulary only if speakers in this many videos use it
MAX_VOCAB = 40_000
C = 3.0
PRIOR_KINDS = ("name", "generic")


def _labelled(items: Sequence[Item]) -> list[Item]:
    return [it for it in items if it.verdict.decisive and it.verdict.role in ROLE_ORDER]


def _fit(items: Sequence[Item], v: Views, seed: int, meta: dict | None = None,
         roles: list[Role] | None = None) -> RoleModel:
    groups = [it.speaker.scenario.id for it in items]
    vocab_own = build_vocabulary(v.own, groups, MIN_VIDEOS, MAX_VOCAB)
    vocab_around = build_vocabulary(v.around, groups, MIN_VIDEOS, MAX_VOCAB)
    y = roles if roles is not None else [it.verdict.role for it in items]
    return RoleModel.fit(vocab_own, vocab_around, v, y, c=C, seed=seed, meta=meta)


def em_prior(probs: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Class priors of an unlabelled population from posteriors of a model trained with
    balanced classes (so its own prior is uniform)."""
    prior = np.full(probs.shape[1], 1.0 / probs.shape[1])
    for _ in range(iterations):
        q = probs * prior
        q /= q.sum(axis=1, keepdims=True)
        new = q.mean(axis=0)
        if np.abs(new - prior).max() < 1e-6:
            break
        prior = new
    return prior


def corpus_digest(scenarios: Sequence[Scenario]) -> str:
    h = hashlib.sha256()
    for sc in scenarios:
        h.update(sc.meta.get("sha256", sc.id).encode())
    return h.hexdigest()[:16]


def cross_validate(scenarios: Sequence[Scenario], folds: int = 5, seed: int = 0) -> dict:
    """Held-out agreement with the labels' own role words, folds grouped by scenario."""
    from sklearn.model_selection import GroupKFold

    items = _labelled(speaker_items(scenarios))
    groups = np.array([it.speaker.scenario.id for it in items])  # stable, unlike id()
    if len(set(groups)) < folds:
        raise ValueError(f"need role-labelled speakers in at least {folds} scenarios")
    fill_text(items)
    v = views(items)
    y = [it.verdict.role for it in items]
    pred: list[Role] = [Role.UNKNOWN] * len(items)
    for tr, te in GroupKFold(n_splits=folds).split(np.zeros(len(items)), groups=groups):
        sub = lambda idx: Views([v.own[i] for i in idx], [v.around[i] for i in idx],  # noqa: E731
                                v.numbers[idx])
        model = _fit([items[i] for i in tr], sub(tr), seed)
        for i, row in zip(te, model.predict_proba(sub(te))):
            pred[i] = ROLE_ORDER[int(row.argmax())]
    n_role = Counter(y)
    hits = Counter(a for a, b in zip(y, pred) if a == b)
    turns = [len(it.speaker.turns) for it in items]
    return {
        "speakers": len(y),
        "scenarios": len(set(groups)),
        "folds": folds,
        "accuracy": round(sum(hits.values()) / len(y), 4),
        "turn_accuracy": round(sum(n for n, a, b in zip(turns, y, pred) if a == b) / sum(turns),
                               4),
        "recall": {r.value: round(hits[r] / n_role[r], 3) for r in ROLE_ORDER if n_role[r]},
        "support": {r.value: n_role[r] for r in ROLE_ORDER if n_role[r]},
        "confusion": {f"{a.value}->{b.value}": n
                      for (a, b), n in sorted(Counter(zip(y, pred)).items()) if a != b},
    }


def train(scenarios: Sequence[Scenario], seed: int = 0, cv_folds: int = 5) -> RoleModel:
    """Fit on every role-labelled speaker; provenance, kind priors and CV agreement go in meta."""
    import sklearn

    all_items = speaker_items(scenarios)
    items = _labelled(all_items)
    if not items:
        raise ValueError("no speaker in this corpus has a label that states its role")
    fill_text(items)
    unlabelled = [it for it in all_items if not it.verdict.decisive]
    fill_text(unlabelled)
    mentions: dict = {}
    by_cue = {}
    for it in unlabelled:
        cue = decide(cues_for(it, mentions))
        if cue is not None:
            by_cue[id(it)] = cue.role
    examples = items + [it for it in unlabelled if id(it) in by_cue]
    roles = [it.verdict.role for it in items] + [by_cue[id(it)] for it in examples[len(items):]]
    y = Counter(roles)
    meta = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus_digest": corpus_digest(scenarios),
        "scenarios": len(scenarios),
        "speakers": len(examples),
        "speakers_by_cue": len(examples) - len(items),
        "roles": {r.value: y[r] for r in ROLE_ORDER if y[r]},
        "hyperparameters": {"C": C, "min_videos": MIN_VIDEOS, "max_vocab": MAX_VOCAB},
        "seed": seed,
        "versions": {"deescalwild": __version__, "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }
    model = _fit(examples, views(examples), seed, meta, roles)

    priors = {}
    for kind in PRIOR_KINDS:  # the whole population of this kind; cue-settled ones are known
        sub = [it for it in unlabelled if it.verdict.kind == kind]
        if len(sub) >= 20:
            probs = posteriors(sub, model, passes=1, use_priors=False)
            for row, it in zip(probs, sub):
                if id(it) in by_cue:
                    row[:] = 0.0
                    row[ROLE_ORDER.index(by_cue[id(it)])] = 1.0
            priors[kind] = [round(float(x), 4) for x in em_prior(probs)]
            meta.setdefault("kind_prior_support", {})[kind] = len(sub)
    model.meta["kind_priors"] = priors
    if cv_folds and len({id(it.speaker.scenario) for it in items}) >= cv_folds:
        model.meta["cross_validation"] = cross_validate(scenarios, folds=cv_folds, seed=seed)
    return model
