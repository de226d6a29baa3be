"""The real command, killed with SIGKILL in the middle of the relevance stage, then rerun.

`deescalwild acquire add` takes a DeEscalWild-style list and a folder of transcripts;
`acquire run --stages relevance,export` judges them through the OpenAI SDK against a local fake
judge that answers slowly, in two worker processes. The first run is killed (runner and
workers, no cleanup) once some videos are judged; the second run must finish the rest without
asking the judge again about videos already judged, and leave exactly one CSV and one JSON per
video, which `corpus import` reads back."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_llm_servers import FakeOpenAIServer, Say

from deescalwild.acquire.relevance.taxonomy import FEATURE_NAMES
from deescalwild.corpus.importer import import_transcripts

pytestmark = pytest.mark.slow

N = 8
POSITIVE = {"police_identified_by_role", "police_commands_present", "id_request_event",
            "conversation_present", "raised_threat_language", "accusatory_language",
            "police_warning_language", "calming_language_used_by_officer"}
JUDGEMENT = json.dumps({"features": {n: n in POSITIVE for n in FEATURE_NAMES}})
LIST_COLUMNS = ["id", "Index", "Title", "URL", "Uploader", "Views", "Upload Date",
                "Duration (sec)", "Description", "Transcript", "channel_name"]


def make_inputs(root: Path) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    transcripts = root / "published"
    transcripts.mkdir()
    with (root / "raw_youtube_video_list.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(LIST_COLUMNS)
        for i in range(N):
            w.writerow([i, i + 1, f"Traffic stop {i}", f"https://www.youtube.com/watch?v=vid{i:08d}",
                        "Bodycam Channel", 100, "20250101", 120, "", "", "bodycam"])
    for i in range(N):
        with (transcripts / f"youtube_{i}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\r\n")
            w.writerow(["start_time", "speaker_label", "transcript"])
            w.writerow(["00:01", "[Police Officer]", f"License and registration. token{i}x"])
            w.writerow(["00:04", "[Driver]", "Why did you stop me?"])
            w.writerow(["00:07", "[Police Officer]", "Your tail light is out."])
    return root / "raw_youtube_video_list.csv", transcripts


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deescalwild", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def stage_counts(db: Path) -> Counter:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return Counter(con.execute("SELECT stage || '/' || status FROM stages").fetchall())
    finally:
        con.close()


def judged_tokens(srv: FakeOpenAIServer) -> Counter:
    out: Counter = Counter()
    for rec in srv.posts():
        text = json.dumps(rec.body)
        out.update(f"token{i}x" for i in range(N) if f"token{i}x" in text)
    return out


def test_kill_9_during_relevance_then_rerun(tmp_path):
    lst, transcripts = make_inputs(tmp_path / "in")
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-resume", "HF_HUB_OFFLINE": "1"}
    work = tmp_path / "proj"
    work.mkdir()
    add = cli("acquire", "add", str(lst), "--transcripts", str(transcripts), "--json",
              env=env, cwd=work)
    out, _ = add.communicate(timeout=120)
    assert add.returncode == 0, out
    db = work / "deescalwild-acquire.db"
    assert stage_counts(db)[("diarize/done",)] == N

    with FakeOpenAIServer(default=Say(JUDGEMENT, delay_s=0.5)) as srv:
        run_args = ("acquire", "run", "--stages", "relevance,export", "--workers", "2",
                    "--judge", f"openai:{srv.url}#fake-model?max_retries=1&stream=false")
        first = cli(*run_args, env=env, cwd=work)
        try:
            deadline = time.time() + 90
            while time.time() < deadline:
                if stage_counts(db)[("relevance/done",)] >= 3:
                    break
                if first.poll() is not None:
                    pytest.fail(f"the run ended early: {first.communicate()[0]}")
                time.sleep(0.05)
            else:
                pytest.fail("no progress")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        counts = stage_counts(db)
        assert counts[("relevance/running",)] >= 1  # killed mid-stage
        done_before = counts[("relevance/done",)]
        assert done_before < N
        judged_before = judged_tokens(srv)

        second = cli(*run_args, env=env, cwd=work)
        out, _ = second.communicate(timeout=180)
        assert second.returncode == 0, out
        assert "left running by a stopped run were started again" in out

        judged_after = judged_tokens(srv)
    counts = stage_counts(db)
    assert counts[("relevance/done",)] == N and counts[("export/done",)] == N
    assert not any(k[0].endswith(("/running", "/failed")) for k in counts)
    # videos judged (and recorded) before the kill were not sent to the judge again; only the
    # ones in flight at the kill could be asked twice
    assert sum(judged_after.values()) <= N + 2
    assert sum(1 for t, n in judged_after.items() if n > judged_before.get(t, 0)) \
        <= N - done_before + 2
    assert set(judged_after) == {f"token{i}x" for i in range(N)}

    acquired = sorted(p.name for p in (work / "acquired").iterdir())
    assert acquired == sorted([f"youtube_vid{i:08d}.csv" for i in range(N)]
                              + [f"youtube_vid{i:08d}.json" for i in range(N)])
    scenarios, summary = import_transcripts([work / "acquired"])
    assert len(scenarios) == N and not summary.skipped_files
    report = json.loads((work / "acquire-report" / "relevance-report.json").read_text())
    assert report["counts"]["accepted"] == N
