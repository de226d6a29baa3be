"""The role classifier: a linear model over bag-of-words and conversation-shape features.

Trained on the speakers whose labels state their role (the corpus labels itself) and applied to
the ones whose labels do not. Prediction needs only NumPy, so role resolution stays fast; fitting
uses scikit-learn's logistic regression. The saved format is a plain `.npz` (no pickle): arrays,
the vocabularies as text, and a JSON metadata string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deescalwild.atomic import atomic_write
from deescalwild.core import Role
from deescalwild.corpus.roles.features import NUMERIC_NAMES, ROLE_ORDER
from deescalwild.corpus.roles.vectorize import vectorize
from deescalwild.errors import InputError

FORMAT = "deescalwild.role-model/1"
DEFAULT_MODEL = Path(__file__).with_name("role_model.npz")
KIND_PRIOR_STRENGTH = 0.5
KIND_PRIOR_FLOOR = 0.05


@dataclass(slots=True)
class Views:
    """The classifier's input for a batch of speakers (see `features.py`)."""

    own: list[list[str]]
    around: list[list[str]]
    numbers: np.ndarray  # (n, len(NUMERIC_NAMES))

    def __len__(self) -> int:
        return len(self.own)


@dataclass
class RoleModel:
    vocab_own: dict[str, int]
    vocab_around: dict[str, int]
    coef: np.ndarray  # (n_classes, len(vocab_own) + len(vocab_around) + n_numeric)
    intercept: np.ndarray  # (n_classes,)
    meta: dict[str, Any] = field(default_factory=dict)
    classes: tuple[Role, ...] = ROLE_ORDER

    def design(self, views: Views):
        """The scipy sparse design matrix (training and evaluation only)."""
        from scipy import sparse

        blocks = []
        for docs, vocab in ((views.own, self.vocab_own), (views.around, self.vocab_around)):
            indptr, indices, data = vectorize(docs, vocab)
            blocks.append(sparse.csr_matrix((data, indices, indptr),
                                            shape=(len(docs), len(vocab))))
        blocks.append(sparse.csr_matrix(views.numbers.astype(np.float32)))
        return sparse.hstack(blocks, format="csr", dtype=np.float32)

    def encode(self, views: Views) -> np.ndarray:
        """The word part of the class scores, (n, n_classes). It does not depend on the
        numeric features, so passes that only update those reuse it."""
        n_own = len(self.vocab_own)
        out = np.zeros((len(views), len(self.classes)))
        for docs, vocab, offset in ((views.own, self.vocab_own, 0),
                                    (views.around, self.vocab_around, n_own)):
            indptr, indices, data = vectorize(docs, vocab)
            for r in range(len(views)):
                a, b = indptr[r], indptr[r + 1]
                if b > a:
                    out[r] += self.coef[:, offset + indices[a:b]] @ data[a:b]
        return out

    def logits(self, views: Views, encoded: np.ndarray | None = None) -> np.ndarray:
        """Class scores without scipy: sparse dot products row by row."""
        n_words = len(self.vocab_own) + len(self.vocab_around)
        words = self.encode(views) if encoded is None else encoded
        return words + views.numbers @ self.coef[:, n_words:].T + self.intercept

    def predict_proba(self, views: Views, encoded: np.ndarray | None = None) -> np.ndarray:
        z = self.logits(views, encoded)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def kind_prior(self, kind: str) -> np.ndarray:
        """How roles are spread among speakers whose labels are of this kind (`name`,
        `generic`, ...), as estimated at training time; uniform when unknown."""
        p = self.meta.get("kind_priors", {}).get(kind)
        if not p:
            return np.full(len(self.classes), 1 / len(self.classes))
        # tempered and floored: EM drives small classes towards zero, and a zero prior could
        # never be overturned by any evidence
        t = (np.asarray(p) + KIND_PRIOR_FLOOR) ** KIND_PRIOR_STRENGTH
        return t / t.sum()

    @classmethod
    def fit(cls, vocab_own: dict[str, int], vocab_around: dict[str, int], views: Views,
            y: list[Role], c: float, meta: dict[str, Any] | None = None) -> RoleModel:
        """L2-regularised multinomial logistic regression (lbfgs: deterministic), with classes
        weighted so that the many officers do not drown the few dispatchers."""
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as e:
            from deescalwild.errors import DeescalwildError

            raise DeescalwildError("training a role model needs scikit-learn: "
                                   "pip install 'deescalwild[train]'") from e

        model = cls(vocab_own, vocab_around, np.zeros(0), np.zeros(0), dict(meta or {}))
        x = model.design(views)
        present = [r for r in ROLE_ORDER if r in set(y)]
        if len(present) < 3:
            raise ValueError("need role-labelled speakers of at least three roles to train")
        target = np.array([present.index(r) for r in y])
        lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
        lr.fit(x, target)
        model.coef = np.zeros((len(ROLE_ORDER), x.shape[1]), dtype=np.float32)
        model.intercept = np.full(len(ROLE_ORDER), -30.0, dtype=np.float32)  # absent: never
        for k, role in enumerate(present):
            model.coef[ROLE_ORDER.index(role)] = lr.coef_[k]
            model.intercept[ROLE_ORDER.index(role)] = lr.intercept_[k]
        return model

    def save(self, path: str | Path) -> None:
        meta = {"format": FORMAT, "classes": [r.value for r in self.classes],
                "numeric": list(NUMERIC_NAMES), **self.meta}
        with atomic_write(path, "wb") as fh:
            np.savez_compressed(
                fh,
                vocab_own=np.array("\n".join(sorted(self.vocab_own, key=self.vocab_own.get))),
                vocab_around=np.array("\n".join(sorted(self.vocab_around,
                                                       key=self.vocab_around.get))),
                coef=self.coef.astype(np.float16),
                intercept=self.intercept.astype(np.float32),
                meta=np.array(json.dumps(meta)),
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> RoleModel:
        path = Path(path) if path else DEFAULT_MODEL
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != FORMAT:
                    raise InputError(path, None, f"expected a role model of format {FORMAT!r}, "
                                     f"found {meta.get('format')!r}")
                if meta.get("numeric") != list(NUMERIC_NAMES):
                    raise InputError(path, None, "role model was trained with other features; "
                                     "retrain it with `deescalwild corpus roles train`")

                def vocab(key: str) -> dict[str, int]:
                    text = str(z[key])
                    return {t: i for i, t in enumerate(text.split("\n"))} if text else {}

                own, around = vocab("vocab_own"), vocab("vocab_around")
                coef, intercept = z["coef"].astype(np.float32), z["intercept"].astype(np.float32)
                width = len(own) + len(around) + len(NUMERIC_NAMES)
                if coef.shape != (len(ROLE_ORDER), width) or intercept.shape != (len(ROLE_ORDER),):
                    raise InputError(path, None, f"role model arrays have shape {coef.shape}, "
                                     f"expected ({len(ROLE_ORDER)}, {width})")
                return cls(own, around, coef, intercept, meta,
                           tuple(Role(c) for c in meta["classes"]))
        except (OSError, ValueError, KeyError) as e:
            raise InputError(path, None, f"cannot load role model: {e}") from e
