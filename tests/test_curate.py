"""Curation: each detector on the artefacts it exists for (and on ordinary talk it must leave
alone), the policy file, and the annotate stage end to end."""

from __future__ import annotations

import json

import pytest

from deescalwild.cli import main
from deescalwild.core import Evidence, Role, Scenario, SpeakerRole, Turn, read_corpus, write_corpus
from deescalwild.curate import detectors as det
from deescalwild.curate.annotate import curate_file, curate_scenarios
from deescalwild.curate.neardup import candidate_pairs, shingles, signatures
from deescalwild.curate.policy import (
    Policy,
    Thresholds,
    is_excluded,
    kept_turns,
    load_policy,
)
from deescalwild.errors import InputError

TH = Thresholds()


def turn(i: int, speaker: str, text: str, role: Role = Role.CIVILIAN) -> Turn:
    return Turn(index=i, start=float(i), speaker=speaker, role=role, text=text)


def scenario(sid: str, rows: list[tuple[str, str]], split: str = "train",
             title: str | None = None) -> Scenario:
    roles = {"Officer": Role.OFFICER, "Narrator": Role.NARRATOR}
    turns = [turn(i, s, x, roles.get(s, Role.CIVILIAN)) for i, (s, x) in enumerate(rows)]
    speakers = {s: SpeakerRole(roles.get(s, Role.CIVILIAN), Evidence.LABEL, 0.97)
                for s, _ in rows}
    meta = {"title": title} if title else {}
    return Scenario(sid, "youtube", split, f"{sid}.csv", turns, speakers, meta)


STOP = [("Officer", "Evening sir, I stopped you because your tail light is out."),
        ("Driver", "Oh, I didn't know that. Sorry officer."),
        ("Officer", "Can I see your license and registration please?"),
        ("Driver", "Sure, it's in the glove box, can I reach for it?"),
        ("Officer", "Go ahead, slowly. Thanks for telling me."),
        ("Driver", "Here you go. Am I getting a ticket?"),
        ("Officer", "Just a warning tonight. Get the light fixed this week."),
        ("Driver", "Thank you, I will.")]


# --- turn detectors ----------------------------------------------------------------------

def test_repetition_loop_finds_recogniser_loops_of_any_unit_length():
    loop = det.words("Stop. " + "Get him out this truck. " * 30 + "Okay.")
    why = det.repetition_loop(loop, TH)
    assert why and "repeated 30 times" in why and "get him out this truck" in why
    assert det.repetition_loop(det.words("hey, " * 500), TH).startswith("'hey' repeated 500")


def test_repetition_loop_leaves_ordinary_repetition_alone():
    assert det.repetition_loop(det.words("No, no, no, no, no, no, no! " * 1 + "Stop it."), TH) \
        is None
    talk = det.words("I told you I was at work and I told you I was at home after that " * 3)
    assert det.repetition_loop(talk, TH) is None  # three times is speech, not a loop


def test_duplicate_of_previous_same_speaker_or_long_echo_only():
    rows = [turn(0, "A", "Okay."), turn(1, "B", "Okay."),  # backchannel: talk
            turn(2, "B", "Okay."),  # same speaker again: duplicate
            turn(3, "A", "Put your hands on the car."), turn(4, "B", "Put your hands on the car.")]
    norm = [tuple(det.words(t.text)) for t in rows]
    found = det.duplicate_of_previous(rows, norm, TH)
    assert sorted(found) == [2, 4]
    assert "same speaker" in found[2] and "other speaker" in found[4]


def test_alternating_loop_keeps_first_pair_and_needs_a_long_run():
    rows = [turn(0, "A", "Hello there.")]
    rows += [turn(i, "AB"[i % 2], ["Yeah you're going to jail.", "I'm going to jail?"][i % 2])
             for i in range(1, 13)]
    norm = [tuple(det.words(t.text)) for t in rows]
    found = det.alternating_loops(rows, norm, TH)
    assert sorted(found) == list(range(3, 13)) and "(12 rows)" in found[3]
    short = rows[:6]  # five alternating rows: people do argue like that
    assert det.alternating_loops(short, norm[:6], TH) == {}


@pytest.mark.parametrize("text", [
    "Today's video is brought to us by Crumbly Bakes.",
    "Use code COPS10 for 10% off at shop.example.com/cops",
    "Hit that subscribe button and turn on the notification bell.",
    "There's a link in the description for a coupon.",
])
def test_advertisement_positive(text):
    assert det.advertisement(text)


