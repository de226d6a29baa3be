"""The benchmark's speed on the full published test split (the paper split).

Targets (issue 4): `eval` of `retrieval` with every metric but BERTScore under 60 s on 2 cores,
and a retrieval p95 latency per reply under 20 ms with the whole training index in memory.

    DEESCALWILD_REAL_DATA=../shared/data/deescalwild python benchmarks/eval_speed.py

Preparing the corpus (import, curate, paper split, cases) is not what is measured; it runs first
and its time is shown apart. The evaluation runs in a child process with an empty generation
cache so its peak RSS and wall time are its own. Each metric is then timed alone on the same
replies (cases/s), beside the floor of reading the cases file, measured in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVAL = """
import json, sys
from deescalwild.bench.evaluate import EvalOptions, evaluate
r = evaluate({cases!r}, ["retrieval"], {out!r}, train={split!r},
             options=EvalOptions(metrics={metrics!r}, use_cache=False, baselines=False))
print(json.dumps(r["responders"]["retrieval"]["latency"]))
"""


def main() -> None:
    data = os.environ.get("DEESCALWILD_REAL_DATA")
    if not data or not Path(data).is_dir():
        raise SystemExit("set DEESCALWILD_REAL_DATA to the published DeEscalWild transcripts")
    from deescalwild.bench.cases import make_cases
    from deescalwild.bench.metrics import ALL_METRICS, Scorer
    from deescalwild.core import read_cases
    from deescalwild.corpus.importer import import_to_file
    from deescalwild.curate.annotate import curate_file
    from deescalwild.curate.splits import split_file

    metrics = [m for m in ALL_METRICS if m != "bertscore_f1"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        os.environ["DEESCALWILD_HOME"] = str(t / "home")  # empty cache: everything is generated
        t0 = time.perf_counter()
        import_to_file([data], t / "corpus.jsonl")
        curate_file(t / "corpus.jsonl", t / "curated.jsonl")
        split_file(t / "curated.jsonl", t / "split.jsonl", strategy="paper")
        summary = make_cases(t / "split.jsonl", t / "cases.jsonl", split="test")
        prep = time.perf_counter() - t0
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; paper split test: "
              f"{summary.cases:,} cases from {summary.scenarios} scenarios "
              f"(preparation {prep:.1f} s, not measured below)")

        code = EVAL.format(cases=str(t / "cases.jsonl"), out=str(t / "results"),
                           split=str(t / "split.jsonl"), metrics=",".join(metrics))
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("eval failed")
        latency = json.loads(proc.stdout.read().strip().splitlines()[-1])
        print(f"eval retrieval, {len(metrics)} metrics: {wall:.1f} s wall (target < 60 s), "
              f"peak RSS {usage.ru_maxrss / 1024:,.0f} MiB")
        print(f"retrieval latency per reply: p50 {latency['p50'] * 1000:.2f} ms, "
              f"p95 {latency['p95'] * 1000:.2f} ms (target < 20 ms), "
              f"max {latency['max'] * 1000:.1f} ms")

        t0 = time.perf_counter()
        cases = list(read_cases(t / "cases.jsonl"))
        floor = time.perf_counter() - t0
        samples = [json.loads(x) for x in (t / "results" / "samples.jsonl").open()]
        refs = [s["reference"] for s in samples if not s["error"]]
        preds = [s["prediction"] for s in samples if not s["error"]]
        scorer = Scorer(metrics)
        scorer.check()
        print(f"floor: reading {len(cases):,} cases {floor:.2f} s")
        print(f"{'metric':<14}{'seconds':>9}{'cases/s':>11}")
        for m in metrics:
            t0 = time.perf_counter()
            scorer.score_metric(m, refs, preds)
            s = time.perf_counter() - t0
            print(f"{m:<14}{s:>9.2f}{len(refs) / s:>11,.0f}")


if __name__ == "__main__":
    main()
