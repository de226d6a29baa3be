"""The relevance report of a manifest: its rows gathered for `relevance.report`, written as
Markdown, JSON and CSV. Called after every run that included the relevance stage, and by
`acquire report` (optionally under another rule, from the stored judgements)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deescalwild.acquire.manifest import Manifest
from deescalwild.acquire.tasks import DEFAULT_RULE

__all__ = ["relevance_rows", "write_relevance_report"]


def relevance_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One row per video: its title and URL, and its relevance stage's status, detail and
    error (status None when the stage has not run)."""
    rows = {r.video_id: r for r in manifest.stage_rows(stage="relevance")}
    out = []
    for v in manifest.videos():
        r = rows.get(v.id)
        status = None if r is None or r.status in ("pending", "running") else r.status
        out.append({"id": v.id, "title": v.meta.get("title", ""), "url": v.url,
                    "status": status, "detail": r.detail if r else {},
                    "error": r.last_error if r else None,
                    "_file": (str(manifest.resolve(r.outputs["json"]["path"]))
                              if r and "json" in r.outputs else None)})
    return out


def write_relevance_report(manifest: Manifest, out_dir: str | Path,
                           rule: str | None = None) -> list[Path]:
    """Write `relevance-report.{md,json,csv}` into `out_dir`. With `rule`, verdicts are
    recomputed from the stored features (no judge is called); otherwise they are the run's.
    Returns the paths written."""
    from deescalwild.acquire.relevance.report import (
        build_report,
        read_features,
        rescore,
        write_report,
    )

    def load(row: dict[str, Any]) -> dict[str, bool] | None:
        return read_features(row["_file"]) if row.get("_file") else None

    rows = relevance_rows(manifest)
    if rule is not None:
        rows = rescore(rows, rule, load)
    report = build_report(rows, rule or _stored_rule(rows), load)
    report["manifest"] = str(manifest.path)
    return write_report(report, out_dir)


def _stored_rule(rows: list[dict[str, Any]]) -> str:
    """The rule the stored verdicts were made with (each relevance detail records it); when
    verdicts were made under several rules, all of them, most used first."""
    from collections import Counter

    rules = Counter(r["detail"].get("rule") for r in rows
                    if r["status"] == "done" and r["detail"].get("rule"))
    if not rules:
        return DEFAULT_RULE
    if len(rules) == 1:
        return next(iter(rules))
    return " | ".join(f"{rule} ({n} videos)" for rule, n in rules.most_common())
