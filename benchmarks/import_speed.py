"""Import speed and memory on the published DeEscalWild transcripts, against plain pandas.

    DEESCALWILD_REAL_DATA=../shared/data/deescalwild python benchmarks/import_speed.py [--repeat 3]

Prints turns/s, the ratio of our time to a plain `pandas.read_csv` of every file (measured in
the same process and interleaved, best of `--repeat` runs each, so that machine noise hits both
alike), and memory: the peak of Python allocations during an in-process import (tracemalloc) and
the maximum resident size of a separate `deescalwild corpus import` process, start-up included.
Our time is the whole `corpus import`: reading, video metadata, role resolution, writing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def pandas_read(files: list[Path]) -> int:
    import pandas as pd

    return sum(len(pd.read_csv(f)) for f in files)


def deescalwild_import(root: Path, out: Path) -> int:
    """Exactly what `deescalwild corpus import ROOT -o OUT` runs."""
    from deescalwild.corpus.importer import import_to_file

    return import_to_file([root], out).turns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("DEESCALWILD_REAL_DATA"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.data:
        print("set DEESCALWILD_REAL_DATA or pass --data", file=sys.stderr)
        return 2
    root = Path(args.data)
    from deescalwild.corpus.importer import discover

    files = [f for f, _ in discover([root])[0]]
    import pandas  # noqa: F401  - import costs are not part of either measurement

    import deescalwild.corpus.roles.resolve  # noqa: F401

    ours, base = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "corpus.jsonl"
        for _ in range(args.repeat):
            t = time.perf_counter()
            rows = pandas_read(files)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            turns = deescalwild_import(root, out)
            ours.append(time.perf_counter() - t)
        tracemalloc.start()
        deescalwild_import(root, out)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = out.stat().st_size
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "deescalwild.cli", "corpus", "import", str(root),
                        "-o", str(out)], check=True, capture_output=True)
        cli_wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    result = {
        "files": len(files),
        "turns": turns,
        "pandas_rows": rows,
        "pandas_read_s": round(min(base), 3),
        "import_s": round(min(ours), 3),
        "ratio_to_pandas": round(min(ours) / min(base), 2),
        "turns_per_s": round(turns / min(ours)),
        "peak_python_alloc_mib": round(peak / 2**20, 1),
        "cli_max_rss_mib": round(rss, 1),
        "cli_wall_s": round(cli_wall, 2),
        "corpus_file_mib": round(size / 2**20, 1),
        "repeat": args.repeat,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
