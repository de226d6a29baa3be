"""`deescalwild eval`: generate (cached), score, aggregate with scenario-clustered CIs, write.

Flow per responder: look every case up in the generation cache; load the backend only if some
are missing; generate those in batches, writing each batch to the cache as it completes (so
Ctrl-C loses at most one batch); then score the replies that are not errors. Errors are counted
and shown, never scored: the paper's code scored "Error: ..." strings as replies.

The output folder (documented in docs/formats.md): `results.json`, `samples.jsonl`,
`leaderboard.md`, `report.html`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from deescalwild.atomic import atomic_write
from deescalwild.bench.cache import GenerationCache, case_key, responder_key
from deescalwild.bench.cases import file_sha256
from deescalwild.core import Case, Reply, read_cases
from deescalwild.errors import DeescalwildError, InputError
from deescalwild.provenance import git_commit, versions

RESULTS_SCHEMA = "deescalwild.results/1"
BASELINES = ("const", "random")
CONST_BASELINE = "const:I don't know."
Progress = Callable[[str], AbstractContextManager[Callable[[int, int], None] | None]]


@dataclass
class EvalOptions:
    metrics: str | Sequence[str] | None = None  # None: all (BERTScore when installed)
    limit: int | None = None
    seed: int = 0
    batch_size: int = 8
    n_boot: int = 1000
    use_cache: bool = True
    baselines: bool = True  # add `const:I don't know.` and `random` unless already there
    bertscore_model: str | None = None
    bertscore_layer: int | None = None


def _no_progress(what: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def load_cases(path: str | Path, limit: int | None = None) -> list[Case]:
    cases = list(read_cases(path))
    if limit:
        cases = cases[:limit]
    if not cases:
        raise InputError(path, None, "no cases (make them with `deescalwild cases`)")
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise InputError(path, None, "duplicate case ids; cases files are made by "
                         "`deescalwild cases` and have unique ids")
    return cases


def generate(spec: str, cases: Sequence[Case], *, defaults: dict[str, Any],
             cache: GenerationCache | None, batch_size: int,
             progress: Progress = _no_progress,
             log: Callable[[str], None] = lambda s: None) -> tuple[list[Reply], list[bool], dict]:
    """Replies for every case (cached ones first), whether each came from the cache, and the
    responder's settings."""
    from deescalwild.responders.base import Request
    from deescalwild.responders.registry import load_responder

    rkey = responder_key(spec, defaults, batch_size)
    ckeys = [case_key(c) for c in cases]
    got = cache.get_many(rkey, ckeys) if cache else {}
    replies: list[Reply | None] = [got.get(k) for k in ckeys]
    from_cache = [r is not None for r in replies]
    todo = [i for i, r in enumerate(replies) if r is None]
    settings = (cache.get_settings(rkey) if cache else None) or {}
    if todo:
        with load_responder(spec, defaults) as responder:
            responder.check()
            settings = responder.settings()
            if cache:
                cache.put_settings(rkey, spec, settings)
            if len(todo) < len(cases):
                log(f"{spec}: {len(cases) - len(todo):,} replies from the cache, "
                    f"{len(todo):,} to generate")
            with progress(f"{spec[:40]}") as bar:
                for start in range(0, len(todo), batch_size):
                    idx = todo[start:start + batch_size]
                    # no per-request seed: the backend's `seed` option (the spec's, else
                    # `--seed` through `defaults`) decides, and is what settings record
                    reqs = [Request.from_case(cases[i]) for i in idx]
                    for r, c in zip(reqs, (cases[i] for i in idx)):
                        r.extra["scenario_id"] = c.scenario_id
                        r.extra["group"] = c.meta.get("group") or c.scenario_id
                    out = responder.respond_batch(reqs)
                    if len(out) != len(reqs):
                        raise DeescalwildError(f"{spec}: backend returned {len(out)} replies "
                                               f"for {len(reqs)} requests")
                    for i, r in zip(idx, out):
                        if r.error is None and not r.text.strip():
                            r.error, r.text = "empty reply", ""
                        replies[i] = r
                    if cache:
                        cache.put_many(rkey, [(ckeys[i], cases[i].id, replies[i]) for i in idx])
                    if bar:
                        bar(start + len(idx), len(todo))
    return [r for r in replies if r is not None], from_cache, settings


def _prefix(spec: str) -> str:
    from deescalwild.responders.registry import parse_spec

    return parse_spec(spec)[0]


def with_baselines(specs: list[str], have_train: bool,
                   log: Callable[[str], None] = lambda s: None) -> list[str]:
    """The calibration baselines always appear: a constant reply, and a random training line
    when there is a training corpus to draw from."""
    out = list(specs)
    prefixes = {_prefix(s) for s in specs}
    if "const" not in prefixes:
        out.append(CONST_BASELINE)
    if "random" not in prefixes:
        if have_train:
            out.append("random")
        else:
            log("note: no --train corpus, so no `random` baseline")
    return out


def _latency(replies: Sequence[Reply]) -> dict[str, float | int | None]:
    from deescalwild.bench.bootstrap import percentiles

    ok = [r for r in replies if r.error is None]
    out = percentiles(r.latency_s for r in ok)
    out["first_token_p50"] = percentiles(r.first_token_s for r in ok)["p50"]
    return out


