"""Where simulator sessions live: one SQLite file holding sessions, their turns and reports.

A training academy's server restarts (updates, reboots, a crash); the sessions and their
after-action reports must still be there. Choices, and why:

- **stdlib `sqlite3`, one file, WAL.** No server to run; readers (the history page) do not block
  the writer (a turn being appended). Every write is its own transaction, so a killed process
  leaves the file at the last complete turn.
- **One connection, shared, behind a lock** (`check_same_thread=False`). The web app calls the
  store from the thread pool; SQLite serialises writers anyway, and a lock around a connection
  is simpler and faster than a connection per thread for rows this small.
- **Numbered migrations** (simonw/llm's `migrations.py`): a list of functions; `PRAGMA
  user_version` records how many have run, so opening a file twice, or an old file with a newer
  version, runs exactly the missing ones. A file from a newer deescalwild is refused.
- **JSON text columns** for what is nested (verdicts, meta, the report), with the few values the
  history list sorts or shows (times, agitation, score) as plain columns beside them, so listing
  sessions never parses a report. Each session row records its `schema`
  (`deescalwild.sim-session/1`); a report carries its own.
- **Turns are appended**, one row each, unique on (session, index): a turn is stored the moment
  it finishes, and storing the same index twice is an error rather than a silent overwrite.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deescalwild.errors import DeescalwildError
from deescalwild.sim.errors import NotFound
from deescalwild.sim.records import SESSION_SCHEMA, SessionRecord, TurnRecord

__all__ = ["MIGRATIONS", "Store", "report_score"]


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE sessions (
        id TEXT PRIMARY KEY, schema TEXT NOT NULL, card_id TEXT NOT NULL,
        card_title TEXT NOT NULL, responder TEXT NOT NULL, analyser TEXT NOT NULL,
        agitation_start REAL NOT NULL, opening TEXT NOT NULL, started_at REAL NOT NULL,
        ended_at REAL, seed INTEGER NOT NULL, meta TEXT NOT NULL)""")
    db.execute("""CREATE TABLE turns (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL, agitation_after REAL NOT NULL, at REAL NOT NULL,
        data TEXT NOT NULL, PRIMARY KEY (session_id, idx))""")
    db.execute("""CREATE TABLE reports (
        session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
        score REAL, created REAL NOT NULL, data TEXT NOT NULL)""")
    db.execute("CREATE INDEX sessions_started ON sessions(started_at)")


# Append only: never edit a migration that has shipped; add the next one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_initial]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def report_score(report: dict[str, Any]) -> float | None:
    """The session's score from a report: `report["score"]` as a number, or its `value` when the
    report states the score as a dict with its formula. None when there is none."""
    score = report.get("score")
    if isinstance(score, dict):
        score = score.get("value", score.get("total"))
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return None
    return float(score)


