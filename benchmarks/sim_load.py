"""Simulator web server under load: concurrent training sessions over HTTP on loopback.

Target (issue 6): with the embedded `retrieval` civilian, 20 concurrent sessions of 10 turns
each, p95 turn latency under 100 ms server-side, zero errors, on 2 CPU cores.

    python benchmarks/sim_load.py                               # 20 sessions x 10 turns
    python benchmarks/sim_load.py --stream                      # NDJSON streaming turns
    python benchmarks/sim_load.py --train corpus.jsonl          # answer from a real corpus
    python benchmarks/sim_load.py --sessions 2 --turns 2        # smoke run
    python benchmarks/sim_load.py --url http://127.0.0.1:8000   # a server already running

The server is `deescalwild serve` in a child process (its own SQLite file in a temp folder, the
per-session rate limit raised out of the way: it is not what is measured), so its peak RSS is
its own: VmHWM from /proc, else the largest RSS psutil saw. Every session starts on a card
(`--card`, else the cards in turn), then sends its turns one after another, as a trainee would;
the sessions run concurrently, after one warm-up session (`--warmup` turns, not counted: the
server's first turn pays one-off lazy set-up). Trainee lines are drawn with `--seed` from a
fixed list of calm and escalating lines, so two runs send the same text.

Latency figures: *server* is the turn's `latency_s` (the engine's timer: analysis, agitation,
the whole reply; not the SQLite write after it), *server-timing* each metric of the
Server-Timing header (the time to the answer's headers: for a streamed turn, to its first
event), *client* the HTTP round trip (with `--stream`: to the end of the stream, and *first
delta* to the first piece of the reply). Throughput counts turns answered per second of wall
time from the first session start to the last session end. Figures are printed, never
asserted; the exit status is 1 when any request failed. The last line is one JSON object.
The server refuses more than 60 new sessions a minute (`Limits.sessions_per_minute`), so runs
of more sessions than that count 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

CALM = [
    "Hi, I'm Officer Reyes with the city police. Can you tell me what's going on tonight?",
    "I can see this has been a really stressful evening for you.",
    "Take your time. I'm here to listen, what happened before we arrived?",
    "So what I'm hearing is that you felt nobody was listening to you. Is that right?",
    "Would you be more comfortable talking out here or over by the car?",
    "Nobody is in trouble right now. I just want to make sure everyone is safe.",
    "Here is what happens next: I'll take a few notes and then we'll figure it out together.",
    "Could you please put the bottle down on the ground for me? Thank you.",
    "What's your name? I'd rather talk to you properly.",
    "That sounds frustrating. I'd be upset too if that happened to me.",
    "You've got a couple of options here, and I'd like you to choose.",
    "Okay, go on, I'm listening. What did he say after that?",
]
ESCALATING = [
    "Put your hands behind your back NOW!",
    "I don't care what you think, just do what I say.",
    "This is your last chance or you're going to jail.",
    "Stop talking. Stop talking! I said stop talking!",
    "Whatever, buddy. Nobody cares about your story.",
    "Do it now or I'll put you on the ground.",
    "Get out of the car! Get out of the car right now!",
    "You people are all the same, you're an idiot.",
    "I'm counting to three. One. Two.",
    "Shut the hell up and sit down.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeakRss:
    """The child's peak resident memory: VmHWM from /proc (the kernel's own high-water mark),
    else the largest RSS psutil sees in a 50 ms polling thread."""

    def __init__(self, pid: int | None) -> None:
        self.pid, self.seen, self._stop = pid, 0, threading.Event()
        self.source = "none"
        if pid is None:
            return
        if Path(f"/proc/{pid}/status").exists():
            self.source = "/proc VmHWM"
        else:
            try:
                import psutil

                self._proc = psutil.Process(pid)
                self.source = "psutil (sampled every 50 ms)"
                threading.Thread(target=self._poll, daemon=True).start()
            except Exception:  # psutil missing, or the process already gone
                self.source = "none"

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.seen = max(self.seen, self._proc.memory_info().rss)
            except Exception:
                return
            self._stop.wait(0.05)

    def peak_bytes(self) -> int | None:
        """Read (not after the process exits: /proc forgets it)."""
        if self.source == "/proc VmHWM":
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return None
            m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
            return int(m.group(1)) * 1024 if m else None
        self._stop.set()
        return self.seen or None


def start_server(args: argparse.Namespace, tmp: Path) -> tuple[subprocess.Popen, str, Path]:
    """`deescalwild serve` in a child process; its output goes to a log file."""
    port = free_port()
    cmd = [sys.executable, "-m", "deescalwild", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--db", str(tmp / "sim.db"), "--responder", args.responder,
           "--turns-per-minute", "1000000"]
    if args.train:
        cmd += ["--train", str(args.train)]
    for d in args.cards or []:
        cmd += ["--cards", str(d)]
    log = tmp / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DEESCALWILD_TOKEN", None)  # a token in the environment would lock the client out
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}", log


def wait_healthy(url: str, proc: subprocess.Popen | None, log: Path | None,
                 timeout: float) -> tuple[float, dict]:
    """(seconds until GET /healthz answered 200, its answer); exits with the server's log if
    the server died."""
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise SystemExit(f"the server exited with status {proc.returncode}:\n{tail}")
        try:
            r = httpx.get(url + "/healthz", timeout=1.0)
            if r.status_code == 200:
                return time.perf_counter() - t0, r.json()
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url}/healthz did not answer within {timeout:.0f} s")


def server_timing(header: str | None) -> dict[str, float]:
    """`name;dur=12.3, other;desc="x";dur=4` -> {name: seconds}."""
    out: dict[str, float] = {}
    for metric in (header or "").split(","):
        parts = [p.strip() for p in metric.split(";")]
        for p in parts[1:]:
            if p.startswith("dur="):
                with contextlib.suppress(ValueError):
                    out[parts[0]] = float(p[4:]) / 1e3
    return out


class Stats:
    def __init__(self) -> None:
        self.server: list[float] = []
        self.client: list[float] = []
        self.first_delta: list[float] = []
        self.first_token_server: list[float] = []
        self.timing: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.error_examples: dict[str, str] = {}
        self.turns = 0
        self.sessions = 0
        self.agitation: list[tuple[float, float]] = []  # (start, end) per session

    def error(self, key: str, detail: str) -> None:
        self.errors[key] += 1
        self.error_examples.setdefault(key, detail[:300])


def _error_key(r) -> tuple[str, str]:
    try:
        msg = r.json()["error"]["message"]
    except Exception:
        msg = r.text[:300]
    return str(r.status_code), msg


async def post_turn(client, sid: str, text: str, stream: bool, st: Stats) -> float | None:
    """One turn; returns the agitation after it (None on an error)."""
    import httpx

    url = f"/api/sessions/{sid}/turns"
    t0 = time.perf_counter()
    try:
        if not stream:
            r = await client.post(url, json={"text": text, "stream": False})
            rtt = time.perf_counter() - t0
            if r.status_code != 200:
                st.error(*_error_key(r))
                return None
            data = r.json()
            st.client.append(rtt)
            st.server.append(float(data["latency_s"]))
            for k, v in server_timing(r.headers.get("server-timing")).items():
                st.timing[k].append(v)
            st.turns += 1
            return float(data["agitation"])
        async with client.stream("POST", url, json={"text": text, "stream": True}) as r:
            if r.status_code != 200:
                await r.aread()
                st.error(*_error_key(r))
                return None
            first, done = None, None
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                ev = json.loads(line)
                if ev.get("type") == "delta" and first is None:
                    first = time.perf_counter() - t0
                elif ev.get("type") == "done":
                    done = ev["turn"]
                elif ev.get("type") == "error":
                    st.error("stream-error", json.dumps(ev)[:300])
                    return None
            rtt = time.perf_counter() - t0
            if done is None:
                st.error("stream-cut", "the stream ended without a done event")
                return None
            st.client.append(rtt)
            st.server.append(float(done["latency_s"]))
            if first is not None:
                st.first_delta.append(first)
            if done.get("first_token_s") is not None:
                st.first_token_server.append(float(done["first_token_s"]))
            for k, v in server_timing(r.headers.get("server-timing")).items():
                st.timing[k].append(v)
            st.turns += 1
            return float(done["agitation_after"])
    except (httpx.HTTPError, ValueError, KeyError) as e:
        st.error(type(e).__name__, str(e))
        return None


async def session(client, k: int, card: str, args: argparse.Namespace, st: Stats) -> None:
    rng = random.Random(args.seed * 1_000_003 + k)
    r = await client.post("/api/sessions", json={"card_id": card})
    if r.status_code != 200:
        st.error(*_error_key(r))
        return
    data = r.json()
    sid = data["session_id"]
    start = end = float(data.get("agitation", 0.0))
    for _ in range(args.turns):
        pool = ESCALATING if rng.random() < args.escalating else CALM
        after = await post_turn(client, sid, rng.choice(pool), args.stream, st)
        if after is not None:
            end = after
    r = await client.post(f"/api/sessions/{sid}/end")
    if r.status_code != 200:
        st.error(*_error_key(r))
    st.sessions += 1
    st.agitation.append((start, end))


async def run_load(url: str, args: argparse.Namespace, st: Stats) -> tuple[float, list[str]]:
    import httpx

    limits = httpx.Limits(max_connections=args.sessions + 4,
                          max_keepalive_connections=args.sessions + 4)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=args.timeout) as client:
        r = await client.get("/api/cards")
        r.raise_for_status()
        body = r.json()
        cards = [c["id"] for c in (body if isinstance(body, list) else body["cards"])]
        if args.card:
            if args.card not in cards:
                raise SystemExit(f"--card {args.card}: unknown; known: {', '.join(cards)}")
            cards = [args.card]
        plan = [cards[k % len(cards)] for k in range(args.sessions)]
        if args.warmup:  # the server's one-off lazy set-up (first analysis, first search)
            warm = argparse.Namespace(**{**vars(args), "turns": args.warmup})
            await session(client, -1, plan[0], warm, Stats())
        t0 = time.perf_counter()
        await asyncio.gather(*(session(client, k, card, args, st)
                               for k, card in enumerate(plan)))
        return time.perf_counter() - t0, sorted(set(plan))


def pct(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1e3  # noqa: E731
    return {"n": len(v), "p50_ms": round(at(0.5), 2), "p95_ms": round(at(0.95), 2),
            "max_ms": round(v[-1] * 1e3, 2)}


def line(name: str, values: list[float]) -> str:
    p = pct(values)
    if p is None:
        return f"{name:<22} (none)"
    return (f"{name:<22} p50 {p['p50_ms']:8.2f} ms   p95 {p['p95_ms']:8.2f} ms   "
            f"max {p['max_ms']:8.2f} ms   (n={p['n']})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20, help="concurrent sessions")
    ap.add_argument("--turns", type=int, default=10, help="turns per session")
    ap.add_argument("--card", help="play every session on this card (default: cards in turn)")
    ap.add_argument("--cards", action="append", type=Path, metavar="DIR",
                    help="extra card folder passed to the server (repeatable)")
    ap.add_argument("--responder", default="retrieval", help="responder spec of the civilian")
    ap.add_argument("--train", type=Path, help="corpus JSONL the retrieval civilian answers "
                    "from (default: the shipped sample corpus)")
    ap.add_argument("--stream", action="store_true", help="NDJSON streaming turns; also "
                    "measures the time to the first delta")
    ap.add_argument("--escalating", type=float, default=0.3,
                    help="share of trainee lines drawn from the escalating list")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2, metavar="TURNS",
                    help="turns of one session played before measuring, not counted (0: none)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    ap.add_argument("--url", help="benchmark this running server instead of starting one "
                    "(no RSS figure then)")
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    args = ap.parse_args()
    if args.sessions < 1 or args.turns < 1:
        ap.error("--sessions and --turns must be at least 1")
    if args.train and not args.train.is_file():
        ap.error(f"--train {args.train}: no such file")

    from deescalwild.provenance import git_commit, versions

    st = Stats()
    proc = None
    with tempfile.TemporaryDirectory(prefix="sim_load_") as tmp:
        try:
            if args.url:
                url, log = args.url.rstrip("/"), None
            else:
                proc, url, log = start_server(args, Path(tmp))
            rss = PeakRss(proc.pid if proc else None)
            startup, health = wait_healthy(url, proc, log, args.startup_timeout)
            wall, cards = asyncio.run(run_load(url, args, st))
            peak = rss.peak_bytes()
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    errors = sum(st.errors.values())
    throughput = st.turns / wall if wall > 0 else 0.0
    moves = [e - s for s, e in st.agitation]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; server {url} "
          f"({'given' if args.url else f'started, healthy after {startup:.1f} s'}); "
          f"responder {health.get('responder', args.responder)}, analyser "
          f"{health.get('analyser', '?')}"
          + ("" if args.url else f", train {args.train}" if args.train else ", sample corpus"))
    print(f"{st.sessions}/{args.sessions} sessions x {args.turns} turns on "
          f"{', '.join(cards)}; {'streaming' if args.stream else 'whole replies'}; "
          f"{args.escalating:.0%} escalating lines, seed {args.seed}")
    print(line("server (latency_s)", st.server))
    for name, values in sorted(st.timing.items()):
        print(line(f"server-timing {name}", values))
    if args.stream:
        print(line("server first token", st.first_token_server))
        print(line("client first delta", st.first_delta))
    print(line("client round trip", st.client))
    print(f"turns answered {st.turns} in {wall:.2f} s: {throughput:.1f} turns/s")
    if moves:
        print(f"agitation change per session: mean {sum(moves) / len(moves):+.1f}, "
              f"min {min(moves):+.1f}, max {max(moves):+.1f}")
    print("server peak RSS " + (f"{peak / 2**20:.0f} MiB ({rss.source})" if peak else "n/a"))
    print(f"errors {errors}" + ("" if not errors else ": " + ", ".join(
        f"{k} x{n} ({st.error_examples[k]})" for k, n in st.errors.most_common())))
    result = {
        "benchmark": "sim_load", "sessions": args.sessions, "turns": args.turns,
        "sessions_completed": st.sessions, "cards": cards,
        "responder": health.get("responder", args.responder), "analyser": health.get("analyser"),
        "train": str(args.train) if args.train else None, "stream": args.stream,
        "escalating": args.escalating, "seed": args.seed, "warmup_turns": args.warmup,
        "latency": {"server": pct(st.server), "client": pct(st.client),
                    "server_timing": {k: pct(v) for k, v in sorted(st.timing.items())},
                    "first_delta": pct(st.first_delta),
                    "server_first_token": pct(st.first_token_server)},
        "turns_answered": st.turns, "wall_s": round(wall, 3),
        "throughput_turns_per_s": round(throughput, 2),
        "errors": errors, "errors_by_status": dict(st.errors),
        "server_peak_rss_bytes": peak, "rss_source": rss.source,
        "cpu_count": os.cpu_count(), "versions": versions("fastapi", "uvicorn", "httpx", "bm25s"),
        "git_commit": git_commit(),
    }
    print(json.dumps(result))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
