"""The session store: round trip, survives reopening, history order, migrations run once,
concurrent appends, clear errors."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from deescalwild.errors import DeescalwildError
from deescalwild.sim.errors import NotFound
from deescalwild.sim.records import SessionRecord, TurnRecord, Verdict
from deescalwild.sim.store import MIGRATIONS, Store, report_score


def session(sid: str = "s1", started: float = 1000.0, **kw) -> SessionRecord:
    return SessionRecord(id=sid, card_id="traffic-stop", card_title="Traffic stop, tense driver",
                         responder="retrieval", analyser="rules", agitation_start=55.0,
                         started_at=started, opening="What now?", seed=3,
                         meta={"client": "test", "ünïcode": "ok"}, **kw)


def turn(i: int, after: float = 50.0) -> TurnRecord:
    v = Verdict("empathy", "deescalation", ["I understand"], [(0, 12)], why="rule E1",
                effect=-4.5)
    return TurnRecord(index=i, trainee=f"I understand, sir ({i})", reply=f"Fine. ({i})",
                      verdicts=[v], agitation_before=after + 4.5, agitation_after=after,
                      latency_s=0.01, first_token_s=0.005, at=2000.0 + i)


def test_round_trip_and_reopen(tmp_path):
    path = tmp_path / "sub" / "sim.db"  # parent folder is created
    with Store(path) as st:
        rec = session()
        st.save_session(rec)
        for i in range(3):
            st.add_turn(rec.id, turn(i, after=50.0 - i))
        report = {"schema": "deescalwild.sim-report/1", "score": {"value": 72.5, "formula": "x"}}
        st.end_session(rec.id, 3000.0, report)
    with Store(path) as st:  # a new process would see exactly this
        back = st.load("s1")
        assert back is not None
        assert back.to_dict() == {**session(ended_at=3000.0,
                                            turns=[turn(i, 50.0 - i) for i in range(3)]).to_dict()}
        assert back.turns[0].verdicts[0].spans == [(0, 12)]
        assert back.agitation == 48.0 and back.ended
        assert st.report("s1") == report
        [row] = st.list_sessions()
        assert row["turns"] == 3 and row["agitation_end"] == 48.0 and row["score"] == 72.5
        assert row["agitation_start"] == 55.0 and row["ended_at"] == 3000.0
        assert st.load("nope") is None and st.report("nope") is None


def test_save_session_updates_without_touching_turns():
    st = Store(":memory:")
    rec = session()
    st.save_session(rec)
    st.add_turn("s1", turn(0))
    rec.meta = {"changed": True}
    st.save_session(rec)
    back = st.load("s1")
    assert back.meta == {"changed": True} and len(back.turns) == 1
    assert st.report("s1") is None  # not ended: no report
    assert st.list_sessions()[0]["score"] is None


def test_list_order_newest_first_and_limit():
    st = Store(":memory:")
    for i, t in enumerate([300.0, 100.0, 200.0]):
        st.save_session(session(f"s{i}", started=t))
    st.save_session(session("s3", started=200.0))  # same time: the later insert comes first
    assert [r["id"] for r in st.list_sessions()] == ["s0", "s3", "s2", "s1"]
    assert [r["id"] for r in st.list_sessions(limit=2)] == ["s0", "s3"]
    assert st.list_sessions()[-1]["agitation_end"] == 55.0  # no turns: the start


def test_migrations_run_once(tmp_path):
    path = tmp_path / "sim.db"
    st = Store(path)
    assert st.version == len(MIGRATIONS)
    assert st.migrate() == 0  # idempotent
    st.save_session(session())
    st.close()
    st = Store(path)
    assert st.version == len(MIGRATIONS) and st.load("s1") is not None
    assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    st.close()


def test_newer_or_foreign_file_is_refused(tmp_path):
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(DeescalwildError, match="newer deescalwild"):
        Store(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DeescalwildError, match="not a usable session database"):
        Store(junk)


def test_turn_errors():
    st = Store(":memory:")
    with pytest.raises(NotFound, match="unknown session 'ghost'"):
        st.add_turn("ghost", turn(0))
    with pytest.raises(NotFound):
        st.end_session("ghost", 1.0, {})
    st.save_session(session())
    st.add_turn("s1", turn(0))
    with pytest.raises(DeescalwildError, match="turn 0 is already stored"):
        st.add_turn("s1", turn(0, after=10.0))
    assert st.load("s1").turns[0].agitation_after == 50.0  # the first one stays


def test_concurrent_add_turn_from_threads(tmp_path):
    st = Store(tmp_path / "sim.db")
    n_sessions, n_turns = 4, 25
    for s in range(n_sessions):
        st.save_session(session(f"s{s}", started=float(s)))
    errors: list[BaseException] = []

    def play(s: int) -> None:
        try:
            for i in range(n_turns):
                st.add_turn(f"s{s}", turn(i, after=float(i)))
                st.list_sessions()  # readers interleave with writers
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=play, args=(s,)) for s in range(n_sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    st.close()
    st = Store(tmp_path / "sim.db")
    for s in range(n_sessions):
        rec = st.load(f"s{s}")
        assert [t.index for t in rec.turns] == list(range(n_turns))
        assert rec.agitation == n_turns - 1


@pytest.mark.parametrize("report, expected", [
    ({"score": 80}, 80.0), ({"score": {"value": 61.5}}, 61.5), ({"score": None}, None),
    ({}, None), ({"score": True}, None), ({"score": {"formula": "f"}}, None)])
def test_report_score(report, expected):
    assert report_score(report) == expected
