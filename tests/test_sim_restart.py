"""Sessions survive a server restart: `deescalwild serve` as a subprocess, a session played
over HTTP and ended, the process terminated, a new one on the same --db finds the session, its
turns and its report intact."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow  # two server start-ups: a few seconds

TURNS = ["Hi, I'm Officer Diaz. Can you tell me your name?",
         "I can see you're upset, and that makes sense.",
         "Shut up and get on the ground now!"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db: Path, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("DEESCALWILD_TOKEN", None)
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deescalwild", "serve", "--port", str(self.port),
                 "--db", str(db)], stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}): {log.read_text()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server did not answer /healthz: {log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_sessions_survive_a_restart(tmp_path):
    db = tmp_path / "sim.db"
    first = Server(db, tmp_path / "first.log")
    try:
        with httpx.Client(base_url=first.base, timeout=30) as c:
            card = c.get("/api/cards").json()[0]["id"]
            sid = c.post("/api/sessions", json={"card_id": card}).json()["session_id"]
            replies = [c.post(f"/api/sessions/{sid}/turns", json={"text": t}).json()
                       for t in TURNS]
            report = c.post(f"/api/sessions/{sid}/end").json()
            html = c.get(f"/sessions/{sid}/report").text
            # a second session left running when the server stops
            live = c.post("/api/sessions", json={"card_id": card}).json()["session_id"]
            c.post(f"/api/sessions/{live}/turns", json={"text": TURNS[0]})
            before = c.get(f"/api/sessions/{sid}").json()
    finally:
        first.stop()
    assert first.proc.returncode == 0, first.log.read_text()  # SIGTERM: a clean exit
    assert not db.with_name("sim.db-wal").exists()  # the store was closed (WAL checkpointed)

    second = Server(db, tmp_path / "second.log")
    try:
        with httpx.Client(base_url=second.base, timeout=30) as c:
            after = c.get(f"/api/sessions/{sid}").json()
            assert after == before
            assert [t["reply"] for t in after["turns"]] == [r["reply"] for r in replies]
            assert [t["agitation_after"] for t in after["turns"]] == \
                [r["agitation"] for r in replies]
            assert after["ended"] and after["card_id"] == card
            assert c.get(f"/api/sessions/{sid}/report").json() == report
            assert c.get(f"/sessions/{sid}/report").text == html
            rows = {r["id"]: r for r in c.get("/api/sessions").json()}
            assert rows[sid]["turns"] == 3 and rows[sid]["score"] == report["score"]["value"]
            assert rows[live]["turns"] == 1 and rows[live]["ended_at"] is None
            # the session left running goes on where it stopped
            t = c.post(f"/api/sessions/{live}/turns", json={"text": TURNS[1]}).json()
            assert t["turn"] == 1
            assert c.post(f"/api/sessions/{sid}/turns", json={"text": "hi"}).status_code == 409
    finally:
        second.stop()
