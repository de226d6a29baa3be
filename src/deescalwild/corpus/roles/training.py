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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

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
from deescalwild.errors import DeescalwildError
from deescalwild.provenance import git_commit, versions

MIN_VIDEOS = 5  # a term enters the vocabulary only if speakers in this many videos use it
MAX_VOCAB = 40_000
C = 3.0
PRIOR_KINDS = ("name", "generic")


@dataclass
class Examples:
    """Every training example of a corpus: speakers whose labels settle their role, then those
    whose context cues do, with the views the classifier reads."""

    items: list[Item]
    roles: list[Role]
    n_labelled: int
    views: Views
    unlabelled: list[Item]  # every speaker the label does not settle (text filled)
    by_cue: dict[int, Role]  # id(item) -> role, for the unlabelled ones a cue settles

    def subset(self, idx: Sequence[int]) -> tuple[list[Item], list[Role], Views]:
        v = self.views
        return ([self.items[i] for i in idx], [self.roles[i] for i in idx],
                Views([v.own[i] for i in idx], [v.around[i] for i in idx], v.numbers[idx]))


def examples(scenarios: Sequence[Scenario]) -> Examples:
    everyone = speaker_items(scenarios)
    labelled = [it for it in everyone if it.verdict.decisive and it.verdict.role in ROLE_ORDER]
    if not labelled:
        raise DeescalwildError("no speaker in this corpus has a label that states its role: "
                               "nothing to train on")
    unlabelled = [it for it in everyone if not it.verdict.decisive]
    fill_text(labelled)
    fill_text(unlabelled)
    mentions: dict = {}
    by_cue = {id(it): cue.role for it in unlabelled
              if (cue := decide(cues_for(it, mentions))) is not None}
    cued = [it for it in unlabelled if id(it) in by_cue]
    items = labelled + cued
    roles = [it.verdict.role for it in labelled] + [by_cue[id(it)] for it in cued]
    return Examples(items, roles, len(labelled), views(items), unlabelled, by_cue)


def _fit(items: Sequence[Item], roles: list[Role], v: Views, meta: dict | None = None
         ) -> RoleModel:
    groups = [it.speaker.scenario.id for it in items]
    vocab_own = build_vocabulary(v.own, groups, MIN_VIDEOS, MAX_VOCAB)
    vocab_around = build_vocabulary(v.around, groups, MIN_VIDEOS, MAX_VOCAB)
    try:
        return RoleModel.fit(vocab_own, vocab_around, v, roles, c=C, meta=meta)
    except ValueError as e:
        raise DeescalwildError(f"cannot train a role model on this corpus: {e}") from e


def em_prior(probs: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Class priors of an unlabelled population from posteriors of a model trained with
    balanced classes (so its own prior is uniform)."""
    prior = np.full(probs.shape[1], 1.0 / probs.shape[1])
    for _ in range(iterations):
        q = probs * prior
        q /= q.sum(axis=1, keepdims=True)
        new = q.mean(axis=0)
        converged = np.abs(new - prior).max() < 1e-6
        prior = new
        if converged:
            break
    return prior


def corpus_digest(scenarios: Sequence[Scenario]) -> str:
    h = hashlib.sha256()
    for sc in scenarios:
        h.update(sc.meta.get("sha256", sc.id).encode())
    return h.hexdigest()[:16]


def cross_validate(scenarios: Sequence[Scenario], folds: int = 5,
                   ex: Examples | None = None) -> dict:
    """Held-out agreement with the labels' own role words, in folds grouped by scenario.

    Each fold's model is trained exactly as `train` trains (labelled and cue-settled speakers
    of the other folds' scenarios, vocabulary rebuilt) and predicts the labelled speakers of
    its own scenarios from their words and conversation shape alone.
    """
    from sklearn.model_selection import GroupKFold

    ex = ex or examples(scenarios)
    groups = np.array([it.speaker.scenario.id for it in ex.items])  # stable, unlike id()
    if len(set(groups[: ex.n_labelled])) < folds:
        raise DeescalwildError(f"cross-validation needs role-labelled speakers in at least "
                               f"{folds} scenarios")
    y = ex.roles[: ex.n_labelled]
    pred: list[Role] = [Role.UNKNOWN] * ex.n_labelled
    for tr, te in GroupKFold(n_splits=folds).split(groups, groups=groups):
        model = _fit(*ex.subset(tr))
        te = te[te < ex.n_labelled]  # judged only where a label says the truth
        _, _, v = ex.subset(te)
        for i, row in zip(te, model.predict_proba(v)):
            pred[i] = ROLE_ORDER[int(row.argmax())]
    n_role = Counter(y)
    hits = Counter(a for a, b in zip(y, pred) if a == b)
    turns = [len(it.speaker.turns) for it in ex.items[: ex.n_labelled]]
    return {
        "speakers": len(y),
        "scenarios": len(set(groups[: ex.n_labelled])),
        "folds": folds,
        "accuracy": round(sum(hits.values()) / len(y), 4),
        "turn_accuracy": round(sum(n for n, a, b in zip(turns, y, pred) if a == b) / sum(turns),
                               4),
        "recall": {r.value: round(hits[r] / n_role[r], 3) for r in ROLE_ORDER if n_role[r]},
        "support": {r.value: n_role[r] for r in ROLE_ORDER if n_role[r]},
        "confusion": {f"{a.value}->{b.value}": n
                      for (a, b), n in sorted(Counter(zip(y, pred)).items()) if a != b},
    }


def train(scenarios: Sequence[Scenario], cv_folds: int = 5) -> RoleModel:
    """Fit on every role-labelled and cue-settled speaker; provenance, kind priors and the
    cross-validated agreement go in the model's meta. Deterministic: no sampling anywhere."""
    ex = examples(scenarios)
    y = Counter(ex.roles)
    meta = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus_digest": corpus_digest(scenarios),
        "scenarios": len(scenarios),
        "speakers": len(ex.items),
        "speakers_by_cue": len(ex.items) - ex.n_labelled,
        "roles": {r.value: y[r] for r in ROLE_ORDER if y[r]},
        "hyperparameters": {"C": C, "min_videos": MIN_VIDEOS, "max_vocab": MAX_VOCAB},
        "versions": versions("scikit-learn", "numpy"),
        "git_commit": git_commit(),
    }
    model = _fit(ex.items, ex.roles, ex.views, meta)

    # how roles are spread among all plain-name (generic) speakers; cue-settled ones are known
    pop = [it for it in ex.unlabelled if it.verdict.kind in PRIOR_KINDS]
    probs = posteriors(pop, model, passes=1, use_priors=False) if pop else np.zeros((0, 5))
    for row, it in zip(probs, pop):
        if id(it) in ex.by_cue:
            row[:] = 0.0
            row[ROLE_ORDER.index(ex.by_cue[id(it)])] = 1.0
    priors, support = {}, {}
    for kind in PRIOR_KINDS:
        rows = [i for i, it in enumerate(pop) if it.verdict.kind == kind]
        if len(rows) >= 20:
            priors[kind] = [round(float(x), 4) for x in em_prior(probs[rows])]
            support[kind] = len(rows)
    model.meta["kind_priors"] = priors
    model.meta["kind_prior_support"] = support
    labelled_scenarios = {it.speaker.scenario.id for it in ex.items[: ex.n_labelled]}
    if cv_folds and len(labelled_scenarios) >= cv_folds:
        model.meta["cross_validation"] = cross_validate(scenarios, folds=cv_folds, ex=ex)
    return model
