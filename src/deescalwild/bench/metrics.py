"""Reply-vs-reference metrics: the paper's four (ROUGE-L, BLEU-4, METEOR, BERTScore F1) computed
as the paper's tools compute them, plus sacreBLEU, chrF and cheap sanity metrics (length ratio,
distinct n-grams, empty replies) that expose degenerate responders the paper's four reward.

Each metric's exact definition, tokenizer and scale is in docs/metrics.md. Libraries load on
first use, so importing this module is cheap and a run that skips BERTScore never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deescalwild.bench.bleu import bleu4, tokenize_13a
from deescalwild.errors import DeescalwildError

ALL_METRICS: tuple[str, ...] = ("rouge_l", "bleu4", "meteor", "bertscore_f1", "sacrebleu", "chrf",
                                "length_ratio", "distinct_1", "distinct_2", "empty")
PAPER_METRICS: tuple[str, ...] = ("rouge_l", "bleu4", "meteor", "bertscore_f1")
HIGHER_IS_BETTER: tuple[str, ...] = (*PAPER_METRICS, "sacrebleu", "chrf")
DESCRIPTIVE: tuple[str, ...] = ("length_ratio", "distinct_1", "distinct_2", "empty")  # no "better"
# the scale each value is on (what a perfect copy of the reference scores)
SCALES: dict[str, str] = {"rouge_l": "0-100", "bleu4": "0-100", "meteor": "0-100",
                          "bertscore_f1": "0-1", "sacrebleu": "0-100", "chrf": "0-100",
                          "length_ratio": "ratio", "distinct_1": "0-1", "distinct_2": "0-1",
                          "empty": "0/1"}
_CHUNK = 512  # pairs per progress step (and per BERTScore call)


def resolve_metrics(names: str | Sequence[str] | None) -> list[str]:
    """Metric keys in canonical order. None or "all": every metric; "paper": the paper's four;
    else a comma-separated string or a sequence of keys. Unknown keys are an error."""
    if names is None:
        return list(ALL_METRICS)
    items = names.split(",") if isinstance(names, str) else list(names)
    wanted: set[str] = set()
    for item in (str(i).strip().lower() for i in items):
        if item == "all":
            wanted.update(ALL_METRICS)
        elif item == "paper":
            wanted.update(PAPER_METRICS)
        elif item in ALL_METRICS:
            wanted.add(item)
        elif item:
            raise DeescalwildError(f"unknown metric {item!r}; valid: all, paper, "
                                   + ", ".join(ALL_METRICS))
    if not wanted:
        raise DeescalwildError("no metrics given; valid: all, paper, " + ", ".join(ALL_METRICS))
    return [m for m in ALL_METRICS if m in wanted]


def bertscore_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("bert_score", "torch"))


def choose_metrics(names: str | Sequence[str] | None,
                   warn: Callable[[str], None] = lambda s: None) -> list[str]:
    """What the commands score: all metrics by default, less BERTScore (with a warning) when
    its packages are missing; metrics the user names are all required."""
    chosen = resolve_metrics(names)
    if names is None and not bertscore_installed():
        chosen.remove("bertscore_f1")
        warn("bert-score/torch not installed; skipping bertscore_f1 "
             "(pip install 'deescalwild[bertscore]')")
    return chosen


def _lower_tokens(text: str) -> list[str]:
    return [t.lower() for t in tokenize_13a(text)]


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct(text: str, n: int) -> float:
    """Distinct n-grams / n-grams over the lower-cased 13a tokens of one text (0.0: none)."""
    grams = _ngrams(_lower_tokens(text), n)
    return len(set(grams)) / len(grams) if grams else 0.0


def corpus_distinct(predictions: Sequence[str], n: int) -> float:
    """Distinct n-grams over ALL predictions / all their n-grams (n-grams never span two
    predictions). Per-reply distinct is ~1 for any short reply; this exposes a responder that
    says the same few things every time (a constant reply scores ~0). 0.0 when no n-grams."""
    if n < 1:
        raise DeescalwildError(f"distinct n-grams need n >= 1, not {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in predictions:
        grams = _ngrams(_lower_tokens(text), n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def length_ratio(reference: str, prediction: str) -> float:
    """Prediction 13a tokens / reference 13a tokens; the denominator is at least 1, so an empty
    reference gives the prediction's token count (0.0 when both are empty), never inf/NaN."""
    return len(tokenize_13a(prediction)) / max(1, len(tokenize_13a(reference)))


