"""The acquisition manifest: one SQLite file that says, for every video, what each stage did.

The reference pipeline kept its progress in the outputs themselves and marked a failed or
truncated diarization as processed; 239 of ~1,100 videos came back empty and nothing said so.
Here the manifest is the only record of progress, and the runner is its only writer. Choices:

- **One row per (video, stage)**, created when the video is added, with `status` (pending,
  running, done, failed, skipped), `attempts`, `last_error`, `outputs` (name -> path, sha256,
  bytes), a small `detail` (what `status` and later stages read), and `private` (speaker names:
  kept here, never in an output file).
- **A stage is done only when its files are in place.** Stages write atomically and the runner
  records the outcome after the files exist, in one transaction. A run killed in between leaves
  the row `running`; the next run puts it back to `pending` (`reset_interrupted`) and the stage
  runs again, overwriting its own file: nothing is lost or counted twice.
- **One run at a time** per manifest: an exclusive `flock` on `<manifest>.lock`, released by the
  kernel when the process dies, even under `kill -9`.
- **Duplicates** are the same key (`youtube_<video id>`, `tiktok_<id>`, ...): adding a video
  again merges metadata it lacked and records the other spelling of its URL as an alias.
- stdlib `sqlite3`, WAL, numbered migrations (`PRAGMA user_version`), as the simulator's store.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deescalwild.acquire.tasks import STAGES, STATUSES, StageOutcome
from deescalwild.errors import DeescalwildError

__all__ = ["DEFAULT_MANIFEST", "STATUS_SCHEMA", "Manifest", "ManifestBusy", "NewVideo",
           "StageRow", "VideoRow"]

DEFAULT_MANIFEST = "deescalwild-acquire.db"
STATUS_SCHEMA = "deescalwild.acquire-status/1"


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE videos (
        id TEXT PRIMARY KEY, url TEXT NOT NULL, platform TEXT, source TEXT NOT NULL,
        added_at REAL NOT NULL, meta TEXT NOT NULL)""")
    db.execute("""CREATE TABLE aliases (
        url TEXT PRIMARY KEY, video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE)""")
    db.execute(f"""CREATE TABLE stages (
        video_id TEXT NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        stage TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
        attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        outputs TEXT NOT NULL DEFAULT '{{}}', detail TEXT NOT NULL DEFAULT '{{}}',
        private TEXT NOT NULL DEFAULT '{{}}', run_id INTEGER, started_at REAL,
        finished_at REAL, seconds REAL, PRIMARY KEY (video_id, stage))""")
    db.execute("CREATE INDEX stages_status ON stages(stage, status)")
    db.execute("""CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, finished_at REAL,
        status TEXT NOT NULL, pid INTEGER, command TEXT NOT NULL, settings TEXT NOT NULL,
        provenance TEXT NOT NULL, counts TEXT)""")


def _m002_retryable(db: sqlite3.Connection) -> None:
    """Whether a failure may go away by itself (429, 5xx, timeouts) or needs a change."""
    db.execute("ALTER TABLE stages ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0")


# Append only: never edit a migration that has shipped; add the next one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_initial, _m002_retryable]


class ManifestBusy(DeescalwildError):
    """Another run holds the manifest."""


@dataclass
class NewVideo:
    """A video to add. `id` is its key (see `sources.video_key`); `aliases` are other URLs
    that name it (as the user typed them)."""

    id: str
    url: str
    platform: str | None
    source: str  # what added it: a URL as given, or "list.csv:12"
    meta: dict[str, Any] = field(default_factory=dict)
    aliases: Sequence[str] = ()


@dataclass
class VideoRow:
    id: str
    url: str
    platform: str | None
    source: str
    added_at: float
    meta: dict[str, Any]


@dataclass
class StageRow:
    video_id: str
    stage: str
    status: str
    attempts: int = 0
    last_error: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    private: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None
    retryable: bool = False  # for a failure: 429/5xx/timeouts, may succeed unchanged


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


