"""The relevance report: which videos were accepted and rejected and why, with the counts
that show what the rule and the judge did to the whole list.

Input rows, one per video (the lead builds them from the manifest):
`{"id", "title", "url", "status", "detail", "error"}` where `status` and `detail` are the
relevance stage's (`status` None when the stage never ran), and optionally `"features"` (the
30 judged features). Features are not kept in the manifest (details stay small): pass
`load_features` (e.g. `workdir_loader(workdir)`, which reads `<workdir>/relevance/<id>.json`)
to fill them for the feature prevalence table.

`rescore(rows, rule, load_features)` applies another rule to the stored features, without the
judge: `acquire report --rule EXPR` shows what a stricter or looser rule would keep.

Written as three files (atomically): `relevance-report.json`
(`deescalwild.relevance-report/1`), `relevance-report.md` (summary, then every video with
its reason) and `relevance-report.csv` (one row per video).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from deescalwild.acquire.relevance.rule import compile_rule, evaluate, failed_parts
from deescalwild.acquire.relevance.taxonomy import (
    BY_GROUP,
    FEATURE_NAMES,
    FEATURES,
    GROUPS,
    exclusion_flags,
    group_scores,
)
from deescalwild.acquire.tasks import DEFAULT_RULE
from deescalwild.atomic import atomic_write

__all__ = ["REPORT_SCHEMA", "build_report", "read_features", "rescore", "workdir_loader",
           "write_report"]

REPORT_SCHEMA = "deescalwild.relevance-report/1"
VERDICTS = ("accepted", "rejected", "failed", "skipped", "not run")
CSV_COLUMNS = ("id", "title", "url", "verdict", "reason", *GROUPS, "flags")
TOP_REASONS = 10

Row = Mapping[str, Any]
Loader = Callable[[Row], "dict[str, bool] | None"]


def read_features(path: str | Path) -> dict[str, bool] | None:
    """The features stored in a relevance stage file; None when it is missing or unreadable."""
    try:
        data = orjson.loads(Path(path).read_bytes())
        return {n: bool(data["features"][n]) for n in FEATURE_NAMES}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def workdir_loader(workdir: str | Path) -> Loader:
    """A `load_features` that reads `<workdir>/relevance/<id>.json`."""
    root = Path(workdir, "relevance")
    return lambda row: read_features(root / f"{row['id']}.json")


def _features(row: Row, load: Loader | None) -> dict[str, bool] | None:
    feats = row.get("features")
    if feats is None and load is not None and row.get("status") == "done":
        feats = load(row)
    return dict(feats) if feats is not None else None


def verdict_of(row: Row) -> str:
    status = row.get("status")
    if status == "done":
        return "accepted" if (row.get("detail") or {}).get("accepted") else "rejected"
    if status in ("failed", "skipped"):
        return status
    return "not run"


def rescore(rows: Iterable[Row], rule: str, load_features: Loader | None = None
            ) -> list[dict[str, Any]]:
    """Rows with the relevance verdict recomputed under `rule` from the stored features.
    A judged video whose features cannot be found becomes `failed` (its old verdict belongs
    to another rule). Rows that were not judged are returned as they are."""
    compiled = compile_rule(rule)
    out = []
    for row in rows:
        new = dict(row)
        if row.get("status") == "done":
            feats = _features(row, load_features)
            if feats is None:
                new.update(status="failed", error="no stored features to apply the rule to "
                           "(relevance file missing): rerun the relevance stage")
            else:
                accepted, reason = evaluate(compiled, feats)
                new["features"] = feats
                new["detail"] = {**(row.get("detail") or {}), "accepted": accepted,
                                 "reason": reason, "scores": group_scores(feats),
                                 "flags": exclusion_flags(feats)}
        out.append(new)
    return out


def _entry(row: Row) -> dict[str, Any]:
    detail = row.get("detail") or {}
    verdict = verdict_of(row)
    reason = detail.get("reason") if verdict in ("accepted", "rejected") else row.get("error")
    return {"id": row.get("id"), "title": row.get("title") or "", "url": row.get("url") or "",
            "verdict": verdict, "reason": reason or "",
            "scores": dict(detail.get("scores") or {}), "flags": list(detail.get("flags") or [])}


def build_report(rows: Iterable[Row], rule: str = DEFAULT_RULE,
                 load_features: Loader | None = None) -> dict[str, Any]:
    """Counts, feature prevalence, score histograms, top rejection reasons, and every video
    with its verdict and reason (module docstring: the rows)."""
    rows = list(rows)
    entries = [_entry(r) for r in rows]
    counts = Counter(e["verdict"] for e in entries)
    judged = [e for e in entries if e["verdict"] in ("accepted", "rejected")]

    positives = Counter[str]()
    with_features = 0
    for row, e in zip(rows, entries):
        if e["verdict"] not in ("accepted", "rejected"):
            continue
        feats = _features(row, load_features)
        if feats is None:
            continue
        with_features += 1
        positives.update(n for n in FEATURE_NAMES if feats.get(n))

    histograms: dict[str, dict[str, int]] = {}
    for g, names in BY_GROUP.items():
        hist = Counter(e["scores"][g] for e in judged if g in e["scores"])
        histograms[g] = {str(k): hist.get(k, 0) for k in range(len(names) + 1)}

    reasons = Counter(p for e in judged if e["verdict"] == "rejected"
                      for p in failed_parts(e["reason"]))
    by = {v: [e for e in entries if e["verdict"] == v] for v in VERDICTS}
    return {
        "schema": REPORT_SCHEMA,
        "rule": rule,
        "counts": {"videos": len(entries), **{v.replace(" ", "_"): counts.get(v, 0)
                                              for v in VERDICTS}},
        "features": {"judged_with_features": with_features,
                     "positives": {n: positives.get(n, 0) for n in FEATURE_NAMES}},
        "score_histograms": histograms,
        "top_rejection_reasons": [{"part": p, "videos": n}
                                  for p, n in reasons.most_common(TOP_REASONS)],
        **{v.replace(" ", "_"): by[v] for v in VERDICTS},
    }


# --- writing -----------------------------------------------------------------------------
def _md(text: Any) -> str:
    """Text safe inside a Markdown table cell or link label."""
    s = " ".join(str(text).split())
    for c in "\\|[]*`<":  # intraword _ and a bare > render as themselves
        s = s.replace(c, "\\" + c)
    return s


def _md_video(e: dict[str, Any]) -> str:
    title = _md(e["title"] or e["id"])
    url = str(e["url"]).replace(" ", "%20").replace(")", "%29")
    link = f"[{title}]({url})" if url else title
    none = "(relevance has not run)" if e["verdict"] == "not run" else "(no reason recorded)"
    return f"- {link} (`{e['id']}`): {_md(e['reason']) or none}"


def render_markdown(report: dict[str, Any]) -> str:
    c = report["counts"]
    out = ["# Relevance report", "", f"Rule: `{report['rule']}`", "",
           "| videos | accepted | rejected | failed | skipped | not run |",
           "|---:|---:|---:|---:|---:|---:|",
           f"| {c['videos']} | {c['accepted']} | {c['rejected']} | {c['failed']} | "
           f"{c['skipped']} | {c['not_run']} |", ""]
    if report["top_rejection_reasons"]:
        out += ["## Top rejection reasons", "", "| rule part that failed | videos |",
                "|---|---:|"]
        out += [f"| `{r['part']}` | {r['videos']} |" for r in report["top_rejection_reasons"]]
        out.append("")
    hist = report["score_histograms"]
    width = max(len(v) for v in hist.values())
    out += ["## Group scores (videos per score)", "",
            "| group | " + " | ".join(str(k) for k in range(width)) + " |",
            "|---|" + "---:|" * width]
    for g, h in hist.items():
        cells = [str(h.get(str(k), "")) for k in range(width)]
        out.append(f"| {GROUPS[g]} (`{g}`) | " + " | ".join(cells) + " |")
    out.append("")
    feats = report["features"]
    n = feats["judged_with_features"]
    out += ["## Feature prevalence", "",
            f"Among {n} judged video(s) whose features were available.", "",
            "| group | feature | videos | share |", "|---|---|---:|---:|"]
    for f in FEATURES:
        k = feats["positives"].get(f.name, 0)
        share = f"{100 * k / n:.1f}%" if n else "-"
        out.append(f"| {GROUPS[f.group]} | `{f.name}` | {k} | {share} |")
    out.append("")
    for v, heading in (("accepted", "Accepted"), ("rejected", "Rejected"),
                       ("failed", "Failed"), ("skipped", "Skipped"), ("not_run", "Not run")):
        items = report[v]
        if not items and v in ("skipped", "not_run"):
            continue
        out += [f"## {heading} ({len(items)})", ""]
        out += [_md_video(e) for e in items] or ["(none)"]
        out.append("")
    return "\n".join(out)


def render_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for v in ("accepted", "rejected", "failed", "skipped", "not_run"):
        for e in report[v]:
            w.writerow([e["id"], e["title"], e["url"], e["verdict"], e["reason"],
                        *(e["scores"].get(g, "") for g in GROUPS), ";".join(e["flags"])])
    return buf.getvalue()


def write_report(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """`relevance-report.{json,md,csv}` under `out_dir`, each written atomically."""
    out = Path(out_dir)
    paths = [out / "relevance-report.json", out / "relevance-report.md",
             out / "relevance-report.csv"]
    with atomic_write(paths[0], "wb", encoding=None) as fh:
        fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    with atomic_write(paths[1], "w") as fh:
        fh.write(render_markdown(report))
    with atomic_write(paths[2], "wb", encoding=None) as fh:  # bytes: the CSV's own \r\n
        fh.write(render_csv(report).encode("utf-8"))
    return paths
