"""`release`: one directory, the same scenarios in JSON Lines, Parquet, a Hugging Face
DatasetDict and ConvoKit, a card whose numbers are the data's, written all-or-nothing."""

from __future__ import annotations

import builtins
import copy
import hashlib
import json
import re
from pathlib import Path

import pytest

from deescalwild.core import Evidence, Role, Scenario, SpeakerRole, Turn, read_corpus, write_corpus
from deescalwild.curate import release as release_mod
from deescalwild.curate.release import RELEASE_SCHEMA, release
from deescalwild.errors import DeescalwildError

pytest.importorskip("datasets")
pytest.importorskip("pyarrow")

SPLITS = ("train", "dev", "test")


def scenario(sid: str, split: str | None = "train", *, excluded: bool = False,
             excluded_turns: tuple[int, ...] = (), turn_flags: dict[int, list[str]] | None = None,
             flags: tuple[str, ...] = (), platform: str | None = "youtube",
             source: str | None = None, n: int = 4) -> Scenario:
    """A small curated, split scenario: officer and civilian alternate."""
    speakers = {"Officer Bruno": SpeakerRole(Role.OFFICER, Evidence.LABEL, 0.98, "label"),
                "Dana": SpeakerRole(Role.CIVILIAN, Evidence.MODEL, 0.9, "classifier")}
    turns = []
    for i in range(n):
        label = "Officer Bruno" if i % 2 == 0 else "Dana"
        turns.append(Turn(i, None if i == 1 else float(3 * i), label, speakers[label].role,
                          f"{sid} turn {i} words here", list((turn_flags or {}).get(i, []))))
    return Scenario(
        id=sid, platform=platform, split=split,
        source=source or f"/home/alice/private folder/{sid}.csv",
        turns=turns, speakers=speakers, flags=list(flags),
        meta={"sha256": "ab" * 32, "rows": n, "title": f"Title of {sid}",
              "skipped_rows": [{"line": 9, "reason": "3 fields", "raw": "SECRET RAW ROW"}],
              "warnings": [{"line": 3, "field": "start_time", "message": "SECRET WARNING"}],
              "curation": {"schema": "deescalwild.curation/1", "excluded": excluded,
                           "excluded_by": list(flags) if excluded else [],
                           "excluded_turns": list(excluded_turns),
                           "reasons": {"scenario": {}, "turns": {}},
                           "policy": "default", "near_duplicate_of": None, "group": None},
              "split": {"strategy": "clean", "seed": 7, "group": sid}})


def corpus() -> list[Scenario]:
    return [
        scenario("youtube_1", "train", excluded_turns=(2,), turn_flags={2: ["repetition_loop"],
                                                                         3: ["narration"]}),
        scenario("tiktok_2", "train", platform="tiktok"),
        scenario("youtube_3", "dev"),
        scenario("youtube_4", "test", n=6),
        scenario("youtube_5", "test", excluded=True, flags=("off_domain",)),
        scenario("youtube_6", None, excluded=True, flags=("too_short",)),  # unsplit, not released
    ]


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def released(tmp_path):
    out = tmp_path / "rel"
    summary = release(corpus(), out, pseudonymize=False)
    return out, summary


def test_layout(released):
    out, summary = released
    for split in SPLITS:
        assert (out / "data" / f"{split}.jsonl").is_file()
        assert (out / "data" / f"{split}.parquet").is_file()
    for name in ("utterances.jsonl", "speakers.json", "conversations.json", "corpus.json",
                 "index.json"):
        assert (out / "convokit" / name).is_file()
    assert (out / "hf" / "dataset_dict.json").is_file()
    assert (out / "README.md").is_file()
    manifest = json.loads((out / "release.json").read_text())
    assert manifest["schema"] == RELEASE_SCHEMA
    assert manifest["pseudonymized"] is False
    assert set(summary.files) == {*manifest["files"], "release.json"}
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert [p.name for p in out.parent.iterdir()] == ["rel"]  # no temp dirs left beside it


def test_summary_counts(released):
    _, s = released
    d = s.to_dict()
    assert d["schema"] == "deescalwild.release-summary/1"
    assert (s.scenarios_in, s.scenarios, s.excluded_scenarios) == (6, 4, 2)
    assert s.excluded_turns == 1
    assert s.splits["train"] == {"scenarios": 2, "turns": 7, "words": 35}
    assert s.splits["dev"]["scenarios"] == 1 and s.splits["test"]["turns"] == 6
    assert s.turns == 7 + 4 + 6


