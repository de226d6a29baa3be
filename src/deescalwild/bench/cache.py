"""The generation cache: one SQLite row per (responder, case), so an interrupted evaluation
resumes where it stopped and a rerun costs nothing (lm-evaluation-harness's `CachingLM` idea).

The key is a hash of everything that determines a reply, found without loading the backend: the
backend, its argument and its validated options (with what `eval` fills in: the training
file, the seed), a fingerprint of every file or folder they name (the training corpus, a model or
adapter folder: retrain into the same folder and the key changes), the package version, the
batch size for backends whose sampled replies depend on it, and the case's id, context and
history. A fully cached responder is not even loaded. Errors are not cached: a rerun tries
those cases again. The responder's settings are stored beside its replies so results can report
them when every reply comes from the cache.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from deescalwild.bench.cases import file_sha256
from deescalwild.core import Case, Reply
from deescalwild.errors import DeescalwildError

# numbered migrations (simonw/llm style): the database records how many have run
MIGRATIONS = [
    """CREATE TABLE generations (
         responder_key TEXT NOT NULL, case_key TEXT NOT NULL, case_id TEXT NOT NULL,
         reply BLOB NOT NULL, created REAL NOT NULL,
         PRIMARY KEY (responder_key, case_key))""",
    """CREATE TABLE responders (
         responder_key TEXT PRIMARY KEY, spec TEXT NOT NULL, settings BLOB NOT NULL,
         updated REAL NOT NULL)""",
]


def _hash(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


def fingerprint(path: Path) -> str | None:
    """Content hash of a file (size and mtime for files over 256 MiB, e.g. model weights); for a
    folder, a hash of its files' names, sizes and mtimes. None when the path does not exist."""
    try:
        if path.is_file():
            st = path.stat()
            if st.st_size > 256 << 20:
                return f"size={st.st_size},mtime={st.st_mtime_ns}"
            return file_sha256(path)
        if path.is_dir():
            entries = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                             for p in path.rglob("*") if p.is_file())
            return _hash(entries)
    except OSError:
        return None
    return None


def responder_key(spec: str, defaults: Mapping[str, Any], batch_size: int) -> str:
    """The cache key of a responder as `eval` would build it (see the module docstring)."""
    from deescalwild import __version__
    from deescalwild.responders.registry import resolve_spec

    cls, arg, options = resolve_spec(spec, defaults)
    dumped = options.model_dump(mode="json")
    files = {k: fingerprint(Path(v)) for k, v in options.model_dump().items()
             if isinstance(v, Path)}
    if arg and "://" not in arg and Path(arg).exists():
        files["arg"] = fingerprint(Path(arg))
    ident: dict[str, Any] = {"backend": cls.prefix, "arg": arg, "options": dumped,
                             "files": files, "deescalwild": __version__}
    if not cls.deterministic:
        ident["batch_size"] = batch_size
    return _hash(ident)


def case_key(case: Case) -> str:
    """Depends on what the responder sees (id, context, history), not on the reference."""
    return _hash({"id": case.id, "context": case.context, "history": case.history})


class GenerationCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            done = self.db.execute("PRAGMA user_version").fetchone()[0]
            for i, sql in enumerate(MIGRATIONS[done:], start=done + 1):
                with self.db:
                    self.db.execute(sql)
                    self.db.execute(f"PRAGMA user_version={i}")
        except sqlite3.DatabaseError as e:
            raise DeescalwildError(f"{self.path}: the generation cache cannot be used ({e}); "
                                   "delete the file, or run with --no-cache") from e

    def get_many(self, rkey: str, ckeys: Iterable[str]) -> dict[str, Reply]:
        wanted = list(ckeys)
        out: dict[str, Reply] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            q = ",".join("?" * len(chunk))
            for ck, blob in self.db.execute(
                    f"SELECT case_key, reply FROM generations WHERE responder_key=? "
                    f"AND case_key IN ({q})", (rkey, *chunk)):
                out[ck] = Reply.from_dict(orjson.loads(blob))
        return out

    def put_many(self, rkey: str, items: Iterable[tuple[str, str, Reply]]) -> None:
        """(case_key, case_id, reply) triples; replies with an error are not stored."""
        now = time.time()
        rows = [(rkey, ck, cid, orjson.dumps(r.to_dict()), now)
                for ck, cid, r in items if r.error is None]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?)", rows)

    def put_settings(self, rkey: str, spec: str, settings: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO responders VALUES (?,?,?,?)",
                            (rkey, spec, orjson.dumps(settings, default=str), time.time()))

    def get_settings(self, rkey: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT settings FROM responders WHERE responder_key=?",
                              (rkey,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def close(self) -> None:
        self.db.close()
