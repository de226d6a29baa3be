"""`export gguf`: a full Hugging Face model folder -> one GGUF file for llama.cpp on the edge.

We do not re-implement llama.cpp's conversion: its own `convert_hf_to_gguf.py` (with its
`conversion/` package and the `gguf-py` of the same commit) writes the file, and its own
quantizer (`llama_model_quantize` through llama-cpp-python's ctypes binding) shrinks it. Both
come from the llama.cpp that the installed llama-cpp-python was built from, so the file is one
that this llama-cpp-python loads.

The converter is not in llama-cpp-python's wheel, only in its sdist. `find_converter` looks, in
order: the `converter` argument, `$LLAMA_CPP_CONVERT`, a source checkout beside the installed
`llama_cpp` package (editable installs), the deescalwild cache, and finally downloads the sdist
of the installed version with pip (so the user's index settings apply) and keeps only the
converter's files in the cache.

The converter runs in a subprocess through a small wrapper: it imports its own `gguf` (which
must not meet the `gguf` package already imported here), its `conversion` package has a
generic top-level name, it calls `sys.exit` and configures logging, and a subprocess frees
its memory when done. The wrapper is also where `pre_tokenizer` replaces the converter's
pre-tokenizer detection (`TextModel.get_vocab_base_pre`), which only knows published
tokenizers by a hash of their output and so refuses the BPE tokenizers our tiny models train.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from deescalwild.errors import DeescalwildError
from deescalwild.home import cache_dir
from deescalwild.responders.gguf import redirect_c_output

__all__ = ["QUANTS", "export_gguf", "find_converter"]

# quant name -> llama_ftype of the quantizer (None: written by the converter itself)
QUANTS: dict[str, int | None] = {"q4_k_m": 15, "q8_0": 7, "f16": None, "f32": None}
CONVERTER_ENV = "LLAMA_CPP_CONVERT"
_SCRIPT = "convert_hf_to_gguf.py"
_KEEP = (_SCRIPT, "conversion/", "gguf-py/", "LICENSE")  # what the cache keeps of the sdist
_NOT_RECOGNISED = "BPE pre-tokenizer was not recognized"

# Runs in the subprocess: argv = [wrapper, converter, pre_tokenizer or "", converter args...].
_WRAPPER = r"""
import os, runpy, sys
conv, pre = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.abspath(conv))
sys.path[:0] = [root, os.path.join(root, "gguf-py")]  # its own gguf, not the installed one
if pre:
    import conversion.base as base
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [conv, *sys.argv[3:]]
runpy.run_path(conv, run_name="__main__")
"""


def export_gguf(model_dir: Path, out: Path, quant: str = "q4_k_m",
                pre_tokenizer: str | None = None, converter: Path | None = None) -> dict[str, Any]:
    """Convert `model_dir` (config.json, safetensors, tokenizer with chat template) to the GGUF
    `out`, quantized to `quant`. `out` appears whole or not at all (temporary files beside it,
    then a rename). Returns facts for the run card: quant, path, bytes, seconds, converter."""
    t0 = time.perf_counter()
    quant = quant.lower()
    if quant not in QUANTS:
        raise DeescalwildError(f"export gguf: unknown quant {quant!r}; choose one of "
                               f"{', '.join(QUANTS)}")
    model_dir, out = Path(model_dir).expanduser(), Path(out).expanduser()
    _check_model_dir(model_dir)
    script, source = find_converter(converter)
    if pre_tokenizer is None and _is_tiny(model_dir):
        pre_tokenizer = "gpt-2"  # our tiny models use GPT-2's byte-level regex
    if pre_tokenizer:
        known = _known_pre_tokenizers(script)
        if known and pre_tokenizer not in known:
            raise DeescalwildError(f"export gguf: unknown pre-tokenizer {pre_tokenizer!r}; "
                                   f"llama.cpp knows e.g. {', '.join(sorted(known)[:12])}, ...")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    mid = out.parent / f".{out.name}.{os.getpid()}.convert.tmp"
    try:
        if QUANTS[quant] is None:
            _convert(script, model_dir, tmp, quant, pre_tokenizer)
        else:  # "auto": bf16 weights stay bf16, others become f16, then the quantizer
            _convert(script, model_dir, mid, "auto", pre_tokenizer)
            _quantize(mid, tmp, QUANTS[quant] or 0)
        os.replace(tmp, out)
    finally:
        for p in (tmp, mid):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return {"quant": quant, "path": str(out), "size_bytes": out.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 2), "pre_tokenizer": pre_tokenizer,
            "converter": {"path": str(script), "source": source,
                          "llama_cpp_python": _llama_cpp_version(),
                          "sha256": hashlib.sha256(script.read_bytes()).hexdigest()[:16]}}


# --- inputs ---------------------------------------------------------------------------------
def _check_model_dir(model_dir: Path) -> None:
    """Fail before the (slow) converter on what it would fail on late or silently: no config,
    no weights, no tokenizer, no chat template (the `gguf:` responder needs the template)."""
    if not (model_dir / "config.json").is_file():
        raise DeescalwildError(f"export gguf: {model_dir} is not a model folder (no config.json); "
                               "give a merged model (`export merge`), not an adapter")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        raise DeescalwildError(f"export gguf: {model_dir} has no weights (*.safetensors)")
    if not any((model_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
        raise DeescalwildError(f"export gguf: {model_dir} has no tokenizer (tokenizer.json or "
                               "tokenizer.model)")
    if not _has_chat_template(model_dir):
        raise DeescalwildError(f"export gguf: {model_dir} has no chat template "
                               "(chat_template.jinja or tokenizer_config.json's chat_template)")


def _has_chat_template(model_dir: Path) -> bool:
    if any((model_dir / n).is_file() for n in ("chat_template.jinja", "chat_template.json")):
        return True
    try:
        cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(cfg.get("chat_template"))


def _is_tiny(model_dir: Path) -> bool:
    """A model made by `model init-tiny` (its config.json carries a `deescalwild_tiny` entry)."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(cfg.get("deescalwild_tiny"))