def test_hf_load_from_disk(released):
    import datasets

    out, _ = released
    dd = datasets.load_from_disk(str(out / "hf"))
    assert list(dd) == list(SPLITS)
    assert [dd[s].num_rows for s in SPLITS] == [2, 1, 1]
    first = dd["train"][0]
    assert first["id"] == "youtube_1"
    assert first["turns"][0]["text"] == "youtube_1 turn 0 words here"
    assert first["turns"][1]["start"] is None
    assert [t["index"] for t in first["turns"]] == [0, 1, 3]
    assert dd["dev"].features == dd["train"].features == dd["test"].features


def test_hf_empty_split_keeps_schema(tmp_path):
    import datasets

    out = tmp_path / "rel"
    release([scenario("youtube_1", "train")], out, pseudonymize=False)
    dd = datasets.load_from_disk(str(out / "hf"))
    assert dd["dev"].num_rows == 0 and dd["test"].num_rows == 0
    assert dd["dev"].features == dd["train"].features
    assert "turns" in dd["dev"].column_names


def test_parquet_reads_with_pandas(released):
    pd = pytest.importorskip("pandas")
    out, _ = released
    for split, rows in zip(SPLITS, (2, 1, 1)):
        df = pd.read_parquet(out / "data" / f"{split}.parquet")
        assert len(df) == rows
        assert list(df.columns) == ["id", "platform", "split", "title", "turns", "speakers",
                                    "flags", "meta"]
        assert set(df["split"]) == {split}
        assert df.iloc[0]["turns"][0]["text"] == load_jsonl(
            out / "data" / f"{split}.jsonl")[0]["turns"][0]["text"]


def test_convokit_consistent(released):
    out, _ = released
    ck = out / "convokit"
    utts = load_jsonl(ck / "utterances.jsonl")
    speakers = json.loads((ck / "speakers.json").read_text())
    convos = json.loads((ck / "conversations.json").read_text())
    index = json.loads((ck / "index.json").read_text())
    ids = {u["id"] for u in utts}
    assert len(ids) == len(utts) == 17
    by_id = {u["id"]: u for u in utts}
    for u in utts:
        assert set(u) == {"id", "speaker", "conversation_id", "reply_to", "timestamp", "text",
                          "meta"}
        assert u["speaker"] in speakers
        assert u["conversation_id"] in convos
        assert u["conversation_id"] in ids  # the id of the conversation's first utterance
        if u["reply_to"] is None:
            assert u["id"] == u["conversation_id"]
        else:
            assert u["reply_to"] in ids
            assert by_id[u["reply_to"]]["conversation_id"] == u["conversation_id"]
        assert set(u["meta"]) == {"role", "flags", "split", "index"}
    # reply_to skips the excluded turn: youtube_1's turn 3 answers turn 1
    assert by_id["youtube_1::3"]["reply_to"] == "youtube_1::1"
    assert set(convos) == {"youtube_1::0", "tiktok_2::0", "youtube_3::0", "youtube_4::0"}
    assert convos["tiktok_2::0"]["meta"]["platform"] == "tiktok"
    assert speakers["youtube_1::Dana"]["meta"]["role"] == "civilian"
    assert {u["speaker"] for u in utts} == set(speakers)  # nobody without an utterance
    assert set(index) >= {"utterances-index", "speakers-index", "conversations-index",
                          "overall-index", "version"}
    assert index["utterances-index"]["index"] == ["<class 'int'>"]
    corpus_meta = json.loads((ck / "corpus.json").read_text())
    assert corpus_meta["num_utterances"] == len(utts)
    assert "predictive policing" in " ".join(corpus_meta["prohibited_uses"])


