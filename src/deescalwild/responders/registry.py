"""Spec strings -> responder backends, imported lazily so `--help` never imports torch.

A spec is `NAME[:ARG][?KEY=VALUE&...]`: `retrieval`, `const:I don't know.`,
`hf:Qwen/Qwen2.5-3B-Instruct?adapter=runs/qwen&temperature=0.6`,
`openai:http://127.0.0.1:8080/v1#llama?max_tokens=64`, `gemini:gemini-2.5-flash`. Options are
validated by the backend's pydantic model, so a typo is an error that lists the valid keys.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Options, Responder

# prefix -> "module:Class"; the module is imported only when the backend is chosen
BACKENDS: dict[str, str] = {
    "retrieval": "deescalwild.responders.retrieval:RetrievalResponder",
    "const": "deescalwild.responders.baselines:ConstResponder",
    "random": "deescalwild.responders.baselines:RandomResponder",
    "hf": "deescalwild.responders.hf:HFResponder",
    "openai": "deescalwild.responders.openai_api:OpenAIResponder",
    "gemini": "deescalwild.responders.gemini_api:GeminiResponder",
    "gguf": "deescalwild.responders.gguf:GGUFResponder",
}


class SpecError(DeescalwildError):
    """A responder spec that names no backend, or options the backend does not take."""


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """`NAME[:ARG][?K=V&...]` -> (name, arg, options). `const:` takes its text verbatim (a
    question mark in the text is not an option)."""
    spec = spec.strip()
    cut = min((i for i in (spec.find(":"), spec.find("?")) if i >= 0), default=len(spec))
    name, sep, rest = spec[:cut].strip().lower(), spec[cut:cut + 1], spec[cut + 1:]
    if sep == "?":  # `random?train=/data/a:b.jsonl`: options without an argument
        return name, "", _query(spec, rest)
    if name == "const":
        return name, rest, {}
    arg, sep, query = rest.partition("?")
    return name, arg, (_query(spec, query) if sep else {})


def _query(spec: str, query: str) -> dict[str, str]:
    try:
        return dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True))
    except ValueError as e:
        raise SpecError(f"responder spec {spec!r}: options after '?' must be KEY=VALUE pairs "
                        "joined by '&'") from e


def backend_class(name: str) -> type[Responder]:
    """The class registered for a spec prefix, imported now."""
    target = BACKENDS.get(name)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise SpecError(f"unknown responder {name!r}; known: {known} "
                        "(see `deescalwild responders list`)")
    module, _, cls = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if (e.name or "").startswith("deescalwild"):
            raise  # our own module is missing: a broken install, not a missing extra
        raise SpecError(f"responder {name!r} needs packages that are not installed ({e.name}); "
                        f"install them with: pip install 'deescalwild[{_extra(name)}]'") from e
    return getattr(mod, cls)


def _extra(name: str) -> str:
    return {"hf": "hf", "openai": "api", "gemini": "api", "retrieval": "bench",
            "gguf": "gguf"}.get(name, "bench")


def resolve_spec(spec: str, defaults: Mapping[str, Any] | None = None
                 ) -> tuple[type[Responder], str, Options]:
    """The backend class, argument and validated options a spec names, without building the
    responder (no model is loaded): what the evaluation cache keys on."""
    name, arg, opts = parse_spec(spec)
    cls = backend_class(name)
    fields = cls.Options.model_fields
    merged: dict[str, Any] = {k: v for k, v in (defaults or {}).items()
                              if k in fields and v is not None}
    merged.update(opts)
    try:
        options = cls.Options(**merged)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '?'}: {err['msg']}"
                             for err in e.errors())
        valid = ", ".join(fields) or "none"
        raise SpecError(f"responder spec {spec!r}: {problems} (options: {valid})") from e
    return cls, arg, options


def load_responder(spec: str, defaults: Mapping[str, Any] | None = None) -> Responder:
    """Build the responder a spec names. `defaults` fill options the spec leaves out and the
    backend accepts (e.g. `train` from `eval --train`), so one call serves every backend."""
    cls, arg, options = resolve_spec(spec, defaults)
    return cls(arg, options, spec=spec.strip())


def describe_backends() -> list[dict[str, Any]]:
    """Name, description, options (name, type, default, description) of every backend whose
    packages are installed; others are listed with the extra that provides them."""
    out = []
    for name in BACKENDS:
        try:
            cls = backend_class(name)
        except SpecError as e:
            out.append({"name": name, "available": False, "why": str(e), "options": []})
            continue
        opts = [{"name": k, "type": _type_name(f.annotation),
                 "default": None if f.is_required() else f.default,
                 "description": f.description or ""}
                for k, f in cls.Options.model_fields.items()]
        out.append({"name": name, "available": True, "description": cls.description,
                    "needs_key": cls.needs_key, "can_stream": cls.can_stream, "options": opts})
    return out


def _type_name(t: Any) -> str:
    """`int`, `float | None`, `'auto' | bool` for an option's annotation."""
    import typing

    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in args)
    if t is type(None):
        return "None"
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")
