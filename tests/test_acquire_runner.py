"""The runner and the manifest: stage order, skips, failures, retries, resumption, executors.

Stage functions here are `acquire_fake_stages` (small files, a call log), so these tests pin the
scheduling and bookkeeping; each real stage has its own tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from deescalwild.acquire.manifest import Manifest, ManifestBusy, NewVideo
from deescalwild.acquire.runner import Pacer, run_stages
from deescalwild.acquire.tasks import STAGES, Settings
from deescalwild.errors import DeescalwildError

FAKE = "acquire_fake_stages:"


def fns(name: str = "write_stage", **over: str) -> dict[str, str]:
    return {s: FAKE + over.get(s, name) for s in STAGES}


def settings(tmp_path: Path, **kw) -> Settings:
    kw.setdefault("diarizer", "local")
    return Settings(workdir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"), **kw)


def manifest_with(tmp_path: Path, titles: list[str]) -> Manifest:
    m = Manifest(tmp_path / "m.db")
    for i, title in enumerate(titles):
        assert m.add_video(NewVideo(f"generic_v{i}", f"https://example.org/v{i}", None,
                                    f"test:{i}", {"title": title})) == "added"
    return m


def calls(tmp_path: Path) -> Counter:
    log = tmp_path / "work" / "calls.log"
    return Counter(log.read_text().splitlines()) if log.exists() else Counter()


def statuses(m: Manifest, vid: str) -> dict[str, str]:
    return {s: r.status for s, r in m.stages_of(vid).items()}


def test_every_stage_runs_once_in_order_with_earlier_outputs_as_inputs(tmp_path):
    m = manifest_with(tmp_path, ["a", "b", "c"])
    summary = run_stages(m, settings(tmp_path), executor="inline", functions=fns(),
                         provenance={})
    assert summary.outcomes == {s: {"done": 3, "failed": 0, "skipped": 0} for s in STAGES}
    assert set(calls(tmp_path).values()) == {1} and len(calls(tmp_path)) == 18
    export = (tmp_path / "work" / "export" / "generic_v1.txt").read_text()
    assert export.strip() == ("export generic_v1 ['audio.txt', 'diarize.txt', 'metadata.txt', "
                              "'relevance.txt', 'transcribe.txt']")
    rows = m.stages_of("generic_v1")
    out = rows["audio"].outputs["txt"]
    assert out["path"] == "work/audio/generic_v1.txt"  # relative to the manifest's folder
    assert len(out["sha256"]) == 64 and out["bytes"] > 0
    assert rows["audio"].attempts == 1 and rows["audio"].detail == {"attempt": 1}
    assert m.video("generic_v1").meta["export_seen"] is True  # stage meta merged
    assert m.counts()["stages"]["export"]["done"] == 3
    run = m.runs()[-1]
    assert run["status"] == "finished" and run["settings"]["diarizer"] == "local"

    again = run_stages(m, settings(tmp_path), executor="inline", functions=fns(), provenance={})
    assert again.outcomes == {} and len(calls(tmp_path)) == 18  # nothing redone
    assert set(calls(tmp_path).values()) == {1}


def test_failures_block_downstream_and_skips_cascade_then_retry(tmp_path):
    m = manifest_with(tmp_path, ["ok", "bad", "long"])
    run_stages(m, settings(tmp_path), executor="inline",
               functions=fns(audio="flaky_stage"), provenance={})
    assert set(statuses(m, "generic_v0").values()) == {"done"}
    bad = m.stages_of("generic_v1")
    assert bad["audio"].status == "failed" and bad["audio"].last_error.startswith("HTTP Error 503")
    assert [bad[s].status for s in STAGES[2:]] == ["pending"] * 4  # blocked, not attempted
    assert all(bad[s].attempts == 0 for s in STAGES[2:])
    long = m.stages_of("generic_v2")
    assert long["audio"].status == "skipped" and long["audio"].last_error == "longer than 10 s"
    assert long["transcribe"].status == "skipped"
    assert long["transcribe"].last_error == "after audio: longer than 10 s"
    assert long["export"].status == "skipped"  # the skip cascades through every later stage

    # a blocked video is left alone by a rerun: no attempt is wasted
    run_stages(m, settings(tmp_path), executor="inline",
               functions=fns(audio="flaky_stage"), provenance={})
    assert m.stages_of("generic_v1")["audio"].attempts == 1

    m.update_meta("generic_v1", {"title": "fixed"})
    assert m.retry(failed_only=True) == 1
    run_stages(m, settings(tmp_path), executor="inline",
               functions=fns(audio="flaky_stage"), provenance={})
    fixed = m.stages_of("generic_v1")
    assert set(r.status for r in fixed.values()) == {"done"}
    assert fixed["audio"].attempts == 2 and fixed["audio"].last_error is None


def test_retry_stage_redoes_it_and_every_later_stage(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    run_stages(m, settings(tmp_path), executor="inline", functions=fns(), provenance={})
    assert m.retry("relevance", failed_only=False) == 2  # relevance and export
    run_stages(m, settings(tmp_path), executor="inline", functions=fns(), provenance={})
    c = calls(tmp_path)
    assert c["relevance generic_v0"] == 2 and c["export generic_v0"] == 2
    assert c["diarize generic_v0"] == 1
    with pytest.raises(DeescalwildError):
        m.retry(None, failed_only=False)


def test_gemini_settings_skip_transcription_as_a_pass_through(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    run_stages(m, settings(tmp_path, diarizer="gemini"), executor="inline", functions=fns(),
               provenance={})
    rows = m.stages_of("generic_v0")
    assert rows["transcribe"].status == "skipped" and rows["transcribe"].detail["passthrough"]
    assert "gemini transcribes" in rows["transcribe"].last_error
    assert rows["export"].status == "done"
    diarize_inputs = (tmp_path / "work" / "diarize" / "generic_v0.txt").read_text()
    assert "transcribe.txt" not in diarize_inputs and "audio.txt" in diarize_inputs


def test_selected_stages_only_and_relevance_on_a_transcript_without_diarization(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    run_stages(m, settings(tmp_path), stages=["metadata", "audio", "transcribe"],
               executor="inline", functions=fns(), provenance={})
    assert statuses(m, "generic_v0")["diarize"] == "pending"
    # relevance alone judges the plain transcription when diarization is not part of the run
    run_stages(m, settings(tmp_path), stages=["relevance"], executor="inline", functions=fns(),
               provenance={})
    assert statuses(m, "generic_v0")["relevance"] == "done"
    assert statuses(m, "generic_v0")["export"] == "pending"  # needs diarize


def test_a_missing_or_changed_output_is_redone(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    run_stages(m, settings(tmp_path), stages=STAGES[:3], executor="inline", functions=fns(),
               provenance={})
    (tmp_path / "work" / "audio" / "generic_v0.txt").unlink()
    run_stages(m, settings(tmp_path), executor="inline", functions=fns(), provenance={})
    c = calls(tmp_path)
    assert c["audio generic_v0"] == 2 and c["metadata generic_v0"] == 1
    assert set(statuses(m, "generic_v0").values()) == {"done"}


def test_crashes_and_dead_workers_are_failures_not_a_stopped_run(tmp_path):
    m = manifest_with(tmp_path, ["a", "b"])
    run_stages(m, settings(tmp_path), stages=["metadata"], executor="inline",
               functions=fns("crashing_stage"), provenance={})
    row = m.stages_of("generic_v0")["metadata"]
    assert row.status == "failed"
    assert row.last_error == "ZeroDivisionError: division by zero in a library"

    m2 = manifest_with(tmp_path / "pool", ["a", "b", "c"])
    s = settings(tmp_path / "pool")
    summary = run_stages(m2, s, stages=["metadata", "audio"], executor="local", workers=2,
                         functions=fns(audio="dying_stage"), provenance={})
    # a dead worker breaks the pool: whatever ran beside it fails too (retryable), the run
    # goes on with a new pool and every video gets its outcome
    meta = summary.outcomes["metadata"]
    assert meta["done"] + meta["failed"] == 3 and meta["done"] >= 1
    for vid in ("generic_v0", "generic_v1", "generic_v2"):
        rows = m2.stages_of(vid)
        if rows["metadata"].status == "done":
            assert rows["audio"].status == "failed"
        else:  # failed beside a dying audio stage: its audio waits for a retry
            assert rows["audio"].status == "pending" and rows["audio"].attempts == 0
    for row in m2.stage_rows(status="failed"):
        assert row.last_error.startswith("worker process died") and row.attempts == 1


def test_secrets_never_reach_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123")
    m = manifest_with(tmp_path, ["a"])
    monkeypatch.setenv("FAKE_ERROR", "bad key sk-secret-value-123 rejected")
    run_stages(m, settings(tmp_path), stages=["metadata"], executor="inline",
               functions={"metadata": "acquire_fake_stages:secret_leaking_stage"}, provenance={})
    row = m.stages_of("generic_v0")["metadata"]
    assert row.status == "failed" and "sk-secret" not in row.last_error and "***" in row.last_error
    raw = (tmp_path / "m.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("m.db*") if p.is_file())
    assert b"sk-secret-value-123" not in raw


def test_ctrl_c_puts_stages_in_flight_back_to_pending(tmp_path):
    m = manifest_with(tmp_path, ["a", "b", "c"])

    def interrupt(done, total, last):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stages(m, settings(tmp_path), executor="local", workers=2, functions=fns(),
                   progress=interrupt, provenance={})
    counts = m.counts()["stages"]
    assert sum(c["running"] for c in counts.values()) == 0
    assert m.runs()[-1]["status"] == "interrupted"
    run_stages(m, settings(tmp_path), executor="inline", functions=fns(), provenance={})
    assert all(counts["done"] == 3 for counts in m.counts()["stages"].values())


def test_one_run_at_a_time(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    other = Manifest(tmp_path / "m.db")
    other.acquire()
    try:
        with pytest.raises(ManifestBusy, match="a run is in progress"):
            run_stages(m, settings(tmp_path), executor="inline", functions=fns(), provenance={})
    finally:
        other.close()
    run_stages(m, settings(tmp_path), executor="inline", functions=fns(), provenance={})


def test_duplicates_merge_metadata_and_aliases(tmp_path):
    m = Manifest(tmp_path / "m.db")
    v = NewVideo("youtube_abcdefghijk", "https://www.youtube.com/watch?v=abcdefghijk",
                 "youtube", "a.csv:2", {"title": "T"}, aliases=["https://youtu.be/abcdefghijk"])
    assert m.add_video(v) == "added"
    again = NewVideo("youtube_abcdefghijk", "https://www.youtube.com/watch?v=abcdefghijk",
                     "youtube", "cli", {"title": "other", "duration_s": 30})
    assert m.add_video(again) == "duplicate"
    assert m.video("youtube_abcdefghijk").meta == {"title": "T", "duration_s": 30}
    assert m.video_for_url("https://youtu.be/abcdefghijk") == "youtube_abcdefghijk"
    assert m.status()["videos"] == 1
    assert m.status()["stages"]["metadata"]["pending"] == 1


def test_a_file_that_is_not_a_manifest_is_refused(tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(DeescalwildError, match="not an acquisition manifest"):
        Manifest(other)
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DeescalwildError, match=r"junk\.db"):
        Manifest(tmp_path / "junk.db")


def test_pacer_spaces_starts():
    now = [0.0]
    p = Pacer(4.0, clock=lambda: now[0])
    assert p.wait_s() == 0
    p.take()
    assert p.wait_s() == pytest.approx(0.25)
    now[0] = 0.1
    assert p.wait_s() == pytest.approx(0.15)
    now[0] = 1.0
    assert p.wait_s() == 0
    assert Pacer(None).interval == 0


def test_rate_limits_network_stage_starts(tmp_path):
    m = manifest_with(tmp_path, ["a", "b", "c", "d", "e"])
    t0 = time.perf_counter()
    run_stages(m, settings(tmp_path), stages=["metadata"], executor="inline", functions=fns(),
               rate=10.0, provenance={})
    assert time.perf_counter() - t0 >= 0.39  # 5 starts at 10/s: the last one 0.4 s after the first


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from deescalwild.acquire.manifest import Manifest
from deescalwild.acquire.runner import run_stages
from deescalwild.acquire.tasks import STAGES, Settings
m = Manifest({db!r})
s = Settings(workdir={work!r}, out_dir={out!r}, diarizer="local")
run_stages(m, s, executor="local", workers=2, provenance={{}},
           functions={{st: "acquire_fake_stages:slow_stage" for st in STAGES}})
"""