def test_convokit_loads_with_convokit(released, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # ConvoKit writes ~/.convokit/config.yml
    convokit = pytest.importorskip("convokit")
    out, _ = released
    c = convokit.Corpus(filename=str(out / "convokit"))
    assert len(list(c.iter_utterances())) == 17
    assert len(list(c.iter_conversations())) == 4
    assert all(cv.check_integrity(verbose=False) for cv in c.iter_conversations())


def _card_counts(card: str) -> dict[str, tuple[int, int, int]]:
    """The per-split totals rows of the card's Counts table."""
    rows = {}
    for m in re.finditer(r"^\| \*\*(\w+)\*\* \| all \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$",
                         card, re.M):
        rows[m.group(1)] = tuple(int(x.replace(",", "")) for x in m.groups()[1:])
    return rows


def test_card_numbers_are_the_data(released):
    out, _ = released
    card = (out / "README.md").read_text(encoding="utf-8")
    counts = _card_counts(card)
    total = [0, 0, 0]
    for split in SPLITS:
        recs = load_jsonl(out / "data" / f"{split}.jsonl")
        n_turns = sum(len(r["turns"]) for r in recs)
        n_words = sum(len(t["text"].split()) for r in recs for t in r["turns"])
        assert counts[split] == (len(recs), n_turns, n_words)
        total = [a + b for a, b in zip(total, (len(recs), n_turns, n_words))]
    assert counts["all"] == tuple(total)
    # quality flags: input counts, released and not
    assert re.search(r"^\| repetition_loop \| 1 \| 5 \| 0 \| 1 \|$", card, re.M)
    assert re.search(r"^\| narration \| 1 \| 5 \| 1 \| 0 \|$", card, re.M)
    assert re.search(r"^\| off_domain \| 1 \| 20 \| 0 \| 1 \|$", card, re.M)
    assert "kept 2 scenarios out" in card and "dropped 1 turns" in card
    assert "strategy `clean`, seed `7`" in card
    assert '"exclude"' in card  # the default policy, spelled out


def test_card_header_is_hub_yaml(released):
    yaml = pytest.importorskip("yaml")
    out, _ = released
    card = (out / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == "mit" and header["language"] == ["en"]
    assert header["size_categories"] == ["n<1K"]
    files = header["configs"][0]["data_files"]
    assert [f["split"] for f in files] == list(SPLITS)
    assert all((out / f["path"]).is_file() for f in files)


def test_hub_reads_the_parquet_configs(tmp_path):
    """What the Hub does with the card's configs: load_dataset("parquet") on the listed files,
    with the release's feature types (empty splits are not listed: datasets cannot read an
    empty Parquet file)."""
    import datasets

    from deescalwild.curate.release import hf_features

    out = tmp_path / "rel"
    release([scenario("youtube_1", "train"), scenario("youtube_2", "test")], out,
            pseudonymize=False)
    card = (out / "README.md").read_text(encoding="utf-8")
    files = dict(re.findall(r"^  - split: (\w+)\n    path: (\S+)$", card, re.M))
    assert set(files) == {"train", "test"}
    dd = datasets.load_dataset("parquet", data_files={k: str(out / v) for k, v in files.items()},
                               cache_dir=str(tmp_path / "cache"))
    assert dd["test"][0]["id"] == "youtube_2"
    assert dd["train"].features == hf_features(datasets)


def test_card_states_intended_and_prohibited_uses(released):
    out, _ = released
    card = (out / "README.md").read_text(encoding="utf-8")
    prohibited = card.split("## Prohibited uses")[1].split("##")[0]
    for phrase in ("predictive policing", "profiling", "automated decisions about people",
                   "re-identification"):
        assert phrase in prohibited
    assert "training and assessing human police trainees" in card
    assert "arXiv" in card and "2604.13075" in card and "@misc{" in card
    assert "NOT pseudonymized" in card


def test_excluded_scenarios_and_turns_absent(released):
    out, _ = released
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file()
                          and p.suffix in (".jsonl", ".json"))
    assert b"youtube_5" not in everything and b"youtube_6" not in everything
    assert b"youtube_1 turn 2" not in everything
    rec = load_jsonl(out / "data" / "train.jsonl")[0]
    assert rec["meta"]["curation"]["excluded_turns"] == [2]
    assert [t["flags"] for t in rec["turns"]] == [[], [], ["narration"]]


def test_include_excluded(tmp_path):
    out = tmp_path / "rel"
    s = release([scenario("youtube_1", "train", excluded_turns=(2,)),
                 scenario("youtube_5", "test", excluded=True, flags=("off_domain",))],
                out, pseudonymize=False, include_excluded=True)
    assert s.scenarios == 2 and s.turns == 8 and s.excluded_turns == 0
    test = load_jsonl(out / "data" / "test.jsonl")
    assert test[0]["id"] == "youtube_5" and test[0]["meta"]["curation"]["excluded"] is True
    assert len(load_jsonl(out / "data" / "train.jsonl")[0]["turns"]) == 4
    assert "included** on request" in (out / "README.md").read_text()


def test_metadata_cannot_leak_paths_or_raw_rows(released):
    out, _ = released
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            for secret in (b"alice", b"private folder", b"SECRET RAW ROW", b"SECRET WARNING"):
                assert secret not in data, (p, secret)
    rec = load_jsonl(out / "data" / "train.jsonl")[0]
    assert rec["meta"]["source_file"] == "youtube_1.csv"
    assert set(rec) == {"id", "platform", "split", "title", "turns", "speakers", "flags", "meta"}
    assert set(rec["speakers"][0]) == {"label", "role", "evidence", "confidence"}


def test_missing_split_is_a_clear_error(tmp_path):
    out = tmp_path / "rel"
    with pytest.raises(DeescalwildError, match=r"'youtube_9' has no split; run `deescalwild "
                                               r"split` first"):
        release([scenario("youtube_1"), scenario("youtube_9", None)], out, pseudonymize=False)
    with pytest.raises(DeescalwildError, match="'youtube_8' has split 'valid'"):
        release([scenario("youtube_8", "valid")], out, pseudonymize=False)
    assert list(tmp_path.iterdir()) == []


def test_duplicate_ids_refused(tmp_path):
    with pytest.raises(DeescalwildError, match="appears twice"):
        release([scenario("youtube_1"), scenario("youtube_1")], tmp_path / "rel",
                pseudonymize=False)


def test_release_replaces_an_older_one(tmp_path):
    out = tmp_path / "rel"
    release([scenario("youtube_1"), scenario("youtube_2")], out, pseudonymize=False)
    release([scenario("youtube_3", "test")], out, pseudonymize=False)
    assert load_jsonl(out / "data" / "train.jsonl") == []
    assert [r["id"] for r in load_jsonl(out / "data" / "test.jsonl")] == ["youtube_3"]
    assert [p.name for p in tmp_path.iterdir()] == ["rel"]


def test_failure_midway_leaves_the_old_release(tmp_path, monkeypatch):
    out = tmp_path / "rel"
    release([scenario("youtube_1")], out, pseudonymize=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(release_mod, "_write_convokit", boom)
    with pytest.raises(OSError, match="disk full"):
        release([scenario("youtube_2")], out, pseudonymize=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["rel"]


def test_refuses_to_replace_a_directory_that_is_not_a_release(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(DeescalwildError, match="not a deescalwild release"):
        release([scenario("youtube_1")], out, pseudonymize=False)
    assert (out / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    release([scenario("youtube_1")], empty, pseudonymize=False)
    assert (empty / "release.json").is_file()


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets" or name.startswith("datasets."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DeescalwildError, match=r"pip install 'deescalwild\[release\]'") as e:
        release([scenario("youtube_1")], tmp_path / "rel", pseudonymize=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "rel").exists()


def test_progress_and_file_source(tmp_path):
    src = tmp_path / "split.jsonl"
    write_corpus(src, corpus())
    seen = []
    s = release(src, tmp_path / "rel", pseudonymize=False,
                progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6)
    assert s.scenarios == 4


def test_same_input_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = tmp_path / "a", tmp_path / "b"
    release(corpus(), a, pseudonymize=False)
    release(corpus(), b, pseudonymize=False)
    for rel in ("README.md", "data/train.jsonl", "data/test.parquet", "convokit/utterances.jsonl",
                "convokit/index.json", "convokit/corpus.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert "2023-11-14T22:13:20Z" in (a / "README.md").read_text()


def test_pseudonymized_release(tmp_path):
    pytest.importorskip("deescalwild.curate.privacy")
    scs = corpus()[:4]
    before = copy.deepcopy([sc.to_dict() for sc in scs])
    s = release(scs, tmp_path / "rel")
    assert s.pseudonymized and s.privacy is not None
    assert [sc.to_dict() for sc in scs] == before  # the caller's scenarios are not rewritten
    rec = load_jsonl(tmp_path / "rel" / "data" / "train.jsonl")[0]
    assert rec["meta"]["pseudonymized"] is True
    assert "NOT pseudonymized" not in (tmp_path / "rel" / "README.md").read_text()


def test_sample_corpus_release(sample_corpus, tmp_path):
    """The shipped sample, imported with its published train/test folders as splits."""
    scs = copy.deepcopy(sample_corpus)
    out = tmp_path / "rel"
    s = release(scs, out, pseudonymize=False)
    assert s.scenarios == len(scs) and s.turns == sum(len(sc.turns) for sc in scs)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "fictional sample corpus" in card
    counts = _card_counts(card)
    for split in SPLITS:
        assert counts[split][0] == sum(sc.split == split for sc in scs)
    assert "carry no curation record" in card


def test_sample_through_curate_and_split(tmp_path):
    """The real pipeline on the sample: import → curate → split → release."""
    annotate = pytest.importorskip("deescalwild.curate.annotate")
    splits = pytest.importorskip("deescalwild.curate.splits")
    from deescalwild.corpus.importer import import_to_file
    from deescalwild.corpus.sample import sample_path

    imported, curated, split = (tmp_path / n for n in ("c.jsonl", "cur.jsonl", "split.jsonl"))
    import_to_file([sample_path()], imported)
    annotate.curate_file(imported, curated)
    splits.split_file(curated, split, seed=3)
    s = release(split, tmp_path / "rel", pseudonymize=False)
    scs = list(read_corpus(split))
    kept = [sc for sc in scs if not sc.meta["curation"]["excluded"]]
    assert s.scenarios_in == len(scs)
    assert s.scenarios + s.empty_scenarios == len(kept)
    assert s.excluded_scenarios == len(scs) - len(kept)
    card = (tmp_path / "rel" / "README.md").read_text(encoding="utf-8")
    assert "seed `3`" in card and "carry no curation record" not in card