def _check_inputs(references: Sequence[str], predictions: Sequence[str]) -> None:
    if len(references) != len(predictions):
        raise DeescalwildError(f"{len(references)} references but {len(predictions)} "
                               "predictions; score pairs of one reference and one prediction")
    for what, texts in (("reference", references), ("prediction", predictions)):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DeescalwildError(f"{what} {i} is {type(t).__name__}, not a string")


class Scorer:
    """Scores (reference, prediction) pairs on the chosen metrics.

    Heavy objects (ROUGE scorer, WordNet, the BERTScore model) load once, on first use or at
    `check()`, and are reused for every pair."""

    def __init__(self, metrics: Sequence[str] | str | None = None, *,
                 bertscore_model: str | None = None, bertscore_layer: int | None = None,
                 device: str | None = None, batch_size: int = 64) -> None:
        self.metrics: list[str] = resolve_metrics(metrics)
        if batch_size < 1:
            raise DeescalwildError(f"batch size must be at least 1, not {batch_size}")
        self.bertscore_model, self.bertscore_layer = bertscore_model, bertscore_layer
        self.device, self.batch_size = device, batch_size
        self._loaded: dict[str, Any] = {}

    # --- loading ----------------------------------------------------------------------------
    def check(self) -> None:
        """Load what each chosen metric needs now (WordNet, the BERTScore model, ...), so a
        long run fails before it starts; DeescalwildError when one cannot work here."""
        for name in self.metrics:
            self._get(name)

    def _get(self, name: str) -> Any:
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def _load(self, name: str) -> Any:
        try:
            if name == "rouge_l":
                from rouge_score.rouge_scorer import RougeScorer

                return RougeScorer(["rougeL"], use_stemmer=False)
            if name == "meteor":
                from deescalwild.bench.meteor import MeteorScorer

                return MeteorScorer()
            if name == "sacrebleu":
                from sacrebleu.metrics import BLEU

                # what sacrebleu.sentence_bleu builds per call, built once
                return BLEU(lowercase=False, tokenize=BLEU.TOKENIZER_DEFAULT, force=False,
                            smooth_method="exp", smooth_value=None, effective_order=True)
            if name == "chrf":
                from sacrebleu.metrics import CHRF

                # sacrebleu.sentence_chrf's defaults
                return CHRF(char_order=CHRF.CHAR_ORDER, word_order=CHRF.WORD_ORDER,
                            beta=CHRF.BETA, whitespace=False, eps_smoothing=False)
            if name in ("bleu4", "length_ratio", "distinct_1", "distinct_2"):
                from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a  # noqa: F401
        except ImportError as e:
            raise DeescalwildError(f"metric {name} needs {e.name or e}; install the extra: "
                                   "pip install 'deescalwild[metrics]'") from e
        if name == "bertscore_f1":
            from deescalwild.bench.bertscore import BertScoreModel

            return BertScoreModel(self.bertscore_model, self.bertscore_layer,
                                  device=self.device, batch_size=self.batch_size)
        return None

    # --- scoring ----------------------------------------------------------------------------
    def score_metric(self, name: str, references: Sequence[str],
                     predictions: Sequence[str]) -> list[float]:
        """One metric's value for each pair, in input order, as plain floats."""
        if name not in ALL_METRICS:
            raise DeescalwildError(f"unknown metric {name!r}; valid: " + ", ".join(ALL_METRICS))
        _check_inputs(references, predictions)
        pairs = list(zip(references, predictions))
        impl = self._get(name)
        if name == "rouge_l":
            return [100.0 * float(impl.score(r, p)["rougeL"].fmeasure) for r, p in pairs]
        if name == "bleu4":
            return [bleu4(r, p) for r, p in pairs]
        if name == "meteor":
            return [impl.score(r, p) for r, p in pairs]
        if name == "bertscore_f1":
            return impl.f1(list(references), list(predictions))
        if name in ("sacrebleu", "chrf"):
            return [float(impl.sentence_score(p, [r]).score) for r, p in pairs]
        if name == "length_ratio":
            return [length_ratio(r, p) for r, p in pairs]
        if name in ("distinct_1", "distinct_2"):
            n = int(name[-1])
            return [distinct(p, n) for _, p in pairs]
        if name == "empty":
            return [0.0 if p.strip() else 1.0 for _, p in pairs]
        raise AssertionError(f"metric {name} has no implementation")  # a new key, not wired

    def score_pairs(self, references: Sequence[str], predictions: Sequence[str],
                    progress: Callable[[int, int], None] | None = None
                    ) -> list[dict[str, float]]:
        """{metric: value} for each pair, in input order; `progress(done, total)` per chunk."""
        _check_inputs(references, predictions)
        self.check()
        total = len(references)
        rows: list[dict[str, float]] = [{} for _ in range(total)]
        for start in range(0, total, _CHUNK):
            refs = references[start:start + _CHUNK]
            preds = predictions[start:start + _CHUNK]
            for name in self.metrics:
                for i, value in enumerate(self.score_metric(name, refs, preds)):
                    rows[start + i][name] = value
            if progress is not None:
                progress(min(start + _CHUNK, total), total)
        return rows

    # --- provenance -------------------------------------------------------------------------
    def settings(self) -> dict[str, dict[str, Any]]:
        """Per metric: implementation, tokenizer, parameters, scale and library versions;
        everything that determines the values (loads the metrics to know it)."""
        from deescalwild.provenance import versions

        out: dict[str, dict[str, Any]] = {}
        for name in self.metrics:
            impl = self._get(name)
            if name == "bertscore_f1":
                out[name] = impl.settings()
                continue
            s = dict(_SETTINGS[name])
            if name == "meteor":
                s["wordnet"] = impl.source
            s["scale"] = SCALES[name]
            s["versions"] = versions(*_LIBRARIES[name])
            out[name] = s
        return out