@pytest.mark.slow
def test_kill_9_mid_stage_then_rerun_finishes_without_redoing_or_duplicating(tmp_path):
    m = manifest_with(tmp_path, [f"v{i}" for i in range(6)])
    m.close()
    work = tmp_path / "work"
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), db=str(tmp_path / "m.db"),
                                 work=str(work), out=str(tmp_path / "out"))
    env = {**os.environ, "FAKE_STAGE_SLEEP": "0.3"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if len(calls(tmp_path)) >= 8:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run made no progress")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, no cleanup at all
        proc.wait()
    m = Manifest(tmp_path / "m.db")
    before = {r.video_id + "/" + r.stage: r.status for r in m.stage_rows()}
    done_before = {k for k, v in before.items() if v == "done"}
    assert "running" in before.values() and done_before  # killed mid-stage, some work done
    calls_before = calls(tmp_path)

    summary = run_stages(m, settings(tmp_path), executor="local", workers=2, provenance={},
                         functions=fns("slow_stage"))
    assert summary.recovered >= 1
    assert all(c["done"] == 6 and c["pending"] == c["running"] == 0
               for c in m.counts()["stages"].values())
    after = calls(tmp_path)
    for key in done_before:  # finished work is not redone
        vid, stage = key.split("/")
        assert after[f"{stage} {vid}"] == calls_before[f"{stage} {vid}"] == 1
    assert max(after.values()) <= 2  # only the stages in flight at the kill ran twice
    for vid in (f"generic_v{i}" for i in range(6)):  # one output per stage, no leftovers
        for stage in STAGES:
            files = list((work / stage).glob(f"{vid}*"))
            assert [f.name for f in files] == [f"{vid}.txt"]
    interrupted = [r for r in m.runs() if r["status"] == "interrupted"]
    assert len(interrupted) == 1
    m.close()


def test_a_short_link_that_resolves_to_a_known_video_is_its_duplicate(tmp_path):
    m = Manifest(tmp_path / "m.db")
    page = "https://www.tiktok.com/@cops/video/7234567890123456789"
    m.add_video(NewVideo("url_0123456789ab", "https://vm.tiktok.com/ZMabc/", None, "t:1",
                         {"title": "a", "resolves_to": page + "?is_from_webapp=1"}))
    m.add_video(NewVideo("tiktok_7234567890123456789", page, "tiktok", "t:2", {"title": "b"}))
    m.add_video(NewVideo("url_fedcba987654", "https://fb.watch/xyz/", None, "t:3",
                         {"title": "c", "resolves_to": "https://example.org/clip"}))
    fs = fns(metadata="resolving_stage")
    run_stages(m, settings(tmp_path), executor="inline", functions=fs, provenance={})
    short = m.stages_of("url_0123456789ab")
    assert short["metadata"].status == "skipped"
    assert short["metadata"].last_error == "duplicate of tiktok_7234567890123456789"
    assert {short[s].status for s in STAGES[1:]} == {"skipped"}  # never exported twice
    assert set(statuses(m, "tiktok_7234567890123456789").values()) == {"done"}
    # a short link to a page not in the manifest: its page becomes an alias
    assert set(statuses(m, "url_fedcba987654").values()) == {"done"}
    assert m.video_for_url("https://example.org/clip") == "url_fedcba987654"


def test_a_new_rule_rejudges_from_the_cache_and_redoes_the_export(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    run_stages(m, settings(tmp_path), executor="inline", functions=fns("ruled_stage"),
               provenance={})
    assert m.stages_of("generic_v0")["relevance"].detail["rule"] == settings(tmp_path).rule
    run_stages(m, settings(tmp_path, rule="police >= 1"), executor="inline",
               functions=fns("ruled_stage"), provenance={})
    c = calls(tmp_path)
    assert c["relevance generic_v0"] == 2 and c["export generic_v0"] == 2
    assert c["diarize generic_v0"] == 1
    assert m.stages_of("generic_v0")["relevance"].detail["rule"] == "police >= 1"


def test_failures_record_whether_they_are_retryable(tmp_path):
    m = manifest_with(tmp_path, ["bad", "ok"])
    run_stages(m, settings(tmp_path), stages=["metadata"], executor="inline",
               functions=fns(metadata="flaky_stage"), provenance={})
    assert m.stages_of("generic_v0")["metadata"].retryable is True
    run_stages(m, settings(tmp_path), stages=["audio"], executor="inline",
               functions=fns(audio="crashing_stage"), provenance={})
    assert m.stages_of("generic_v1")["audio"].retryable is False


def test_pass_through_skips_satisfy_nothing_and_reopen_when_needed(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    gemini = settings(tmp_path, diarizer="gemini")
    run_stages(m, gemini, stages=["metadata", "audio", "transcribe"], executor="inline",
               functions=fns(), provenance={})
    assert statuses(m, "generic_v0")["transcribe"] == "skipped"
    # relevance alone must not run on a skipped transcription: there is no file to judge
    run_stages(m, gemini, stages=["relevance"], executor="inline", functions=fns(),
               provenance={})
    assert statuses(m, "generic_v0")["relevance"] == "pending"
    # diarizing locally needs the transcription after all: it runs, then everything else
    run_stages(m, settings(tmp_path, diarizer="local"), executor="inline", functions=fns(),
               provenance={})
    assert set(statuses(m, "generic_v0").values()) == {"done"}
    assert calls(tmp_path)["transcribe generic_v0"] == 1


def test_a_failed_setup_releases_the_lock(tmp_path):
    m = manifest_with(tmp_path, ["a"])
    with pytest.raises(DeescalwildError, match="unknown executor"):
        run_stages(m, settings(tmp_path), executor="bogus", functions=fns(), provenance={})
    other = Manifest(tmp_path / "m.db")
    other.acquire()  # not ManifestBusy
    other.close()
    assert all(r["status"] != "running" for r in m.runs())


_ORPHAN_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from deescalwild.acquire.manifest import Manifest
from deescalwild.acquire.runner import run_stages
from deescalwild.acquire.tasks import STAGES, Settings
m = Manifest({db!r})
s = Settings(workdir={work!r}, out_dir={out!r}, diarizer="local")
run_stages(m, s, executor="local", workers=2, provenance={{}}, stages=["metadata"],
           functions={{"metadata": "acquire_fake_stages:pid_stage"}})
"""


@pytest.mark.slow
def test_workers_die_with_a_killed_runner(tmp_path):
    """kill -9 of the runner alone (an OOM kill): its workers must not go on writing files
    once the run lock is gone."""
    m = manifest_with(tmp_path, ["a", "b"])
    m.close()
    work = tmp_path / "work"
    script = _ORPHAN_SCRIPT.format(tests=str(Path(__file__).parent), db=str(tmp_path / "m.db"),
                                   work=str(work), out=str(tmp_path / "out"))
    proc = subprocess.Popen([sys.executable, "-c", script],
                            env={**os.environ, "FAKE_STAGE_SLEEP": "30"})
    pids = work / "pids"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(pids.glob("*"))) < 2:
        time.sleep(0.05)
    workers = [int(p.name) for p in pids.glob("*")]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)  # the runner only
    proc.wait()
    deadline = time.time() + 10
    alive = workers
    while alive and time.time() < deadline:
        alive = [p for p in workers if _alive(p)]
        time.sleep(0.1)
    assert not alive, "worker processes outlived the runner"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead
        return fh.read().split(") ")[1][0] != "Z"
