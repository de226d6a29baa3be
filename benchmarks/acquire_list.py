"""`acquire add` on the published DeEscalWild video list, then the relevance stage over every row
that has a transcript, against the local fake judge (scripts/fake_relevance_judge.py) with
injected faults. Prints times, memory, the manifest's counts, the judge's fault counts and the
report's summary. No network: the list carries its metadata; the transcripts are the published
ones (attached) and the list's caption cells.

    DEESCALWILD_REAL_DATA=../shared/data/deescalwild python benchmarks/acquire_list.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "deescalwild", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"deescalwild {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("DEESCALWILD_REAL_DATA"))
    ap.add_argument("--faults", default="429:0.03,500:0.02,malformed:0.02,partial:0.01,"
                    "truncated:0.01,drop:0.01")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args()
    if not args.data:
        sys.exit("set DEESCALWILD_REAL_DATA or pass --data")
    data = Path(args.data).resolve()
    work = Path(args.keep or tempfile.mkdtemp(prefix="acquire-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPENAI_API_KEY": "sk-fake-benchmark", "HF_HUB_OFFLINE": "1"}

    add_s = cli("acquire", "add", str(data / "raw_youtube_video_list.csv"), "--transcripts",
                str(data / "train"), "--transcripts", str(data / "test"), cwd=work, env=env)
    port = free_port()
    judge = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "fake_relevance_judge.py"),
                              "--port", str(port), "--faults", args.faults],
                             stdout=subprocess.PIPE, text=True, env=env)
    judge.stdout.readline()  # "fake judge on ..."
    spec = f"openai:http://127.0.0.1:{port}/v1#fake-judge"
    try:
        run_args = ("acquire", "run", "--stages", "relevance", "--judge", spec, "--workers",
                    str(args.workers), "--max-retries", "3")
        first_s = cli(*run_args, cwd=work, env=env)
        cli("acquire", "retry", "--failed", cwd=work, env=env)
        retry_s = cli(*run_args, cwd=work, env=env)
        cli("acquire", "retry", "--stage", "relevance", cwd=work, env=env)
        cached_s = cli(*run_args, cwd=work, env=env)  # every judgement from the cache
    finally:
        judge.terminate()
        counts = json.loads(judge.communicate(timeout=10)[0].strip().splitlines()[-1])
    status = json.loads(subprocess.run(
        [sys.executable, "-m", "deescalwild", "acquire", "status", "--json"], cwd=work, env=env,
        check=True, capture_output=True, text=True).stdout)
    report = json.loads((work / "acquire-report" / "relevance-report.json").read_text())
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"work folder: {work}")
    print(f"acquire add: {add_s:.1f} s ({status['videos']:,} videos)")
    print(f"relevance, first run: {first_s:.1f} s; after retry --failed: {retry_s:.1f} s; "
          f"all {report['counts']['accepted'] + report['counts']['rejected']:,} again from the "
          f"cache: {cached_s:.1f} s; max RSS of a command {rss:.0f} MiB")
    print("manifest:", json.dumps({s: {k: v for k, v in c.items() if v}
                                   for s, c in status["stages"].items()}))
    print("fake judge:", json.dumps(counts))
    print("report:", json.dumps(report["counts"]))
    print("top rejection reasons:", json.dumps(report["top_rejection_reasons"]))


if __name__ == "__main__":
    main()
