"""`hf:` — a local transformers chat model (optionally with a PEFT/LoRA adapter) as the civilian.

This is the backend the paper's fine-tuned models run on, so its defaults are the paper's
decoding settings (temperature 0.6, top-p 0.9, repetition penalty 1.05, 128 new tokens) and every
knob that changes a reply is an option recorded in `settings()`. Loading is lazy (first request,
or `check()`), so a fully cached resume never loads a model; a missing model is still reported at
construction, before any work, without the hub's slow retries when offline.

torch / transformers / peft are imported inside the class: `deescalwild --help` must not pay for
them.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import re
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from deescalwild.core import Reply
from deescalwild.errors import DeescalwildError
from deescalwild.provenance import versions
from deescalwild.responders.base import (
    Options,
    Request,
    Responder,
    ResponderError,
    Timer,
    stripped,
)
from deescalwild.responders.prompt import chat_messages, template_takes_system

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class HFOptions(Options):
    adapter: Path | None = Field(None, description="PEFT/LoRA adapter folder applied on top of "
                                 "the model (a fine-tuning run folder)")
    load_in_4bit: bool | Literal["auto"] = Field(
        "auto", description="NF4 4-bit weights via bitsandbytes; auto = on when CUDA and "
        "bitsandbytes are available")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="weight/compute dtype; auto = bfloat16 on CUDA (float16 if "
        "unsupported), float32 on CPU")
    device: str = Field("auto", description="torch device: auto (cuda if available), cpu, "
                        "cuda, cuda:1, ...")
    temperature: float = Field(0.6, ge=0, description="sampling temperature; 0 = greedy")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling mass")
    top_k: int = Field(0, ge=0, description="top-k sampling cut; 0 = off (the paper sets only "
                       "temperature and top_p)")
    repetition_penalty: float = Field(1.05, gt=0, description="penalty on repeated tokens "
                                      "(1 = off)")
    max_new_tokens: int = Field(128, ge=1, description="most tokens generated per reply")
    min_new_tokens: int = Field(0, ge=0, description="end-of-turn is forbidden before this many "
                                "tokens (0 = off)")
    do_sample: bool = Field(True, description="sample; false (or temperature 0) = greedy")
    seed: int = Field(0, description="sampling seed; each batch seeds torch with it plus a hash "
                      "of its first request id (a request's own seed replaces it)")
    batch_size: int = Field(8, ge=1, description="requests generated together on the device")
    max_input_tokens: int = Field(3072, ge=16, description="longer prompts lose their oldest "
                                  "messages (whole messages; system text and last turn kept)")
    system_role: bool | Literal["auto"] = Field(
        "auto", description="send a system message; false folds it into the first user turn; "
        "auto = whether the chat template accepts one (Gemma's does not)")


@dataclass(slots=True)
class _Prompt:
    """One request rendered through the chat template, after trimming."""

    text: str
    n_tokens: int
    dropped: int  # history messages left out to fit max_input_tokens


class HFResponder(Responder):
    """Batched generation with left padding. A batch's replies all carry the batch's wall time as
    `latency_s` (and `first_token_s`): that is how long each of those requests waited. `respond`
    alone streams, so its `first_token_s` is the real time to the first generated token."""

    prefix = "hf"
    description = ("local transformers chat model (+ optional PEFT adapter), e.g. "
                   "hf:Qwen/Qwen2.5-3B-Instruct?adapter=runs/qwen or hf:runs/qwen")
    Options = HFOptions
    can_stream = True
    deterministic = False  # sampling replies depend on the batch a request lands in

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None) -> None:
        super().__init__(arg, options, spec=spec)
        self.model_ref, self.adapter_dir, self.tokenizer_ref = resolve_model(
            arg, self.options.adapter)
        self.model: Any = None
        self.tokenizer: Any = None
        self._system_role: bool | None = None
        self.trimmed_requests = 0
        self.trimmed_messages = 0

    # --- loading --------------------------------------------------------------------------
    def _device(self) -> str:
        import torch

        if self.options.device != "auto":
            return self.options.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _dtype_name(self) -> str:
        import torch

        if self.options.dtype != "auto":
            return self.options.dtype
        if self._device().startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"

    def _four_bit(self) -> bool:
        cuda = self._device().startswith("cuda")
        have_bnb = importlib.util.find_spec("bitsandbytes") is not None
        if self.options.load_in_4bit == "auto":
            return cuda and have_bnb
        if self.options.load_in_4bit and not (cuda and have_bnb):
            raise DeescalwildError("hf: load_in_4bit=true needs a CUDA device and the "
                                   "bitsandbytes package; use load_in_4bit=false on CPU")
        return bool(self.options.load_in_4bit)

    def check(self) -> None:
        self._load()

    def _load(self) -> None:
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device, dtype = self._device(), getattr(torch, self._dtype_name())
        kwargs: dict[str, Any] = {"dtype": dtype}
        if self._four_bit():
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16)
            kwargs["device_map"] = {"": device}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_ref)
            if not getattr(tokenizer, "chat_template", None):
                raise DeescalwildError(f"hf: the tokenizer of '{self.arg}' has no chat template; "
                                       "use an instruct/chat model (or add chat_template to its "
                                       "tokenizer_config.json)")
            model = AutoModelForCausalLM.from_pretrained(self.model_ref, **kwargs)
        except (OSError, ValueError, RuntimeError, ImportError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DeescalwildError(f"hf: cannot load model '{self.arg}': {first}") from e
        if "device_map" not in kwargs:
            model.to(device)
        if self.adapter_dir is not None:
            model = _apply_adapter(model, self.adapter_dir, quantized="device_map" in kwargs)
        model.eval()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer = model, tokenizer
        self._system_role = (template_takes_system(tokenizer) if self.options.system_role == "auto"
                             else bool(self.options.system_role))

    # --- prompts --------------------------------------------------------------------------
    def render(self, request: Request) -> _Prompt:
        """The prompt text for a request: chat template with generation prompt, the oldest
        history messages dropped (whole) while it exceeds `max_input_tokens`. Raises the
        template's error (e.g. roles that do not alternate)."""
        self._load()
        history = request.history
        full = self._render_from(request, 0)
        if full.n_tokens <= self.options.max_input_tokens or len(history) <= 1:
            return full
        lo, hi = 1, len(history) - 1  # smallest number of dropped messages that fits
        best: _Prompt | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            cand = self._render_from(request, mid)
            if cand.n_tokens <= self.options.max_input_tokens:
                best, hi = cand, mid - 1
            else:
                lo = mid + 1
        if best is None:  # even the last message alone is too long: send it whole anyway
            best = self._render_from(request, len(history) - 1)
        self.trimmed_requests += 1
        self.trimmed_messages += best.dropped
        return best

    def _render_from(self, request: Request, drop: int) -> _Prompt:
        # a history must open on the officer side (`chat_messages` drops a leading civilian
        # line), so a cut that would leave one drops it too, and says so
        while drop < len(request.history) - 1 and request.history[drop]["role"] == "assistant":
            drop += 1
        req = Request(context=request.context, history=request.history[drop:], id=request.id,
                      seed=request.seed, extra=request.extra)
        messages = chat_messages(req, system_role=bool(self._system_role))
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return _Prompt(text=text, n_tokens=n, dropped=drop)

    # --- generation -----------------------------------------------------------------------
    def _sampling(self) -> bool:
        return self.options.do_sample and self.options.temperature > 0

    def _generation_config(self) -> Any:
        """Every decoding value set explicitly, so the model's own generation_config (Qwen's
        top_k=20, ...) cannot change replies behind the recorded settings."""
        from transformers import GenerationConfig

        o = self.options
        model_gc = self.model.generation_config
        eos = model_gc.eos_token_id if model_gc.eos_token_id is not None \
            else self.tokenizer.eos_token_id
        values: dict[str, Any] = dict(
            max_new_tokens=o.max_new_tokens, min_new_tokens=o.min_new_tokens,
            repetition_penalty=o.repetition_penalty, do_sample=self._sampling(),
            eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id)
        if self._sampling():
            values.update(temperature=o.temperature, top_p=o.top_p, top_k=o.top_k)
        else:  # neutral values: no "sampling flags set while greedy" warnings
            values.update(temperature=1.0, top_p=1.0, top_k=50)
        return GenerationConfig(**values)

    def _seed(self, first: Request) -> None:
        import torch

        base = first.seed if first.seed is not None else self.options.seed
        torch.manual_seed(base + zlib.crc32(first.id.encode("utf-8")))

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _finish(self, new_ids: Sequence[int]) -> tuple[str, int]:
        """Text and token count of one generated row: cut at the first end-of-turn token (what
        follows is padding), special tokens skipped, whitespace stripped."""
        eos = self._eos_ids()
        ids = list(new_ids)
        for i, t in enumerate(ids):
            if t in eos:
                ids = ids[:i]
                break
        pad = self.tokenizer.pad_token_id
        while ids and ids[-1] == pad:
            ids.pop()
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids)

    def respond_batch(self, requests: Sequence[Request]) -> list[Reply]:
        self._load()
        replies: list[Reply | None] = [None] * len(requests)
        ready: list[tuple[int, Request, _Prompt]] = []
        for i, req in enumerate(requests):
            try:
                ready.append((i, req, self.render(req)))
            except Exception as e:  # the template refused this conversation
                replies[i] = Reply(text="", latency_s=0.0, first_token_s=0.0,
                                   error=f"chat template: {e}")
        size = self.options.batch_size
        for start in range(0, len(ready), size):
            chunk = ready[start:start + size]
            for (i, _, _), reply in zip(chunk, self._generate_split(chunk), strict=True):
                replies[i] = reply
        return [r for r in replies if r is not None]

    def _generate_split(self, chunk: list[tuple[int, Request, _Prompt]]) -> list[Reply]:
        """Generate a batch; on CUDA out-of-memory retry it in halves before giving up."""
        import torch

        try:
            return self._generate(chunk)
        except torch.OutOfMemoryError as e:
            _free_cuda()
            if len(chunk) == 1:
                return [Reply(text="", error=f"CUDA out of memory: {str(e).splitlines()[0]}")]
            mid = len(chunk) // 2
            log.warning("hf: out of memory on a batch of %d; retrying in halves", len(chunk))
            return self._generate_split(chunk[:mid]) + self._generate_split(chunk[mid:])
        except Exception as e:
            return [Reply(text="", error=f"generation failed: {type(e).__name__}: {e}")
                    for _ in chunk]

    def _generate(self, chunk: list[tuple[int, Request, _Prompt]]) -> list[Reply]:
        import torch

        timer = Timer()
        enc = self.tokenizer([p.text for _, _, p in chunk], add_special_tokens=False,
                             padding=True, return_tensors="pt").to(self.model.device)
        self._seed(chunk[0][1])
        with torch.inference_mode():
            out = self.model.generate(input_ids=enc["input_ids"],
                                      attention_mask=enc["attention_mask"],
                                      generation_config=self._generation_config())
        latency = timer.elapsed()
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        replies = []
        for row in new:
            text, n = self._finish(row)
            replies.append(Reply(text=text if text else "", latency_s=latency,
                                 first_token_s=latency, tokens=n,
                                 error=None if text else "empty reply"))
        return replies

    # --- streaming ------------------------------------------------------------------------
    def respond(self, request: Request) -> Reply:
        """One request, streamed, so `first_token_s` is the real time to the first token."""
        import torch

        self._load()
        timer = Timer()
        try:
            prompt = self.render(request)
        except Exception as e:
            return timer.reply("", error=f"chat template: {e}")
        result: dict[str, Any] = {}
        try:
            text = "".join(self._stream(request, prompt, timer, result))
        except torch.OutOfMemoryError as e:
            _free_cuda()
            return timer.reply("", error=f"CUDA out of memory: {str(e).splitlines()[0]}")
        except Exception as e:
            return timer.reply("", error=f"generation failed: {type(e).__name__}: {e}")
        tokens = result.get("tokens")
        return timer.reply(text, tokens=tokens, error=None if text else "empty reply")

    def stream(self, request: Request) -> Iterator[str]:
        """Text pieces as generated; joined they equal `respond(request).text` (stripped)."""
        self._load()
        try:
            prompt = self.render(request)
        except Exception as e:
            raise ResponderError(f"chat template: {e}") from e
        empty = True
        for piece in self._stream(request, prompt, Timer(), {}):
            empty = False
            yield piece
        if empty:
            raise ResponderError("empty reply")

    def _stream(self, request: Request, prompt: _Prompt, timer: Timer,
                result: dict[str, Any]) -> Iterator[str]:
        """Generation in a thread feeding a `TextIteratorStreamer`. Pieces come out stripped as
        a whole (leading blanks dropped, trailing ones held back until more text follows).
        Closing the iterator early stops generation. `result["tokens"]` is set at the end."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancel = threading.Event()

        class _Streamer(TextIteratorStreamer):
            def put(self, value: Any) -> None:
                if not self.next_tokens_are_prompt:  # first call is the prompt itself
                    timer.first()
                super().put(value)

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        streamer = _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        enc = self.tokenizer([prompt.text], add_special_tokens=False,
                             return_tensors="pt").to(self.model.device)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                with torch.inference_mode():
                    outcome["out"] = self.model.generate(
                        input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                        generation_config=self._generation_config(), streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancel()]))
            except BaseException as e:  # handed to the consumer below
                outcome["error"] = e
                streamer.end()

        self._seed(request)
        thread = threading.Thread(target=work, name="hf-generate", daemon=True)
        thread.start()
        try:
            yield from stripped(streamer)
        finally:
            cancel.set()
            thread.join()
        if "error" in outcome:
            raise outcome["error"]
        result["tokens"] = self._finish(outcome["out"][0, enc["input_ids"].shape[1]:].tolist())[1]

    # --- bookkeeping ----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        o = self.options
        s = super().settings()
        s.update(
            model=self.model_ref, adapter=str(self.adapter_dir) if self.adapter_dir else None,
            tokenizer=self.tokenizer_ref, device=self._device(), dtype=self._dtype_name(),
            load_in_4bit=self._four_bit(),
            system_role=self._system_role if self._system_role is not None else o.system_role,
            greedy=not self._sampling(),
            trimmed={"requests": self.trimmed_requests, "messages": self.trimmed_messages},
            versions=versions("torch", "transformers", "peft", "bitsandbytes"))
        return s

    def close(self) -> None:
        if self.model is None:
            return
        self.model = self.tokenizer = None
        gc.collect()
        _free_cuda()


# --- helpers ------------------------------------------------------------------------------
def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _offline() -> bool:
    truthy = {"1", "ON", "YES", "TRUE"}
    return any(os.environ.get(k, "").upper() in truthy
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cannot_load(arg: str) -> DeescalwildError:
    why = ("not a local folder with config.json and not in the Hugging Face cache (offline)"
           if _offline() else "not a local folder with config.json, nor a Hugging Face model id")
    return DeescalwildError(f"hf: cannot load model '{arg}': {why}; give a path or download it "
                            "first")


def model_ref(arg: str) -> str:
    """A loadable model reference for `arg`: a local model folder, a cached hub id, or (online)
    any hub id. Decided locally so an offline miss fails at once instead of after retries."""
    path = Path(arg).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        raise _cannot_load(arg)
    if path.exists() or not _HUB_ID.match(arg):
        raise _cannot_load(arg)
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(arg, "config.json"), str) or not _offline():
        return arg
    raise _cannot_load(arg)


def _adapter_base(adapter: Path) -> str:
    """The base model a PEFT adapter folder names (a relative path may be relative to the
    folder the training ran in, or to the adapter itself)."""
    try:
        cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DeescalwildError(f"hf: cannot read {adapter / 'adapter_config.json'}: {e}") from e
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise DeescalwildError(f"hf: {adapter / 'adapter_config.json'} names no "
                               "base_model_name_or_path; give the base as hf:BASE?adapter=DIR")
    if not Path(base).expanduser().exists() and (adapter / base).is_dir():
        return str(adapter / base)
    return base


def is_adapter(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def resolve_model(arg: str, adapter: Path | None) -> tuple[str, Path | None, str]:
    """(model reference, adapter folder or None, tokenizer reference). PATH may itself be an
    adapter folder (a fine-tuning run): its base comes from adapter_config.json. The tokenizer
    comes from the adapter folder when it saved one (fine-tuning may change the template)."""
    arg = arg.strip()
    if not arg:
        raise DeescalwildError("hf: needs a model, e.g. hf:Qwen/Qwen2.5-3B-Instruct, "
                               "hf:PATH or hf:RUN_DIR (a PEFT adapter folder)")
    path = Path(arg).expanduser()
    if path.is_dir() and is_adapter(path):
        if adapter is not None:
            raise DeescalwildError(f"hf: '{arg}' is already a PEFT adapter folder; drop "
                                   "?adapter= or give the base model as PATH")
        base = _adapter_base(path)
        try:
            model = model_ref(base)
        except DeescalwildError as e:
            raise DeescalwildError(f"{e} (the base model named in "
                                   f"{path / 'adapter_config.json'})") from e
        adapter = path
    else:
        model = model_ref(arg)
        if adapter is not None:
            adapter = adapter.expanduser()
            if not (adapter.is_dir() and is_adapter(adapter)):
                raise DeescalwildError(f"hf: adapter '{adapter}' is not a PEFT adapter folder "
                                       "(no adapter_config.json)")
    has_tok = adapter is not None and (adapter / "tokenizer_config.json").is_file()
    return model, adapter, str(adapter) if has_tok and adapter is not None else model


def _apply_adapter(model: Any, adapter: Path, quantized: bool) -> Any:
    """The model with the LoRA adapter applied; merged into the weights when not quantized
    (same outputs, no adapter overhead per token)."""
    try:
        from peft import PeftModel
    except ImportError as e:
        raise DeescalwildError("hf: adapters need the peft package: pip install "
                               "'deescalwild[hf]'") from e
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, RuntimeError) as e:
        raise DeescalwildError(f"hf: cannot apply adapter '{adapter}': "
                               f"{str(e).strip().splitlines()[0]}") from e
    return peft_model if quantized else peft_model.merge_and_unload()