class Store:
    """The session store (`":memory:"` for tests and throwaway servers). Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(self.path).expanduser())
        self._lock = threading.RLock()
        try:
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                      isolation_level=None)  # autocommit; explicit BEGINs
            self.db.execute("PRAGMA foreign_keys=ON")
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; fast
            self.migrate()
        except sqlite3.DatabaseError as e:
            raise DeescalwildError(f"{self.path}: not a usable session database ({e}); "
                                   "pass another --db file") from e

    # --- schema ---------------------------------------------------------------------------
    @property
    def version(self) -> int:
        with self._lock:
            return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Run the migrations this file has not had yet; returns how many ran."""
        with self._lock:
            done = self.version
            if done > len(MIGRATIONS):
                raise DeescalwildError(
                    f"{self.path}: written by a newer deescalwild (schema version {done}, this "
                    f"one knows {len(MIGRATIONS)}); upgrade deescalwild or use another --db")
            for i, step in enumerate(MIGRATIONS[done:], start=done + 1):
                with self._tx():
                    step(self.db)
                    self.db.execute(f"PRAGMA user_version={i}")
            return len(MIGRATIONS) - done

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    # --- writes ---------------------------------------------------------------------------
    def save_session(self, rec: SessionRecord) -> None:
        """Insert the session row, or update it (not its turns: see `add_turn`)."""
        row = (rec.id, SESSION_SCHEMA, rec.card_id, rec.card_title, rec.responder, rec.analyser,
               float(rec.agitation_start), rec.opening, float(rec.started_at), rec.ended_at,
               int(rec.seed), _dumps(rec.meta))
        with self._lock, self._tx():
            self.db.execute(
                """INSERT INTO sessions (id, schema, card_id, card_title, responder, analyser,
                     agitation_start, opening, started_at, ended_at, seed, meta)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET schema=excluded.schema,
                     card_id=excluded.card_id, card_title=excluded.card_title,
                     responder=excluded.responder, analyser=excluded.analyser,
                     agitation_start=excluded.agitation_start, opening=excluded.opening,
                     started_at=excluded.started_at, ended_at=excluded.ended_at,
                     seed=excluded.seed, meta=excluded.meta""", row)

    def add_turn(self, session_id: str, turn: TurnRecord) -> None:
        """Append one turn. NotFound for an unknown session; an index stored before is an
        error (turns are never overwritten)."""
        with self._lock:
            try:
                with self._tx():
                    self.db.execute(
                        "INSERT INTO turns (session_id, idx, agitation_after, at, data) "
                        "VALUES (?,?,?,?,?)",
                        (session_id, int(turn.index), float(turn.agitation_after),
                         float(turn.at), _dumps(turn.to_dict())))
            except sqlite3.IntegrityError as e:
                if not self._exists(session_id):
                    raise NotFound(f"unknown session '{session_id}'") from e
                raise DeescalwildError(f"session '{session_id}': turn {turn.index} is already "
                                       "stored; turns are appended, never replaced") from e

    def end_session(self, session_id: str, ended_at: float, report: dict[str, Any]) -> None:
        """Mark the session ended and store its report (replacing an earlier one)."""
        with self._lock, self._tx():
            cur = self.db.execute("UPDATE sessions SET ended_at=? WHERE id=?",
                                  (float(ended_at), session_id))
            if cur.rowcount == 0:
                raise NotFound(f"unknown session '{session_id}'")
            self.db.execute("INSERT OR REPLACE INTO reports (session_id, score, created, data) "
                            "VALUES (?,?,?,?)",
                            (session_id, report_score(report), time.time(), _dumps(report)))

    # --- reads ----------------------------------------------------------------------------
    def _exists(self, session_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM sessions WHERE id=?",
                               (session_id,)).fetchone() is not None

    def load(self, session_id: str) -> SessionRecord | None:
        """The session with its turns (oldest first), or None when unknown."""
        with self._lock:
            row = self.db.execute(
                "SELECT id, card_id, card_title, responder, analyser, agitation_start, opening, "
                "started_at, ended_at, seed, meta FROM sessions WHERE id=?",
                (session_id,)).fetchone()
            if row is None:
                return None
            turns = [TurnRecord.from_dict(json.loads(d)) for (d,) in self.db.execute(
                "SELECT data FROM turns WHERE session_id=? ORDER BY idx", (session_id,))]
        (sid, card_id, title, responder, analyser, ag0, opening, started, ended, seed,
         meta) = row
        return SessionRecord(id=sid, card_id=card_id, card_title=title, responder=responder,
                             analyser=analyser, agitation_start=ag0, started_at=started,
                             opening=opening, turns=turns, ended_at=ended, seed=seed,
                             meta=json.loads(meta))

    def report(self, session_id: str) -> dict[str, Any] | None:
        """The stored report, or None when the session has not ended (or is unknown)."""
        with self._lock:
            row = self.db.execute("SELECT data FROM reports WHERE session_id=?",
                                  (session_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def list_sessions(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest sessions first, as the history page shows them: id, card_id, card_title,
        started_at, ended_at, turns (a count), agitation_start, agitation_end (after the last
        turn; the start when there is none), score (None until the session has ended)."""
        with self._lock:
            rows = self.db.execute(
                """SELECT s.id, s.card_id, s.card_title, s.responder, s.started_at, s.ended_at,
                     s.agitation_start,
                     (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id),
                     (SELECT t.agitation_after FROM turns t WHERE t.session_id = s.id
                        ORDER BY t.idx DESC LIMIT 1),
                     r.score
                   FROM sessions s LEFT JOIN reports r ON r.session_id = s.id
                   ORDER BY s.started_at DESC, s.rowid DESC LIMIT ?""",
                (max(0, int(limit)),)).fetchall()
        keys = ("id", "card_id", "card_title", "responder", "started_at", "ended_at",
                "agitation_start", "turns", "agitation_end", "score")
        out = [dict(zip(keys, r)) for r in rows]
        for d in out:
            if d["agitation_end"] is None:
                d["agitation_end"] = d["agitation_start"]
        return out

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (the connection is in autocommit mode, so
    each `with` block is exactly one transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