@pytest.mark.parametrize("text", [
    "Honey, where were you last night?",
    "My sponsor at AA told me to call you.",
    "I want to check out of the hotel.",
    "Can you subscribe me to, no, never mind.",
])
def test_advertisement_negative(text):
    assert det.advertisement(text) is None


def test_narration_by_role_or_audience_phrases():
    assert det.narration(turn(0, "Narrator", "On March 24th...", Role.NARRATOR))
    assert det.narration(turn(0, "Mark", "Thanks for watching, see you next week.", Role.OFFICER))
    assert det.narration(turn(0, "Officer", "Hey everyone, step back from the car.",
                              Role.OFFICER)) is None


# --- scenario detectors -------------------------------------------------------------------

def test_off_domain_talk_show_non_english_and_no_police_vocabulary():
    pod = scenario("pod", [("Mark", "Hello and welcome to the latest edition of the podcast."),
                           ("Mark", "I'm your host, and I'm joined by two fantastic guests."),
                           ("Sarah", "Thanks for having us.")])
    norm = [det.words(t.text) for t in pod.turns]
    assert "talk show" in det.off_domain(pod, norm, TH)
    ja = scenario("ja", [("V", "何これ 鍵が かかっ て ます ね " * 5)])
    assert "not English" in det.off_domain(ja, [det.words(t.text) for t in ja.turns], TH)
    goose = scenario("goose", [("Man", "Easy there buddy, I'm just passing through. " * 6),
                               ("Woman", "Oh my gosh look at this, he is losing to a goose.")])
    assert "police terms" in det.off_domain(goose, [det.words(t.text) for t in goose.turns], TH)
    stop = scenario("stop", STOP)
    assert det.off_domain(stop, [det.words(t.text) for t in stop.turns], TH) is None
    # a police title rescues a short clip without police words
    clip = scenario("clip", [("Man", "Get down get down, go go go, stay there.")] * 4,
                    title="Deputies Stop Stolen Truck")
    assert det.off_domain(clip, [det.words(t.text) for t in clip.turns], TH) is None


# --- the stage ----------------------------------------------------------------------------

def test_curate_annotates_never_deletes_and_records_reasons():
    loopy = scenario("loopy", [*STOP, ("Driver", "hey, " * 100)])
    story = " ".join(f"At {i} past nine the driver turned onto street number {i * 7}."
                     for i in range(12))
    narrated = scenario("narrated", [("Narrator", story), *STOP[:3]])
    report = curate_scenarios([loopy, narrated], Policy())
    assert len(loopy.turns) == len(STOP) + 1  # nothing removed
    last = loopy.turns[-1]
    assert last.flags == ["repetition_loop"]
    cur = loopy.meta["curation"]
    assert cur["excluded_turns"] == [last.index] and not cur["excluded"]
    assert "repeated 100 times" in cur["reasons"]["turns"][str(last.index)]["repetition_loop"]
    assert [t.index for t in kept_turns(loopy)] == list(range(len(STOP)))
    assert "mostly_narration" in narrated.flags and is_excluded(narrated)
    assert "too_short" in narrated.flags  # three kept turns
    assert report["turn_flags"]["repetition_loop"]["turns"] == 1
    assert report["turn_flags"]["repetition_loop"]["words"] == 100
    assert report["scenario_flags"]["mostly_narration"]["examples"][0]["scenario"] == "narrated"
    assert report["totals"]["scenarios_kept"] == 1


def test_curate_is_idempotent_and_keeps_foreign_flags():
    sc = scenario("s", [*STOP, ("Driver", "Thank you, I will.")])
    sc.turns[0].flags = ["reviewed"]
    curate_scenarios([sc], Policy())
    first = json.dumps(sc.to_dict(), sort_keys=True)
    curate_scenarios([sc], Policy())
    assert json.dumps(sc.to_dict(), sort_keys=True) == first
    assert sc.turns[0].flags == ["reviewed"]
    assert sc.turns[-1].flags == ["duplicate_of_previous"]


def test_policy_decides_what_is_excluded(tmp_path):
    p = tmp_path / "policy.toml"
    p.write_text('[turns]\nexclude = ["empty"]\n[scenarios]\nexclude = []\n'
                 '[thresholds]\nmin_turns = 2\n')
    policy = load_policy(p)
    assert policy.thresholds.min_turns == 2 and policy.exclude_turns == {"empty"}
    sc = scenario("s", [*STOP, ("Driver", "hey, " * 100)])
    curate_scenarios([sc], policy)
    assert "repetition_loop" in sc.turns[-1].flags  # still flagged...
    assert kept_turns(sc) == sc.turns  # ...but kept


