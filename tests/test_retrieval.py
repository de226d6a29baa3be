"""The retrieval responder: right reply found, context used, own scenario excluded, deterministic,
fallback instead of errors, options validated, optional dense re-rank."""

from __future__ import annotations

import pytest

from deescalwild.core import Case, Evidence, Role, Scenario, SpeakerRole, Turn, write_corpus
from deescalwild.errors import DeescalwildError
from deescalwild.responders.base import Request
from deescalwild.responders.registry import SpecError, load_responder
from deescalwild.responders.retrieval import RetrievalIndex, RetrievalResponder, window


def chat(turns: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    """Messages alternating officer/civilian, counted back so the last is the officer's."""
    n = len(turns)
    return [{"role": "user" if (n - 1 - i) % 2 == 0 else "assistant", "content": t}
            for i, t in enumerate(turns)]


def case(scenario: str, n: int, turns: list[str], reply: str) -> Case:
    return Case(f"{scenario}#{n}", scenario, "", chat(turns), reply)


def req(*turns: str, id: str = "query#1", **extra) -> Request:
    return Request(context="", history=chat(turns), id=id, extra=extra)


TRAIN = [
    case("stop1", 1, ["Can I see your driver license and registration?"],
         "My license is in the glovebox, officer."),
    case("stop2", 3, ["Put your hands where I can see them."], "They're up, they're up!"),
    case("dv1", 2, ["Is anyone else inside the house with you?"], "Just my kids, they're asleep."),
    case("dv2", 4, ["Did he hit you tonight?"], "He pushed me into the wall."),
    case("misc", 5, ["Have a good night."], "Yeah."),
    case("misc", 6, ["Drive safe."], "Yeah."),
]


def test_obvious_reply_is_retrieved():
    r = RetrievalResponder.from_cases(TRAIN)
    reply = r.respond(req("Alright, let me see your license please."))
    assert reply.ok and reply.text == "My license is in the glovebox, officer."
    assert reply.tokens == 7 and reply.latency_s is not None and reply.latency_s >= 0
    reply = r.respond(req("Who else is in the house right now?"))
    assert reply.text == "Just my kids, they're asleep."


def test_earlier_context_disambiguates():
    # the officer's last line is the same; only the turns before it say what it is about
    train = [
        case("a", 1, ["Where is your license and insurance card?", "In my wallet.",
                      "Do you understand?"], "Yes, I'll get my wallet out."),
        case("b", 1, ["Do you have a knife or weapon in your pockets?", "No weapons.",
                      "Do you understand?"], "I told you I got no weapon on me."),
    ]
    q = req("Any weapon on you? A gun, a knife?", "Nope.", "Do you understand?")
    r = RetrievalResponder.from_cases(train, context_turns=3)
    assert r.respond(q).text == "I told you I got no weapon on me."
    # with the last line alone both pairs score the same: the context is what decided
    only_last = RetrievalIndex.build(train, context_turns=1).search(q.history, k=2)
    assert len(only_last) == 2 and only_last[0][1] == pytest.approx(only_last[1][1])
    ranked = RetrievalIndex.build(train, context_turns=3).search(q.history, k=2)
    assert train[ranked[0][0]].scenario_id == "b" and ranked[0][1] > ranked[1][1]


def test_last_line_weighs_more_than_context():
    train = [case("a", 1, ["Step out of the car."], "Why do I have to get out?"),
             case("b", 1, ["Turn around, hands behind your back."], "What am I under arrest for?")]
    q = req("Turn around, hands behind your back.", "Okay okay.", "Step out of the car.")
    assert RetrievalResponder.from_cases(train, last_weight=3).respond(q).text == \
        "Why do I have to get out?"
    # unweighted, the longer earlier line wins: the weight is what decided
    assert RetrievalResponder.from_cases(train, last_weight=1).respond(q).text == \
        "What am I under arrest for?"


def test_window_counts_back_from_the_last_message():
    h = [{"role": "user", "content": str(i)} for i in range(5)]
    assert window(h, 3) == ["2", "3", "4"]
    assert window(h, 10) == ["0", "1", "2", "3", "4"]


def test_own_scenario_is_excluded():
    q_text = "Can I see your driver license and registration?"
    r = RetrievalResponder.from_cases(TRAIN)
    glovebox = "My license is in the glovebox, officer."
    assert r.respond(req(q_text, id="elsewhere#9")).text == glovebox
    # same scenario, by case id prefix and by the simulator's extra
    assert r.respond(req(q_text, id="stop1#7")).text != glovebox
    assert r.respond(req(q_text, id="x", scenario_id="stop1")).text != glovebox
    assert r.scenario_of(req(q_text, id="stop1#7")) == "stop1"
    assert r.scenario_of(req(q_text, id="stop10#7")) is None  # prefix of a word is no match
    keep = RetrievalResponder.from_cases(TRAIN, exclude_scenario=False)
    assert keep.respond(req(q_text, id="stop1#7")).text == glovebox


def test_deterministic_with_seeded_ties():
    tied = [case(f"s{i}", 1, ["Stay in the car."], f"reply number {i}") for i in range(8)]
    q = req("Stay in the car.")
    picks = set()
    for seed in range(20):
        r1 = RetrievalResponder.from_cases(tied, seed=seed)
        r2 = RetrievalResponder.from_cases(list(tied), seed=seed)
        first = r1.respond(q).text
        assert first == r1.respond(q).text == r2.respond(q).text
        picks.add(first)
    assert len(picks) > 1  # the seed, not the file order, breaks ties
    ranked = RetrievalIndex.build(tied, seed=3).search(q.history, k=8)
    assert sorted(i for i, _ in ranked) == list(range(8))  # all tied candidates, none lost


def test_top_k_keeps_ties_at_the_boundary():
    train = [case("x", 1, ["Stay in the car now."], "top")] + \
        [case(f"t{i}", 1, ["Stay here."], f"tie {i}") for i in range(6)]
    idx = RetrievalIndex.build(train, seed=0)
    top = idx.search(req("Stay in the car now.").history, k=3)
    assert top[0][0] == 0 and len(top) == 3
    assert top[1][1] == pytest.approx(top[2][1]) and top[0][1] > top[1][1]
    # the order of tied candidates is the seeded key's, whatever k
    full = idx.search(req("Stay in the car now.").history, k=7)
    assert [i for i, _ in full][:3] == [i for i, _ in top]


def test_fallback_when_nothing_matches():
    r = RetrievalResponder.from_cases(TRAIN)
    for q in (req("Zxqv blorp."), req("Is it?"), Request(context="", history=[])):
        reply = r.respond(q)
        assert reply.ok and reply.text == "Yeah."  # the most common reply
    assert r.settings()["fallback"] == "Yeah."
    # everything excluded: the fallback as well
    only = RetrievalResponder.from_cases([case("s", 1, ["Stop right there."], "Why?")])
    assert only.respond(req("Stop right there.", id="s#4")).text == "Why?"


def test_min_words_skips_short_replies():
    train = [case("a", 1, ["Do you know why I stopped you?"], "No."),
             case("b", 1, ["Do you know why I pulled you over?"], "No, I have no idea why.")]
    q = req("Do you know why I stopped you?")
    assert RetrievalResponder.from_cases(train).respond(q).text == "No."
    r = RetrievalResponder.from_cases(train, min_words=2)
    assert r.respond(q).text == "No, I have no idea why." and len(r.index) == 1
    with pytest.raises(DeescalwildError, match="no"):
        RetrievalResponder.from_cases(train, min_words=50)


def test_from_cases_validates_options():
    with pytest.raises(ValueError):
        RetrievalResponder.from_cases(TRAIN, k=0)
    with pytest.raises(ValueError):
        RetrievalResponder.from_cases(TRAIN, nope=1)


def _scenario(sid: str, split: str, lines: list[tuple[str, str]]) -> Scenario:
    speakers = {"Officer": SpeakerRole(Role.OFFICER, Evidence.LABEL, 1.0),
                "Driver": SpeakerRole(Role.CIVILIAN, Evidence.LABEL, 1.0)}
    turns = [Turn(i, float(i), who, speakers[who].role, text)
             for i, (who, text) in enumerate(lines)]
    return Scenario(sid, "youtube", split, f"{sid}.csv", turns, speakers)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    write_corpus(path, [
        _scenario("youtube_1", "train", [
            ("Officer", "Good evening. License and registration, please."),
            ("Driver", "Here is my license, officer."),
            ("Officer", "Do you know how fast you were going?"),
            ("Driver", "I think about fifty."),
        ]),
        _scenario("youtube_2", "train", [
            ("Officer", "Step out of the vehicle."),
            ("Driver", "Why? What did I do?"),
        ]),
        _scenario("youtube_3", "test", [
            ("Officer", "License and registration."),
            ("Driver", "A test reply that must never be indexed."),
        ]),
    ])
    return path


def test_load_from_corpus_file(corpus):
    r = load_responder("retrieval?k=5&context_turns=2", defaults={"train": corpus, "nope": 1})
    assert isinstance(r, RetrievalResponder)
    assert r.options.k == 5 and r.options.context_turns == 2 and r.options.last_weight == 2
    assert len(r.index) == 3  # the train split's civilian replies, not the test one
    s = r.settings()
    assert s["index_pairs"] == 3 and s["train"] == str(corpus) and s["bm25s"]
    assert len(s["train_sha256"]) == 64 and s["dense_model"] is None
    assert r.respond(req("How fast was I going?")).text == "I think about fifty."
    assert r.respond(req("License and registration.")).text == "Here is my license, officer."


@pytest.mark.parametrize("spec", ["retrieval?kk=5", "retrieval?context_turns=0",
                                  "retrieval?dense_weight=2", "retrieval?k=many"])
def test_bad_options_are_spec_errors(corpus, spec):
    with pytest.raises(SpecError):
        load_responder(spec, defaults={"train": corpus})


def test_setup_errors(corpus, tmp_path):
    with pytest.raises(DeescalwildError, match="training corpus"):
        load_responder("retrieval")
    with pytest.raises(DeescalwildError, match="not found"):
        load_responder("retrieval", defaults={"train": tmp_path / "missing.jsonl"})
    with pytest.raises(DeescalwildError, match="no argument"):
        load_responder("retrieval:foo", defaults={"train": corpus})
    test_only = tmp_path / "test_only.jsonl"
    write_corpus(test_only, [_scenario("y", "test", [("Officer", "Hi."), ("Driver", "Hi.")])])
    with pytest.raises(DeescalwildError, match="split"):
        load_responder("retrieval", defaults={"train": test_only})


@pytest.mark.slow
def test_dense_rerank_prefers_meaning():
    train = [
        case("a", 1, ["The license plate light is out, your license plate light."],
             "I didn't know the plate light was out."),
        case("b", 1, ["I need to see your ID card and your driving permit."],
             "Here's my ID, and that's my permit."),
    ]
    q = req("Can I see your driver's license?")
    bm25 = RetrievalResponder.from_cases(train)
    assert bm25.respond(q).text == "I didn't know the plate light was out."  # word overlap
    dense = RetrievalResponder.from_cases(train, dense=True, dense_weight=1.0, k=5)
    dense.check()
    reply = dense.respond(q)
    assert reply.ok and reply.text == "Here's my ID, and that's my permit."
    assert dense.respond(q).text == reply.text
    assert dense.settings()["dense_model"]
    # dense_weight=0 keeps the BM25 order
    assert RetrievalResponder.from_cases(train, dense=True, dense_weight=0.0).respond(q).text \
        == "I didn't know the plate light was out."
