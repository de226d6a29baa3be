"""The `relevance` stage: an LLM judge scores a video's transcript on the taxonomy's 30
features, the selection rule turns the group counts into a verdict, and the verdict is the
stage's result.

    text (text.py) -> judge, cached (judge.py) -> features -> group scores (taxonomy.py)
    -> rule (rule.py) -> <workdir>/relevance/<id>.json

A rejected video is a `done` outcome whose detail says `accepted: false` and why; only a
stage that could not judge (no transcript, no judge, the judge failing or answering
invalid JSON twice) is a failure. A video whose transcripts have no words at all is skipped.
`report.py` turns the stage's details into the accepted/rejected report.
"""

from __future__ import annotations

import orjson

from deescalwild.acquire.relevance.judge import judge_features
from deescalwild.acquire.relevance.rule import RuleError, compile_rule, evaluate
from deescalwild.acquire.relevance.taxonomy import exclusion_flags, group_scores
from deescalwild.acquire.relevance.text import build_text
from deescalwild.acquire.tasks import StageError, StageOutcome, StageTask, output_path
from deescalwild.atomic import atomic_write

__all__ = ["RELEVANCE_SCHEMA", "run_relevance"]

RELEVANCE_SCHEMA = "deescalwild.relevance/1"


def run_relevance(task: StageTask) -> StageOutcome:
    """Judge one video and apply the rule (module docstring)."""
    settings = task.settings
    try:
        rule = compile_rule(settings.rule)  # a bad rule fails before any request is spent
    except RuleError as e:
        raise StageError(str(e)) from e
    if not (settings.judge or "").strip():
        raise StageError("no judge: pass --judge SPEC")
    jt = build_text(task)
    if jt is None:
        return StageOutcome.skipped("empty transcript: nothing to judge")

    result = judge_features(jt.text, settings, task.video.id)
    scores = group_scores(result.features)
    accepted, reason = evaluate(rule, result.features)
    flags = exclusion_flags(result.features)
    path = output_path(settings, "relevance", task.video.id, ".json")
    record = {
        "schema": RELEVANCE_SCHEMA, "features": result.features, "evidence": result.evidence,
        "scores": scores, "accepted": accepted, "reason": reason, "rule": rule.text,
        "prompt_version": result.prompt_version, "judge": settings.judge,
        "judge_settings": result.settings, "transcript_source": jt.source,
        "truncated": jt.truncated, "chars": jt.chars, "original_chars": jt.original_chars,
        "collapsed_repeats": jt.collapsed, "cached": result.cached,
        "corrected": result.corrected,
    }
    with atomic_write(path, "wb", encoding=None) as fh:
        fh.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    return StageOutcome(
        outputs={"json": str(path)},
        detail={"accepted": accepted, "reason": reason, "scores": scores,
                "cached": result.cached, "flags": flags, "requests": result.requests,
                "source": jt.source, "truncated": jt.truncated, "rule": rule.text})