class Manifest:
    """Open (creating if needed) the manifest at `path`. Thread-safe: one connection behind a
    lock, as the runner records outcomes from one thread while progress is drawn in another."""

    def __init__(self, path: str | Path = DEFAULT_MANIFEST) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._run_lock: int | None = None
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                      isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise DeescalwildError(f"{self.path}: not a deescalwild acquisition manifest "
                                   f"({e})") from e

    # --- housekeeping ---------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise DeescalwildError(f"{self.path}: made by a newer deescalwild (manifest version "
                                   f"{version}, this one knows {len(MIGRATIONS)}); upgrade")
        if version == 0:
            tables = self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise DeescalwildError(f"{self.path}: an SQLite file that is not an acquisition "
                                       "manifest; choose another --manifest")
        for i in range(version, len(MIGRATIONS)):
            with self.transaction() as db:
                MIGRATIONS[i](db)
                db.execute(f"PRAGMA user_version = {i + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.release()
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def acquire(self) -> None:
        """Take the run lock, or raise `ManifestBusy` naming the process that holds it."""
        import fcntl

        if self._run_lock is not None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ManifestBusy(f"{self.path}: a run is in progress (pid {holder}); wait for it "
                               "or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._run_lock = fd

    def release(self) -> None:
        if self._run_lock is not None:
            os.close(self._run_lock)  # closing the descriptor drops the flock
            self._run_lock = None

    # --- output paths ---------------------------------------------------------------------
    def stored_path(self, path: str | Path) -> str:
        """How an output path is stored: relative to the manifest's folder when under it (the
        project folder can move), else absolute."""
        p = Path(path).resolve()
        try:
            return str(p.relative_to(self.path.parent.resolve()))
        except ValueError:
            return str(p)

    def resolve(self, path: str | Path) -> Path:
        """A stored output path as an absolute path (what a worker anywhere can open)."""
        p = Path(path)
        return p if p.is_absolute() else self.path.parent.resolve() / p

    # --- videos ---------------------------------------------------------------------------
    def add_video(self, video: NewVideo) -> str:
        """Insert `video` with a pending row per stage. Returns "added", or "duplicate" when
        its key (or one of its URLs) is already there: metadata it lacked is merged in."""
        now = time.time()
        with self.transaction() as db:
            urls = [video.url, *video.aliases]
            known = None
            for u in urls:
                row = db.execute("SELECT video_id FROM aliases WHERE url = ?", (u,)).fetchone()
                if row:
                    known = row[0]
                    break
            if known is None and db.execute("SELECT 1 FROM videos WHERE id = ?",
                                            (video.id,)).fetchone():
                known = video.id
            if known is not None:
                meta = json.loads(db.execute("SELECT meta FROM videos WHERE id = ?",
                                             (known,)).fetchone()[0])
                merged = {**video.meta, **{k: v for k, v in meta.items() if v not in (None, "")}}
                if merged != meta:
                    db.execute("UPDATE videos SET meta = ? WHERE id = ?", (_dumps(merged), known))
                for u in urls:
                    db.execute("INSERT OR IGNORE INTO aliases (url, video_id) VALUES (?, ?)",
                               (u, known))
                return "duplicate"
            db.execute("INSERT INTO videos (id, url, platform, source, added_at, meta) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (video.id, video.url, video.platform, video.source, now,
                        _dumps(video.meta)))
            for u in urls:
                db.execute("INSERT OR IGNORE INTO aliases (url, video_id) VALUES (?, ?)",
                           (u, video.id))
            db.executemany("INSERT INTO stages (video_id, stage, status) VALUES (?, ?, "
                           "'pending')", [(video.id, s) for s in STAGES])
            return "added"

    def video(self, video_id: str) -> VideoRow | None:
        with self._lock:
            row = self.db.execute("SELECT id, url, platform, source, added_at, meta FROM videos "
                                  "WHERE id = ?", (video_id,)).fetchone()
        return None if row is None else VideoRow(*row[:5], json.loads(row[5]))

    def videos(self) -> list[VideoRow]:
        with self._lock:
            rows = self.db.execute("SELECT id, url, platform, source, added_at, meta FROM videos "
                                   "ORDER BY added_at, rowid").fetchall()
        return [VideoRow(*r[:5], json.loads(r[5])) for r in rows]

    def video_for_url(self, url: str) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT video_id FROM aliases WHERE url = ?", (url,)).fetchone()
        return row[0] if row else None

    def add_alias(self, url: str, video_id: str) -> str:
        """Record `url` as naming `video_id`; returns the video it names (an earlier one when
        the URL was already known)."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO aliases (url, video_id) VALUES (?, ?)",
                       (url, video_id))
            return db.execute("SELECT video_id FROM aliases WHERE url = ?", (url,)).fetchone()[0]

    def update_meta(self, video_id: str, meta: dict[str, Any]) -> None:
        """Merge `meta` into the video's metadata (new values win)."""
        with self.transaction() as db:
            self._merge_meta(db, video_id, meta)

    @staticmethod
    def _merge_meta(db: sqlite3.Connection, video_id: str, meta: dict[str, Any]) -> None:
        if not meta:
            return
        row = db.execute("SELECT meta FROM videos WHERE id = ?", (video_id,)).fetchone()
        db.execute("UPDATE videos SET meta = ? WHERE id = ?",
                   (_dumps({**json.loads(row[0]), **meta}), video_id))

    # --- stages ---------------------------------------------------------------------------
    _STAGE_COLS = ("video_id, stage, status, attempts, last_error, outputs, detail, private, "
                   "run_id, started_at, finished_at, seconds, retryable")

    @staticmethod
    def _stage_row(r: Sequence[Any]) -> StageRow:
        return StageRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]),
                        json.loads(r[7]), r[8], r[9], r[10], r[11], bool(r[12]))

    def stages_of(self, video_id: str) -> dict[str, StageRow]:
        with self._lock:
            rows = self.db.execute(f"SELECT {self._STAGE_COLS} FROM stages WHERE video_id = ?",
                                   (video_id,)).fetchall()
        return {r[1]: self._stage_row(r) for r in rows}

    def stage_rows(self, stage: str | None = None,
                   status: str | Sequence[str] | None = None) -> list[StageRow]:
        where, args = [], []
        if stage is not None:
            where.append("stage = ?")
            args.append(stage)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        sql = f"SELECT {self._STAGE_COLS} FROM stages"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self.db.execute(sql + " ORDER BY rowid", args).fetchall()
        return [self._stage_row(r) for r in rows]

    def set_stage(self, video_id: str, stage: str, status: str, *,
                  outputs: dict[str, dict[str, Any]] | None = None,
                  detail: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Set a stage directly (`add` attaching captions or a transcript it already has)."""
        with self.transaction() as db:
            db.execute("UPDATE stages SET status = ?, outputs = ?, detail = ?, last_error = ?, "
                       "finished_at = ? WHERE video_id = ? AND stage = ?",
                       (status, _dumps(outputs or {}), _dumps(detail or {}), error, time.time(),
                        video_id, stage))

    def mark_running(self, video_id: str, stage: str, run_id: int) -> int:
        """Count an attempt and mark the stage running; returns the attempt number."""
        with self.transaction() as db:
            db.execute("UPDATE stages SET status = 'running', attempts = attempts + 1, "
                       "run_id = ?, started_at = ? WHERE video_id = ? AND stage = ?",
                       (run_id, time.time(), video_id, stage))
            return db.execute("SELECT attempts FROM stages WHERE video_id = ? AND stage = ?",
                              (video_id, stage)).fetchone()[0]

    def record(self, video_id: str, stage: str, outcome: StageOutcome) -> None:
        """Store what a stage did, in one transaction with the metadata it found. `outputs`
        are stored with their hashes (the worker computed them)."""
        outputs = {name: {"path": path, **outcome.hashes.get(name, {})}
                   for name, path in outcome.outputs.items()}
        with self.transaction() as db:
            db.execute("UPDATE stages SET status = ?, last_error = ?, outputs = ?, detail = ?, "
                       "private = ?, finished_at = ?, seconds = ?, retryable = ? "
                       "WHERE video_id = ? AND stage = ?",
                       (outcome.status, outcome.error, _dumps(outputs), _dumps(outcome.detail),
                        _dumps(outcome.private), time.time(), round(outcome.seconds, 3),
                        int(outcome.status == "failed" and outcome.retryable), video_id, stage))
            self._merge_meta(db, video_id, outcome.meta)

    def reset_interrupted(self) -> int:
        """Stages left `running` by a run that died go back to `pending` (their attempt
        counted, the reason recorded). Call only while holding the run lock."""
        with self.transaction() as db:
            cur = db.execute("UPDATE stages SET status = 'pending', last_error = "
                             "'interrupted: run ' || coalesce(run_id, '?') || ' stopped before "
                             "this stage finished' WHERE status = 'running'")
            db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            return cur.rowcount

    def retry(self, stage: str | None = None, failed_only: bool = True) -> int:
        """Queue stages again. `failed_only`: failed rows (of `stage`, or of every stage).
        Otherwise `stage` and every later stage of every video go back to pending (to redo
        them with new settings); their old outputs stay until the new ones replace them."""
        with self.transaction() as db:
            if failed_only:
                sql, args = "UPDATE stages SET status = 'pending' WHERE status = 'failed'", []
                if stage is not None:
                    sql += " AND stage = ?"
                    args.append(stage)
                return db.execute(sql, args).rowcount
            if stage is None:
                raise DeescalwildError("retry without --failed needs --stage S")
            later = STAGES[STAGES.index(stage):]
            marks = ", ".join("?" * len(later))
            return db.execute(f"UPDATE stages SET status = 'pending' WHERE stage IN ({marks}) "
                              "AND status != 'pending'", later).rowcount

    # --- runs and counts ------------------------------------------------------------------
    def start_run(self, command: str, settings: dict[str, Any],
                  provenance: dict[str, Any]) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO runs (started_at, status, pid, command, settings, "
                             "provenance) VALUES (?, 'running', ?, ?, ?, ?)",
                             (time.time(), os.getpid(), command, _dumps(settings),
                              _dumps(provenance)))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, counts: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?",
                       (time.time(), status, _dumps(counts), run_id))

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute("SELECT id, started_at, finished_at, status, pid, command, "
                                   "settings, provenance, counts FROM runs ORDER BY id").fetchall()
        keys = ("id", "started_at", "finished_at", "status", "pid", "command", "settings",
                "provenance", "counts")
        out = []
        for r in rows:
            d = dict(zip(keys, r))
            for k in ("settings", "provenance", "counts"):
                d[k] = json.loads(d[k]) if d[k] else None
            out.append(d)
        return out

    def counts(self) -> dict[str, Any]:
        """`{"videos": n, "stages": {stage: {status: n, ...}}}`, every status present."""
        with self._lock:
            n = self.db.execute("SELECT count(*) FROM videos").fetchone()[0]
            rows = self.db.execute("SELECT stage, status, count(*) FROM stages "
                                   "GROUP BY stage, status").fetchall()
        stages = {s: dict.fromkeys(STATUSES, 0) for s in STAGES}
        for stage, status, k in rows:
            stages.setdefault(stage, dict.fromkeys(STATUSES, 0))[status] = k
        return {"videos": n, "stages": stages}

    def status(self) -> dict[str, Any]:
        """What `acquire status --json` prints."""
        return {"schema": STATUS_SCHEMA, "manifest": str(self.path), **self.counts()}
