"""Retrieval responder speed: index build time, peak memory, per-reply latency.

Target (issue 4): build in seconds, BM25 reply latency p95 < 20 ms with the full training index
in memory on 2 CPU cores. The dense re-rank (MiniLM on CPU) is allowed to be slower; it is
measured on fewer queries.

    python benchmarks/retrieval_speed.py /tmp/split_paper.jsonl   # a corpus with a train split
    DEESCALWILD_REAL_DATA=../shared/data/deescalwild python benchmarks/retrieval_speed.py
    python benchmarks/retrieval_speed.py --synthetic 140000       # synthetic, realistic size

Without a corpus argument it imports $DEESCALWILD_REAL_DATA (uncurated, the published
train/test folders) or, when that is unset, writes a synthetic corpus of about 140k pairs.
The corpus is prepared in a child process so the peak RSS printed is the index's process only.
Latency is each `Reply.latency_s`: the responder's own timer around one `respond` call (query
tokenisation, scoring every pair, top-k, and the re-rank when dense). Queries are the cases of
the test split (else dev, else train; the own scenario is always excluded). Figures are
printed, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_corpus(path: str, pairs: int, seed: int = 0) -> None:
    """Scenarios of ~28 officer/civilian exchanges with Zipf-distributed words: the real
    corpus's message lengths (officer ~14 words, civilian ~12) and a 20k-word vocabulary."""
    import numpy as np

    from deescalwild.core import Evidence, Role, Scenario, SpeakerRole, Turn, write_corpus

    rng = np.random.default_rng(seed)
    common = ("you the i to a it that what and is me do my no your yeah okay get car out here "
              "go know right sir need license hands up stop step why police just don want "
              "come back now where going have can ma am officer man arrest said let see").split()
    vocab = common + [f"w{i}" for i in range(20_000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()
    speakers = {"Officer": SpeakerRole(Role.OFFICER, Evidence.LABEL, 1.0),
                "Civilian": SpeakerRole(Role.CIVILIAN, Evidence.LABEL, 1.0)}

    words = iter(rng.choice(len(vocab), 30 * pairs, p=weights).tolist())  # one draw: fast

    def line(mean: float) -> str:
        n = max(1, int(rng.poisson(mean)))
        return " ".join(vocab[next(words)] for _ in range(n)).capitalize() + "."

    def scenarios():
        made, k = 0, 0
        while made < pairs:
            turns = []
            for j in range(min(28, pairs - made)):
                turns.append(Turn(2 * j, None, "Officer", Role.OFFICER, line(14)))
                turns.append(Turn(2 * j + 1, None, "Civilian", Role.CIVILIAN, line(12)))
            made += len(turns) // 2
            split = "test" if k % 50 == 0 else "train"
            yield Scenario(f"synthetic_{k}", "youtube", split, "synthetic", turns, speakers)
            k += 1

    write_corpus(path, scenarios())


def prepare(corpus: str, real_data: str | None, synthetic: int) -> None:
    """Runs in a child process: write the corpus the benchmark reads."""
    if real_data and not synthetic:
        from deescalwild.corpus.importer import import_to_file

        import_to_file([real_data], corpus)
    else:
        synthetic_corpus(corpus, synthetic or 140_000)


def percentiles(values: list[float]) -> str:
    v = sorted(values)
    p = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1e3  # noqa: E731
    return f"p50 {p(0.5):7.2f} ms   p95 {p(0.95):7.2f} ms   max {v[-1] * 1e3:7.2f} ms"


def query_cases(path: Path, n: int) -> tuple[str, list]:
    from deescalwild.bench.cases import cases_from_corpus

    for split in ("test", "dev", "train"):
        cases = list(cases_from_corpus(path, split=split))
        if cases:
            step = max(1, len(cases) // n)
            return split, cases[::step][:n]
    raise SystemExit(f"{path}: no cases in any split")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", help="corpus JSONL with a train split")
    ap.add_argument("--synthetic", type=int, default=0, metavar="PAIRS",
                    help="use a synthetic corpus of about PAIRS pairs")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dense-queries", type=int, default=100)
    ap.add_argument("--spec", default="retrieval", help="responder spec (options)")
    args = ap.parse_args()

    from deescalwild.responders.base import Request
    from deescalwild.responders.registry import load_responder
    from deescalwild.responders.retrieval import RetrievalResponder

    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus and not args.synthetic:
            path, source = Path(args.corpus), args.corpus
        else:
            real = os.environ.get("DEESCALWILD_REAL_DATA")
            path = Path(tmp) / "corpus.jsonl"
            source = (f"synthetic ({args.synthetic or 140_000} pairs)"
                      if args.synthetic or not real else f"import of {real}")
            t = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(
                target=prepare, args=(str(path), real, args.synthetic))
            child.start()
            child.join()
            if child.exitcode:
                raise SystemExit("preparing the corpus failed")
            print(f"corpus: {source}, prepared in {time.perf_counter() - t:.1f} s")

        rss0 = rss_mib()
        t = time.perf_counter()
        r = load_responder(args.spec, defaults={"train": path})
        build = time.perf_counter() - t
        rss1 = rss_mib()
        split, cases = query_cases(path, args.queries)
        requests = [Request.from_case(c) for c in cases]

        lat = [r.respond(q).latency_s for q in requests]
        misses = sum(r.choose(q)[0] is None for q in requests)
        dq = requests[: args.dense_queries]
        t = time.perf_counter()
        dense = RetrievalResponder("", r.options.model_copy(update={"dense": True}),
                                   index=r.index)
        dense.check()
        load = time.perf_counter() - t
        dense_lat = [dense.respond(q).latency_s for q in dq]
        dense_again = [dense.respond(q).latency_s for q in dq]  # candidate embeddings cached

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.spec}, "
          f"corpus {path if args.corpus else source}")
    print(f"index: {len(r.index):,} pairs, built in {build:.2f} s (reading the corpus included); "
          f"peak RSS {rss1:.0f} MiB (before the build {rss0:.0f} MiB)")
    print(f"BM25,  {len(lat):5d} queries ({split} split): {percentiles(lat)}   "
          f"no match (fallback): {misses}")
    print(f"dense, {len(dense_lat):5d} queries, cold:       {percentiles(dense_lat)}   "
          f"(model load {load:.1f} s)")
    print(f"dense, {len(dense_again):5d} queries, warm cache: {percentiles(dense_again)}")
    print(f"peak RSS at the end {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
