"""Role resolution: cues, the classifier, and the whole pipeline on the shipped sample."""

from pathlib import Path

import numpy as np
import pytest

from deescalwild.core import Evidence, Role, Scenario, Turn
from deescalwild.corpus.roles.check import check_roles, label_hash, read_gold
from deescalwild.corpus.roles.cues import Mentions, named_cues
from deescalwild.corpus.roles.model import RoleModel
from deescalwild.corpus.roles.resolve import resolve_corpus
from deescalwild.corpus.roles.vectorize import build_vocabulary, grams, vectorize

DATA = Path(__file__).parent / "data"


def _scenario(rows, title=None) -> Scenario:
    turns = [Turn(i, float(i), who, Role.UNKNOWN, text, [], i + 2)
             for i, (who, text) in enumerate(rows)]
    return Scenario("s", "youtube", None, "s.csv", turns, meta={"title": title} if title else {})


def test_title_and_honorific_mentions_by_others():
    sc = _scenario([("Sam Brammer", "Sir, hands where I can see them."),
                    ("Lee", "Officer Brammer, I didn't do anything!"),
                    ("Sam Brammer", "Mr. Lee, step out of the car.")])
    m = Mentions(sc.turns)
    (sam,) = named_cues("Sam Brammer", m, ["Lee"], None)
    assert sam.role is Role.OFFICER and "Officer Brammer" in sam.why
    (lee,) = named_cues("Lee", m, ["Sam Brammer"], None)
    assert lee.role is Role.CIVILIAN and "Mr. Lee" in lee.why


def test_own_words_and_punctuation_do_not_count_as_being_named():
    sc = _scenario([("Andrew", "I called the officer. Andrew is my name."),
                    ("Bob", "Thank you, officer, Andrew will wait.")])
    assert named_cues("Andrew", Mentions(sc.turns), ["Bob"], None) == []


def test_other_label_and_video_title_cues():
    sc = _scenario([("Bruno", "Hey."), ("Officer Bruno", "Hello.")])
    (cue,) = named_cues("Bruno", Mentions(sc.turns), ["Officer Bruno"], None)
    assert cue.role is Role.OFFICER
    (cue,) = named_cues("Barrett Robbins", Mentions(sc.turns), [],
                        "Former Star Barret Robbins Arrested in Delray Beach")
    assert cue.role is Role.CIVILIAN
    (cue,) = named_cues("Kim Potter", Mentions(sc.turns), [], "Officer Kim Potter Bodycam")
    assert cue.role is Role.OFFICER


def test_conflicting_cues_leave_it_to_the_classifier():
    sc = _scenario([("John Smith", "I live here."), ("A", "Officer Smith is here."),
                    ("B", "Thanks, Mr. Smith.")])
    cues = named_cues("John Smith", Mentions(sc.turns), ["A", "B"], None)
    assert {c.role for c in cues} == {Role.OFFICER, Role.CIVILIAN}
    resolve_corpus([sc])
    assert sc.speakers["John Smith"].evidence is Evidence.MODEL


def test_self_introduction_with_own_name():
    sc = _scenario([("Ted Roberts", "Hi, I'm Sergeant Roberts with the county."),
                    ("Ann", "Hello."), ("Ann", "I need Sergeant Lee.")])
    (cue,) = named_cues("Ted Roberts", Mentions(sc.turns), ["Ann"], None)
    assert cue.role is Role.OFFICER and "introduces themself" in cue.why
    assert named_cues("Lee Park", Mentions(sc.turns), ["Ann"], None)[0].why.startswith("others")


def test_a_title_at_the_end_of_another_turn_does_not_name_anyone():
    sc = _scenario([("Lee", "I want to talk to an officer"), ("Pat", "Smith lives next door")])
    assert named_cues("John Smith", Mentions(sc.turns), ["Lee", "Pat"], None) == []


def test_capitalised_titles_are_read_case_blind():
    sc = _scenario([("A", "hi")])
    (cue,) = named_cues("Kim Potter", Mentions(sc.turns), [], "OFFICER KIM POTTER BODYCAM")
    assert cue.role is Role.OFFICER


def test_channel_personality_is_recognised_across_videos():
    from deescalwild.corpus.roles.cues import Cue
    from deescalwild.corpus.roles.resolve import channel_cues, speaker_items

    scenarios = []
    for i in range(5):
        sc = _scenario([("John", "So here is what happens next."), ("[Suspect]", "No!")])
        sc.id, sc.meta["uploader"] = f"v{i}", "Self Defense Channel"
        scenarios.append(sc)
    pending = [it for it in speaker_items(scenarios) if not it.verdict.decisive]
    narr = Cue(Role.NARRATOR, "talks to the audience")
    cues = [narr, narr, narr, None, None]
    probs = np.full((5, 5), 0.2)
    probs[4, 4] = 0.05  # the classifier strongly disagrees for the last one
    out = channel_cues(pending, cues, probs)
    assert out[3].role is Role.NARRATOR and "3 other videos of 'Self Defense Channel'" in out[3].why
    assert out[4] is None
    assert channel_cues(pending, [narr, narr, None, None, None], probs)[3] is None  # too few