def evaluate(cases_path: str | Path, specs: Sequence[str], out_dir: str | Path, *,
             train: str | Path | None = None, options: EvalOptions | None = None,
             progress: Progress = _no_progress,
             log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run every responder on the cases, score, and write the results folder. Returns
    results.json's content."""
    from deescalwild.bench.bootstrap import clustered_bootstrap_ci
    from deescalwild.bench.metrics import Scorer, choose_metrics, corpus_distinct
    from deescalwild.bench.report import write_results_views
    from deescalwild.home import cache_dir
    from deescalwild.responders.registry import resolve_spec

    opts = options or EvalOptions()
    t0 = time.perf_counter()
    specs = list(dict.fromkeys(s.strip() for s in specs if s.strip()))
    if not specs:
        raise DeescalwildError("no responder given (--responder SPEC)")
    defaults = {"train": Path(train) if train else None, "seed": opts.seed}
    for spec in specs:  # every spec is valid before anything runs
        resolve_spec(spec, defaults)
    if opts.baselines:
        specs = with_baselines(specs, train is not None, log)
    cases = load_cases(cases_path, opts.limit)
    scorer = Scorer(choose_metrics(opts.metrics, warn=log), bertscore_model=opts.bertscore_model,
                    bertscore_layer=opts.bertscore_layer)
    scorer.check()  # fail before generating anything when WordNet or a model is missing
    train_sha = file_sha256(train) if train else None
    cache = GenerationCache(cache_dir() / "generations.sqlite") if opts.use_cache else None
    leaks = {c.meta.get("leaks") for c in cases} - {None, 0}
    if leaks:
        log(f"warning: the cases come from a split with {max(leaks)} near-duplicate pair(s) "
            "across splits (e.g. the paper split): a test video's re-upload can be in the "
            "training index; `split --strategy clean` has none")
    clusters = [c.scenario_id for c in cases]
    out = Path(out_dir)
    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "versions": versions("numpy", "nltk", "rouge-score", "sacrebleu", "bert-score", "bm25s",
                             "torch", "transformers", "peft", "openai", "google-genai"),
        "seed": opts.seed,
        "cases": {"path": str(cases_path), "sha256": file_sha256(cases_path), "n": len(cases),
                  "scenarios": len(set(clusters)),
                  "split": sorted({str(c.meta.get("split")) for c in cases}),
                  "limit": opts.limit},
        "train": {"path": str(train), "sha256": train_sha} if train else None,
        "metrics": list(scorer.metrics),
        "metric_settings": scorer.settings(),
        "bootstrap": {"n": opts.n_boot, "cluster": "scenario", "confidence": 0.95,
                      "seed": opts.seed},
        "wall_time_s": None,
        "responders": {},
    }
    samples: list[dict[str, Any]] = []
    try:
        for spec in specs:
            g0 = time.perf_counter()
            replies, cached, settings = generate(
                spec, cases, defaults=defaults, cache=cache, batch_size=opts.batch_size,
                progress=progress, log=log)
            gen_s = time.perf_counter() - g0
            ok = [i for i, r in enumerate(replies) if r.error is None]
            with progress(f"scoring {spec[:30]}") as bar:
                scores = scorer.score_pairs([cases[i].reference for i in ok],
                                            [replies[i].text for i in ok], progress=bar)
            by_case = dict(zip(ok, scores))
            metrics = {}
            for m in scorer.metrics:
                vals = [by_case[i][m] for i in ok]
                metrics[m] = clustered_bootstrap_ci(vals, [clusters[i] for i in ok],
                                                    n_boot=opts.n_boot, seed=opts.seed)
            errors = [(cases[i].id, r.error) for i, r in enumerate(replies) if r.error]
            texts = [replies[i].text for i in ok]
            results["responders"][spec] = {
                "settings": settings,
                "baseline": _prefix(spec) in BASELINES,
                "n_cases": len(cases),
                "errors": len(errors),
                "error_examples": [{"case_id": c, "error": e} for c, e in errors[:5]],
                "metrics": metrics,
                "diversity": {"distinct_1": corpus_distinct(texts, 1),
                              "distinct_2": corpus_distinct(texts, 2)},
                "latency": _latency(replies),
                "cached": int(sum(cached)),
                "generation_s": round(gen_s, 3),
            }
            for i, (c, r) in enumerate(zip(cases, replies)):
                samples.append({
                    "responder": spec, "case_id": c.id, "scenario_id": c.scenario_id,
                    "reference": c.reference, "prediction": r.text, "error": r.error,
                    "scores": by_case.get(i, {}), "latency_s": r.latency_s,
                    "first_token_s": r.first_token_s, "tokens": r.tokens, "cached": cached[i]})
            if errors:
                log(f"{spec}: {len(errors):,} of {len(cases):,} cases failed "
                    f"(first: {errors[0][1]}); counted, not scored")
    finally:
        if cache:
            cache.close()
    results["wall_time_s"] = round(time.perf_counter() - t0, 3)
    write_results(out, results, samples)
    write_results_views(out, results, samples)
    return results


def write_results(out: Path, results: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "samples.jsonl", "wb") as fh:
        for s in samples:
            fh.write(orjson.dumps(s, option=orjson.OPT_APPEND_NEWLINE))
    with atomic_write(out / "results.json", "wb") as fh:
        fh.write(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE,
                              default=str))