_TOK_13A = "sacrebleu Tokenizer13a (mteval-13a), split on whitespace"
_SETTINGS: dict[str, dict[str, Any]] = {
    "rouge_l": {"implementation": "rouge_score.rouge_scorer.RougeScorer(['rougeL'], "
                                  "use_stemmer=False).score(reference, prediction).fmeasure x100",
                "tokenizer": "rouge_score default (lower-case, [a-z0-9]+ runs)"},
    "bleu4": {"implementation": "deescalwild.bench.bleu: HF evaluate 'bleu' (tensorflow/nmt "
                                "compute_bleu) for one prediction and one reference, x100",
              "tokenizer": _TOK_13A,
              "parameters": {"max_order": 4, "smooth": "add-one on every order (Lin & Och 2004)"},
              "empty_text": "0.0 when the prediction or the reference has no tokens"},
    "meteor": {"implementation": "nltk.translate.meteor_score.single_meteor_score x100",
               "tokenizer": "nltk.word_tokenize(text, preserve_line=True): NLTK's word "
                            "tokenizer on the whole text, no punkt sentence splitting",
               "parameters": {"alpha": 0.9, "beta": 3.0, "gamma": 0.5, "stemmer": "Porter",
                              "preprocess": "str.lower"}},
    "sacrebleu": {"implementation": "sacrebleu.sentence_bleu(prediction, [reference]).score",
                  "tokenizer": "13a",
                  "parameters": {"smooth_method": "exp", "effective_order": True}},
    "chrf": {"implementation": "sacrebleu.sentence_chrf(prediction, [reference]).score",
             "parameters": {"char_order": 6, "word_order": 0, "beta": 2}},
    "length_ratio": {"implementation": "prediction tokens / max(1, reference tokens)",
                     "tokenizer": _TOK_13A},
    "distinct_1": {"implementation": "distinct unigrams / unigrams of the prediction "
                                     "(0.0 when none)", "tokenizer": _TOK_13A + ", lower-cased"},
    "distinct_2": {"implementation": "distinct bigrams / bigrams of the prediction "
                                     "(0.0 when none)", "tokenizer": _TOK_13A + ", lower-cased"},
    "empty": {"implementation": "1.0 when the prediction is empty or whitespace, else 0.0"},
}
_LIBRARIES: dict[str, tuple[str, ...]] = {
    "rouge_l": ("rouge-score",), "bleu4": ("sacrebleu",), "meteor": ("nltk", "wn"),
    "sacrebleu": ("sacrebleu",), "chrf": ("sacrebleu",), "length_ratio": ("sacrebleu",),
    "distinct_1": ("sacrebleu",), "distinct_2": ("sacrebleu",), "empty": (),
}