def test_em_prior_recovers_a_population_prior():
    from deescalwild.corpus.roles.training import em_prior

    rng = np.random.default_rng(0)
    truth = rng.choice(2, size=4000, p=[0.8, 0.2])
    said = np.where(rng.random(4000) < 0.7, truth, 1 - truth)  # a 70%-accurate classifier
    posterior = np.where(said[:, None] == np.arange(2), 0.7, 0.3)  # calibrated, uniform prior
    prior = em_prior(posterior)
    assert prior == pytest.approx([0.8, 0.2], abs=0.03)


def test_narrator_who_talks_to_the_audience():
    sc = _scenario([("Jake", "Hey everyone, welcome back to the channel. Let's watch."),
                    ("[Police Officer]", "Driver, show me your hands!"),
                    ("[Suspect]", "Okay, okay, I'm not doing anything."),
                    ("Jake", "Notice how calm he stays here.")])
    resolve_corpus([sc])
    jake = sc.speakers["Jake"]
    assert (jake.role, jake.evidence) == (Role.NARRATOR, Evidence.CONTEXT)
    assert sc.speakers["[Police Officer]"].evidence is Evidence.LABEL
    assert [t.role for t in sc.turns] == [Role.NARRATOR, Role.OFFICER, Role.CIVILIAN,
                                          Role.NARRATOR]


def test_every_speaker_gets_role_evidence_and_confidence(sample_corpus):
    for sc in sample_corpus:
        assert set(sc.speakers) == {t.speaker for t in sc.turns}
        for sr in sc.speakers.values():
            assert 0.0 <= sr.confidence <= 1.0 and sr.why
        assert all(t.role is sc.speakers[t.speaker].role for t in sc.turns)


def test_sample_roles_match_its_answer_key(sample_corpus):
    """The sample's authors wrote down every speaker's role; plain names must mostly agree."""
    report = check_roles(sample_corpus, read_gold(DATA / "sample_roles.jsonl"))
    assert report["missing"] == 0
    assert report["accuracy"]["role_word"] == 1.0
    assert report["accuracy_name_or_generic"] >= 0.7, report


def test_unknown_when_the_evidence_is_weak(monkeypatch):
    from deescalwild.corpus.roles import resolve

    monkeypatch.setattr(resolve, "MIN_CONFIDENCE", 0.99)
    sc = _scenario([("[Officer]", "Stop."), ("Pat", "Yeah.")])
    resolve_corpus([sc])
    assert sc.speakers["Pat"].role is Role.UNKNOWN
    assert "best guess" in sc.speakers["Pat"].why


def test_vectorize_is_log_counts_l2_normalised():
    vocab = build_vocabulary([["a", "b"], ["a"], ["a", "c"]], [0, 1, 2], min_groups=2,
                             max_size=10)
    assert vocab == {"a": 0}
    indptr, indices, data = vectorize([["a", "a", "zz"], [], ["a"]], {"a": 0, "zz": 1})
    assert indptr.tolist() == [0, 2, 2, 3]
    assert indices.tolist() == [0, 1, 0]
    a, zz = np.log1p(2), np.log1p(1)
    assert data[:2] == pytest.approx([a / np.hypot(a, zz), zz / np.hypot(a, zz)])
    assert grams("Hands UP! Don't move?") == ["hands", "up", "!", "don't", "move", "?"]


def test_train_save_load_predicts_the_same(sample_corpus, tmp_path):
    from deescalwild.corpus.roles.resolve import fill_text, speaker_items, views
    from deescalwild.corpus.roles.training import train

    model = train(sample_corpus, cv_folds=0)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = RoleModel.load(path)
    items = speaker_items(sample_corpus)
    fill_text(items)
    v = views(items)
    assert np.allclose(model.predict_proba(v), loaded.predict_proba(v), atol=2e-3)
    assert loaded.meta["scenarios"] == len(sample_corpus)
    assert set(loaded.meta["kind_priors"]) <= {"name", "generic"}


def test_shipped_model_loads_and_says_where_it_came_from():
    m = RoleModel.load()
    assert m.meta["format"] == "deescalwild.role-model/1"
    assert m.meta["scenarios"] == 1147  # trained on the published corpus
    assert 0.75 < m.meta["cross_validation"]["accuracy"] < 1.0


def test_a_corrupt_model_file_is_a_clear_error(tmp_path):
    from deescalwild.errors import InputError

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot load role model"):
        RoleModel.load(bad)


def test_gold_rows_may_carry_hashed_labels(sample_corpus, tmp_path):
    sc = sample_corpus[0]
    label, sr = next(iter(sc.speakers.items()))
    gold = tmp_path / "g.jsonl"
    gold.write_text(f'{{"scenario": "{sc.id}", "label_sha256": "{label_hash(label)}", '
                    f'"role": "{sr.role.value}"}}\n')
    report = check_roles(sample_corpus, read_gold(gold))
    assert report["pairs"] == 1 and report["accuracy"]["all"] == 1.0
