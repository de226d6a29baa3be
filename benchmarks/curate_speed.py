"""Import + curate + split on the real corpus: wall time per stage, peak memory, turns/s.

Target (issue 3): the whole chain under 60 s and 2 GB on 2 cores.

    DEESCALWILD_REAL_DATA=../shared/data/deescalwild python benchmarks/curate_speed.py

Each stage runs in a child process of its own, so its peak RSS is its own (os.wait4). The
machines are shared and noisy, so each stage is also shown as a ratio to the cost of simply
reading and rewriting the same corpus file (the I/O floor every stage pays), measured in the
same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = {
    "import": "from deescalwild.corpus.importer import import_to_file as f; "
              "f([{data!r}], {out!r})",
    "floor (read + write)": "from deescalwild.core import read_corpus, write_corpus; "
                            "write_corpus({out!r}, list(read_corpus({src!r})))",
    "curate": "from deescalwild.curate.annotate import curate_file as f; f({src!r}, {out!r})",
    "split": "from deescalwild.curate.splits import split_file as f; f({src!r}, {out!r}, seed=0)",
}


def run(code: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage failed: {code}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> None:
    data = os.environ.get("DEESCALWILD_REAL_DATA")
    if not data or not Path(data).is_dir():
        raise SystemExit("set DEESCALWILD_REAL_DATA to the published DeEscalWild transcripts")
    with tempfile.TemporaryDirectory() as tmp:
        files = {k: str(Path(tmp) / f"{k}.jsonl") for k in ("corpus", "floor", "curated",
                                                              "split")}
        plan = [("import", None, files["corpus"]), ("floor (read + write)", files["corpus"],
                                                    files["floor"]),
                ("curate", files["corpus"], files["curated"]),
                ("split", files["curated"], files["split"])]
        results = {}
        for name, src, out in plan:
            results[name] = run(STAGES[name].format(data=data, src=src, out=out))
        from deescalwild.core import read_corpus

        turns = sum(len(s.turns) for s in read_corpus(files["corpus"]))
    floor = results["floor (read + write)"][0]
    print(f"{turns:,} turns, python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"{'stage':<22}{'seconds':>9}{'x floor':>9}{'peak MiB':>10}{'turns/s':>11}")
    chain = 0.0
    for name, (sec, mib) in results.items():
        if not name.startswith("floor"):
            chain += sec
        print(f"{name:<22}{sec:>9.2f}{sec / floor:>9.2f}{mib:>10.0f}{turns / sec:>11,.0f}")
    peak = max(m for _, m in results.values())
    print(f"{'chain (import+curate+split)':<22} {chain:.2f} s, peak {peak:.0f} MiB "
          f"(target < 60 s and < 2048 MiB): {'OK' if chain < 60 and peak < 2048 else 'MISSED'}")


if __name__ == "__main__":
    main()