@pytest.mark.parametrize("body, message", [
    ('[turns]\nexclude = ["loops"]\n', "unknown flag(s) ['loops']"),
    ('[thresholds]\nmin_turn = 3\n', "unknown key(s) ['min_turn']"),
    ('[thresholds]\nmin_turns = 2.5\n', "min_turns: expected an integer"),
    ('[extra]\n', "unknown section(s)"),
    ('turns = [', "expected a TOML policy file"),
])
def test_bad_policy_is_one_clear_error(tmp_path, body, message):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        load_policy(p)


def test_shipped_policy_file_matches_the_code_defaults():
    shipped = load_policy()
    assert shipped.thresholds == Thresholds()
    assert shipped.exclude_turns == Policy().exclude_turns
    assert shipped.exclude_scenarios == Policy().exclude_scenarios


# --- near-duplicates ----------------------------------------------------------------------

def test_minhash_finds_reuploads_and_contained_parts_but_not_strangers():
    full = det.words(" ".join(f"at {i} past nine car {i * 7} turned onto street {i * 13}"
                              for i in range(60)))
    part = full[: len(full) // 2]
    other = det.words("the weather today is sunny with a light breeze from the west " * 4)
    sets = [shingles(full, 5), shingles(part, 5), shingles(other, 5)]
    sigs = signatures(sets, 128)
    pairs = candidate_pairs(sigs, [len(s) for s in sets], 0.2)
    assert [(p.a, p.b) for p in pairs] == [(0, 1)]
    assert pairs[0].containment > 0.8 > pairs[0].jaccard


def test_near_duplicate_flags_the_shorter_copy_and_names_the_kept_one():
    a = scenario("a_full", STOP * 3, split="test")
    b = scenario("b_clip", STOP * 2, split="train")
    c = scenario("c_other", [("Officer", "Dispatch, show me out at the school."),
                             ("Driver", "The gate code is four four one two.")] * 5)
    report = curate_scenarios([a, b, c], Policy())
    assert "near_duplicate" in b.flags and "near_duplicate" not in a.flags
    assert b.meta["curation"]["near_duplicate_of"] == "a_full"
    assert "near-copy of a_full" in b.meta["curation"]["reasons"]["scenario"]["near_duplicate"]
    (cluster,) = report["near_duplicates"]["clusters"]
    assert cluster["members"] == ["a_full", "b_clip"] and cluster["splits"] == ["test", "train"]
    assert report["near_duplicates"]["cross_split_clusters"] == 1


# --- files and the command ----------------------------------------------------------------

def test_bad_lines_are_reported_and_skipped_unless_strict(tmp_path):
    src, out = tmp_path / "c.jsonl", tmp_path / "out.jsonl"
    write_corpus(src, [scenario("good", STOP)])
    with src.open("ab") as fh:
        fh.write(b'{"schema": "deescalwild.corpus/1", "id": "x"\n')  # broken JSON, line 2
        fh.write(b'{"schema": "other/9", "id": "y"}\n')  # wrong schema, line 3
    report = curate_file(src, out)
    assert [s.id for s in read_corpus(out)] == ["good"]
    assert report["problems"][0].startswith(f"{src}:2:")
    assert "expected schema" in report["problems"][1] and ":3:" in report["problems"][1]
    out.unlink()
    with pytest.raises(InputError, match=":2:"):
        curate_file(src, out, strict=True)
    assert not out.exists()  # nothing half-written


def test_curate_command_on_the_sample(tmp_path, capsys):
    corpus, curated, report = (tmp_path / n for n in ("s.jsonl", "c.jsonl", "r.json"))
    assert main(["corpus", "import", "--sample", "-o", str(corpus)]) == 0
    assert main(["curate", str(corpus), "-o", str(curated), "--report", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["schema"] == "deescalwild.curate-report/1"
    flagged = {f: {e["scenario"] for e in v["examples"]}
               for part in ("turn_flags", "scenario_flags") for f, v in r[part].items()}
    # the three sample files made for curation are caught (sample_data/README.md)
    assert "youtube_dw0018" in flagged["off_domain"] & flagged["repetition_loop"]
    assert "youtube_dw0018" in flagged["advertisement"]
    assert flagged["alternating_loop"] == {"facebook_dw0019"}
    assert "facebook_dw0019" in flagged["duplicate_of_previous"]
    assert flagged["near_duplicate"] == {"tiktok_dw0017"}
    assert r["provenance"]["versions"]["datasketch"]
    capsys.readouterr()
    assert main(["corpus", "stats", str(curated)]) == 0
    assert "Quality flags" in capsys.readouterr().out
