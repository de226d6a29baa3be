"""`gguf:` — a GGUF model (e.g. from `export gguf`) through llama.cpp (llama-cpp-python), for
the edge: a laptop CPU in a training room, no torch.

Mirrors `hf:`: the paper's decoding defaults, every knob that changes a reply is an option
recorded in `settings()`, the same system prompt (`prompt.chat_messages`) with the same
system-role probe, lazy loading with a missing file reported at construction. The prompt is
rendered by the GGUF's own chat template (`tokenizer.chat_template`, which `export gguf` copies
from the tokenizer), never by a built-in format llama-cpp-python might guess from it.
llama.cpp decodes one sequence at a time here, so a batch is answered request by request; each
reply is streamed so `first_token_s` is the real time to the first token.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import sys
import zlib
from collections.abc import Iterator
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

_TEMPLATE = "chat_template.default"  # llama-cpp-python's name for the GGUF's own template


class GGUFOptions(Options):
    n_ctx: int = Field(4096, ge=0, description="context window in tokens (prompt + reply); "
                       "0 = the model's training context")
    n_threads: int | None = Field(None, ge=1, description="CPU threads; default: all cores "
                                  "(os.cpu_count)")
    n_gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU when llama.cpp "
                              "was built with one; -1 = all")
    temperature: float = Field(0.6, ge=0, description="sampling temperature; 0 = greedy")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling mass")
    top_k: int = Field(0, ge=0, description="top-k sampling cut; 0 = off")
    repeat_penalty: float = Field(1.05, gt=0, description="penalty on tokens repeated within "
                                  "the last 64 (1 = off)")
    max_tokens: int = Field(128, ge=1, description="most tokens generated per reply")
    seed: int = Field(0, description="sampling seed; each request uses it plus a hash of its id "
                      "(a request's own seed replaces it)")
    reuse_prefix: bool = Field(True, description="keep the evaluated prompt prefix the previous "
                               "request shares (faster multi-turn); false re-evaluates every "
                               "prompt from scratch")
    system_role: bool | Literal["auto"] = Field(
        "auto", description="send a system message; false folds it into the first user turn; "
        "auto = whether the GGUF's chat template accepts one (Gemma's does not)")


class GGUFResponder(Responder):
    """One `llama_cpp.Llama` per responder; requests answered one after another."""

    prefix = "gguf"
    description = ("GGUF model through llama.cpp (llama-cpp-python), e.g. "
                   "gguf:runs/qwen/model-q4_k_m.gguf?n_threads=4")
    Options = GGUFOptions
    can_stream = True
    deterministic = True  # sequential: a reply depends on the request and its seed, not a batch

    def __init__(self, arg: str = "", options: Options | None = None, *,
                 spec: str | None = None) -> None:
        super().__init__(arg, options, spec=spec)
        self.path = _gguf_path(arg)
        self.llm: Any = None
        self._formatter: Any = None
        self._system_role: bool | None = None
        self._sha256: str | None = None
        self.trimmed_requests = 0

    # --- loading --------------------------------------------------------------------------
    def _threads(self) -> int:
        return self.options.n_threads or os.cpu_count() or 1

    def check(self) -> None:
        self._load()

    def _load(self) -> None:
        if self.llm is not None:
            return
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as e:
            raise DeescalwildError("gguf: needs llama-cpp-python: pip install "
                                   "'deescalwild[gguf]'") from e
        o = self.options
        try:
            llm = Llama(model_path=str(self.path), n_ctx=o.n_ctx, n_threads=self._threads(),
                        n_threads_batch=self._threads(), n_gpu_layers=o.n_gpu_layers,
                        seed=o.seed, chat_format=_TEMPLATE, verbose=False)
        except (ValueError, RuntimeError, OSError) as e:
            why = _load_error(self.path) or str(e).strip() or type(e).__name__
            raise DeescalwildError(f"gguf: cannot load {self.path}: {why}") from e
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            llm.close()
            raise DeescalwildError(f"gguf: {self.path} has no chat template "
                                   "(tokenizer.chat_template); export it from a model whose "
                                   "tokenizer has one")
        eos, bos = llm.token_eos(), llm.token_bos()  # their texts, as llama-cpp-python's handler
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=_text(llm, eos),
                                              bos_token=_text(llm, bos))
        self.llm = llm
        self._system_role = (template_takes_system(lambda m: self._formatter(messages=m).prompt)
                             if o.system_role == "auto"
                             else bool(o.system_role))

    # --- prompts --------------------------------------------------------------------------
    def messages(self, request: Request) -> list[dict[str, str]]:
        """The chat messages sent for a request: the oldest history messages dropped (whole)
        while the prompt and `max_tokens` exceed the context window. Raises the template's
        error (e.g. roles that do not alternate)."""
        self._load()
        budget = self.llm.n_ctx() - self.options.max_tokens
        history = request.history
        for drop in range(len(history)):
            msgs = chat_messages(Request(request.context, history[drop:], request.id,
                                         request.seed, request.extra), bool(self._system_role))
            prompt = self._formatter(messages=msgs).prompt
            n = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
            if n <= budget or drop == len(history) - 1:
                if drop:
                    self.trimmed_requests += 1
                return msgs
        return chat_messages(request, bool(self._system_role))

    # --- generation -----------------------------------------------------------------------
    def respond(self, request: Request) -> Reply:
        self._load()
        timer = Timer()
        result: dict[str, Any] = {}
        try:
            text = "".join(self._stream(request, timer, result))
        except ResponderError as e:
            return timer.reply("", error=str(e))
        except Exception as e:
            return timer.reply("", error=f"generation failed: {type(e).__name__}: {e}")
        return timer.reply(text, tokens=result.get("tokens"),
                           error=None if text else "empty reply")

    def stream(self, request: Request) -> Iterator[str]:
        """Text pieces as generated; joined they equal `respond(request).text`."""
        self._load()
        empty = True
        try:
            for piece in self._stream(request, Timer(), {}):
                empty = False
                yield piece
        except ResponderError:
            raise
        except Exception as e:
            raise ResponderError(f"generation failed: {type(e).__name__}: {e}") from e
        if empty:
            raise ResponderError("empty reply")

    def _seed(self, request: Request) -> int:
        base = request.seed if request.seed is not None else self.options.seed
        return (base + zlib.crc32(request.id.encode("utf-8"))) & 0x7FFFFFFF

    def _stream(self, request: Request, timer: Timer, result: dict[str, Any]) -> Iterator[str]:
        """llama-cpp-python's streamed chat completion. Pieces come out stripped as a whole
        (leading blanks dropped, trailing ones held back until more text follows), like `hf:`.
        `result["tokens"]` is set at the end: the tokens sampled, less the end-of-turn token."""
        try:
            msgs = self.messages(request)
        except Exception as e:
            raise ResponderError(f"chat template: {e}") from e
        o = self.options
        steps, eos = [0], self.llm.token_eos()

        def count(input_ids: Any, scores: Any) -> Any:
            """Called once per sampled token. Past `max_tokens` it forces the end of the turn:
            llama-cpp-python skips its own max_tokens check while a UTF-8 character is
            incomplete, and a random or badly tuned model can stay there for several tokens."""
            steps[0] += 1
            if steps[0] > o.max_tokens and eos >= 0:
                scores[:] = -float("inf")
                scores[eos] = 0.0
            return scores

        if not o.reuse_prefix:
            self.llm.reset()
        chunks = self.llm.create_chat_completion(
            messages=msgs, stream=True, temperature=o.temperature, top_p=o.top_p, top_k=o.top_k,
            min_p=0.0, typical_p=1.0, repeat_penalty=o.repeat_penalty, max_tokens=o.max_tokens,
            seed=self._seed(request), logits_processor=[count])
        finish: list[str | None] = [None]

        def pieces() -> Iterator[str]:
            for chunk in chunks:
                choice = chunk["choices"][0]
                finish[0] = choice.get("finish_reason") or finish[0]
                piece = choice.get("delta", {}).get("content") or ""
                if piece:
                    timer.first()
                    yield piece

        yield from stripped(pieces())
        ended = finish[0] == "stop" and steps[0] > 0  # on an end-of-turn token, not counted
        result["tokens"] = min(steps[0] - 1 if ended else steps[0], o.max_tokens)

    # --- bookkeeping ----------------------------------------------------------------------
    def file_sha256(self) -> str:
        """The GGUF's sha256 (first 16 hex digits): results name the exact weights, wherever
        the file was copied to. Computed once (about a second per GB)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            with self.path.open("rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            self._sha256 = h.hexdigest()[:16]
        return self._sha256

    def settings(self) -> dict[str, Any]:
        o = self.options
        s = super().settings()
        s.update(path=str(self.path), sha256=self.file_sha256(),
                 bytes=self.path.stat().st_size, n_threads=self._threads(),
                 system_role=self._system_role if self._system_role is not None else o.system_role,
                 greedy=o.temperature == 0, trimmed={"requests": self.trimmed_requests},
                 versions=versions("llama_cpp_python"))
        return s

    def close(self) -> None:
        if self.llm is None:
            return
        llm, self.llm, self._formatter = self.llm, None, None
        close = getattr(llm, "close", None)
        if close is not None:
            close()
        gc.collect()


def _load_error(path: Path) -> str:
    """llama.cpp's own reason for refusing a file (`verbose=False` hides its log, and the
    Python error only says "Failed to load"): one more load attempt, vocabulary only, with the
    log captured at the file-descriptor level."""
    import tempfile

    from llama_cpp import Llama

    with tempfile.TemporaryFile() as log:
        try:
            with redirect_c_output(log.fileno()):
                Llama(model_path=str(path), vocab_only=True, verbose=True).close()
        except Exception:
            pass
        log.seek(0)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    errors = [ln.split("error loading model:", 1)[-1].strip() for ln in lines
              if "error" in ln.lower()]
    return errors[0] if errors else ""


def _text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return llm.detokenize([token], special=True).decode("utf-8", errors="replace")


def _gguf_path(arg: str) -> Path:
    """The GGUF file `arg` names, checked now (exists, starts with the GGUF magic) so a typo
    fails before any work."""
    arg = arg.strip()
    if not arg:
        raise DeescalwildError("gguf: needs a file, e.g. gguf:runs/qwen/model-q4_k_m.gguf")
    path = Path(arg).expanduser()
    if not path.is_file():
        raise DeescalwildError(f"gguf: no such file: {arg} (export one with "
                               "`deescalwild export gguf`)")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise DeescalwildError(f"gguf: {arg} is not a GGUF file")
    return path


@contextlib.contextmanager
def redirect_c_output(fd: int) -> Iterator[None]:
    """Send file descriptors 1 and 2 (where llama.cpp's C code writes) to `fd` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for s in saved:
            os.close(s)