def _known_pre_tokenizers(script: Path) -> set[str]:
    """The pre-tokenizer names the converter can write (from its own detection table), so a
    typo fails here instead of in llama.cpp when the file is loaded."""
    base = script.parent / "conversion" / "base.py"
    src = base.read_text(encoding="utf-8") if base.is_file() else script.read_text("utf-8")
    return set(re.findall(r'^\s+res = "([\w.-]+)"', src, flags=re.M))


# --- the converter --------------------------------------------------------------------------
def _llama_cpp_version() -> str | None:
    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return None


def find_converter(converter: Path | None = None) -> tuple[Path, str]:
    """(path of `convert_hf_to_gguf.py`, where it was found). `converter` and
    `$LLAMA_CPP_CONVERT` may name the script or a llama.cpp folder holding it."""
    for given, source in ((converter, "argument"), (os.environ.get(CONVERTER_ENV), "env")):
        if given:
            path = Path(given).expanduser()
            script = path / _SCRIPT if path.is_dir() else path
            if not script.is_file():
                where = "--converter" if source == "argument" else f"${CONVERTER_ENV}"
                raise DeescalwildError(f"export gguf: {where} {given!r} is not {_SCRIPT} nor a "
                                       "llama.cpp folder holding it")
            return script, source
    ver = _llama_cpp_version()
    if ver is None:
        raise DeescalwildError("export gguf needs llama-cpp-python: pip install "
                               "'deescalwild[gguf]'")
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.origin:  # an editable install from a source checkout
        pkg = Path(spec.origin).resolve().parent
        for cand in (pkg / _SCRIPT, pkg.parent / "vendor" / "llama.cpp" / _SCRIPT):
            if cand.is_file():
                return cand, "package"
    cached = cache_dir("llama.cpp-converter") / ver / _SCRIPT
    if cached.is_file():
        return cached, "cache"
    return _download_converter(ver, cached.parent), "download"


def _download_converter(ver: str, dest: Path) -> Path:
    """Fetch the llama-cpp-python sdist of the installed version with pip and keep only the
    converter, its `conversion/` package and its `gguf-py` in `dest` (moved in whole)."""
    with tempfile.TemporaryDirectory(prefix="deescalwild-sdist-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--quiet", f"llama-cpp-python=={ver}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise DeescalwildError(
                f"export gguf: cannot download the llama-cpp-python {ver} sdist for llama.cpp's "
                f"converter ({_last_line(done.stderr) or 'no sdist'}); give --converter PATH or "
                f"set {CONVERTER_ENV}")
        staging = Path(tmp) / "converter"
        with tarfile.open(sdists[0]) as tar:
            members = []
            for m in tar.getmembers():
                rel = m.name.split("/vendor/llama.cpp/", 1)
                if len(rel) == 2 and rel[1].startswith(_KEEP) and (m.isfile() or m.isdir()):
                    m.name = rel[1]
                    members.append(m)
            if not any(m.name == _SCRIPT for m in members):
                raise DeescalwildError(f"export gguf: the llama-cpp-python {ver} sdist has no "
                                       f"vendor/llama.cpp/{_SCRIPT}; give --converter PATH")
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=members, **kwargs)  # members filtered above
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging, dest)
        except OSError:  # another process filled the cache first
            if not (dest / _SCRIPT).is_file():
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(staging, dest)
    return dest / _SCRIPT


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return re.sub(r"^(ERROR|WARNING|INFO):[\w.-]+:", "", line).strip()


def _convert(script: Path, model_dir: Path, out: Path, outtype: str,
             pre_tokenizer: str | None) -> None:
    cmd = [sys.executable, "-c", _WRAPPER, str(script), pre_tokenizer or "", str(model_dir),
           "--outfile", str(out), "--outtype", outtype]
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    env.pop("NO_LOCAL_GGUF", None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode == 0 and out.is_file():
        return
    if _NOT_RECOGNISED in done.stderr:
        raise DeescalwildError(
            f"export gguf: llama.cpp's converter does not recognise the tokenizer of "
            f"{model_dir}; name its pre-tokenizer with --pre-tokenizer NAME (e.g. gpt-2 for a "
            "byte-level BPE trained from scratch, llama-bpe, qwen2)")
    raise DeescalwildError(f"export gguf: llama.cpp's converter failed on {model_dir}: "
                           f"{_last_line(done.stderr) or f'exit code {done.returncode}'}")


def _quantize(src: Path, dst: Path, ftype: int) -> None:
    """llama.cpp's own quantizer (the `llama-quantize` tool's function) in this process. Its
    log (a line per tensor, fallback warnings for small rows) is kept out of the terminal and
    only its last line is shown when it fails."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    with tempfile.TemporaryFile(mode="w+b") as log, redirect_c_output(log.fileno()):
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                            ctypes.byref(params))
        log.seek(0)
        text = log.read().decode("utf-8", errors="replace")
    if rc != 0 or not dst.is_file():
        raise DeescalwildError(f"export gguf: llama.cpp's quantizer failed on {src.name}: "
                               f"{_last_line(text) or f'code {rc}'}")
