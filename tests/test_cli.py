"""The command line as a user meets it: outputs, exit codes, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deescalwild.cli import main

ROOT = Path(__file__).parents[1]


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_sample_then_stats_json(tmp_path, capsys):
    out = tmp_path / "sample.jsonl"
    code, _, err = run(["corpus", "import", "--sample", "-o", str(out)], capsys)
    assert code == 0 and "19 scenarios, 499 turns" in err
    code, stdout, _ = run(["corpus", "stats", str(out), "--json"], capsys)
    assert code == 0
    stats = json.loads(stdout)
    for key in ("scenarios", "turns", "words", "roles", "platforms", "splits", "speakers",
                "resolution"):
        assert key in stats
    assert (stats["scenarios"], stats["turns"]) == (19, 499)
    assert stats["splits"] == {"train": 15, "test": 4}
    assert sum(stats["roles"].values()) == 499
    assert stats["roles"]["officer"] > stats["roles"]["bystander"] > 0
    assert sum(stats["resolution"].values()) == stats["speaker_instances"] == 63


def test_stats_table_and_plot(tmp_path, capsys):
    corpus, png = tmp_path / "c.jsonl", tmp_path / "roles.png"
    run(["corpus", "import", "--sample", "-o", str(corpus)], capsys)
    code, stdout, _ = run(["corpus", "stats", str(corpus), "--plot", str(png)], capsys)
    assert code == 0 and "Roles" in stdout and "officer" in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_files_are_listed_and_the_rest_imported(write_csv, tmp_path, capsys):
    write_csv("d/youtube_1.csv", "start_time,speaker_label,transcript\n00:01,[Officer],Hi\n")
    write_csv("d/bad.csv", "who,what\nA,B\n")
    out = tmp_path / "c.jsonl"
    code, stdout, _ = run(["corpus", "import", str(tmp_path / "d"), "-o", str(out),
                             "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["scenarios"] == 1
    assert summary["skipped_files"][0]["path"].endswith("bad.csv")
    assert "expected header" in summary["skipped_files"][0]["reason"]


def test_strict_fails_with_one_line_and_keeps_the_old_output(write_csv, tmp_path, capsys):
    write_csv("d/youtube_1.csv", "start_time,speaker_label,transcript\n00:01,A,Hi\n00:02,B\n")
    out = tmp_path / "c.jsonl"
    out.write_text("previous\n")
    code, _, err = run(["corpus", "import", str(tmp_path / "d"), "-o", str(out), "--strict"],
                       capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "youtube_1.csv:3: expected 3 fields" in err
    assert out.read_text() == "previous\n"


def test_nothing_importable_is_an_error_not_an_empty_file(write_csv, tmp_path, capsys):
    write_csv("d/x.csv", b"")
    out = tmp_path / "c.jsonl"
    code, _, err = run(["corpus", "import", str(tmp_path / "d"), "-o", str(out)], capsys)
    assert code == 1 and "nothing written" in err and "empty file" in err
    assert not out.exists()


def test_usage_errors_and_bad_corpus(tmp_path, capsys):
    code, _, err = run(["corpus", "import", "-o", str(tmp_path / "c.jsonl")], capsys)
    assert code == 2 and "--sample" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema": "deescalwild.corpus/1", "id": "a"}\nnot json\n')
    code, _, err = run(["corpus", "stats", str(bad)], capsys)
    assert code == 1 and "bad.jsonl:" in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(Exception, match="expected one JSON object"):
        main(["--debug", "corpus", "stats", str(bad)])


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from deescalwild.cli import cli; "
            "heavy = [m for m in ('sklearn', 'scipy', 'matplotlib', 'torch', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_cli_reference_is_up_to_date():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import cli_docs
    finally:
        sys.path.pop(0)
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == cli_docs.main(), \
        "docs/cli.md is stale: run `make docs`"


def test_train_eval_check_and_use_a_role_model(tmp_path, capsys):
    raw, model, corpus = tmp_path / "raw.jsonl", tmp_path / "m.npz", tmp_path / "c.jsonl"
    assert run(["corpus", "import", "--sample", "--no-roles", "-o", str(raw)], capsys)[0] == 0
    from deescalwild.core import read_corpus

    assert all(t.role.value == "unknown" for sc in read_corpus(raw) for t in sc.turns)
    code, out, _ = run(["corpus", "roles", "train", str(raw), "-o", str(model),
                        "--cv-folds", "3"], capsys)
    assert code == 0
    meta = json.loads(out)
    assert meta["scenarios"] == 19 and meta["cross_validation"]["folds"] == 3
    assert meta["git_commit"] is None or len(meta["git_commit"]) >= 40
    code, out, _ = run(["corpus", "roles", "eval", str(raw), "--folds", "3"], capsys)
    assert code == 0 and 0.0 <= json.loads(out)["accuracy"] <= 1.0
    assert run(["corpus", "import", "--sample", "--role-model", str(model), "-o", str(corpus)],
               capsys)[0] == 0
    code, out, _ = run(["corpus", "roles", "check", str(corpus), "--gold",
                        str(ROOT / "tests" / "data" / "sample_roles.jsonl"), "--errors"], capsys)
    report = json.loads(out)
    assert code == 0 and report["pairs"] == 55 and report["accuracy"]["role_word"] == 1.0
    assert len(report["errors"]) == round(55 * (1 - report["accuracy"]["all"]))


def test_training_on_too_little_is_one_line(write_csv, tmp_path, capsys):
    write_csv("d/a.csv", "start_time,speaker_label,transcript\n00:01,John,hi\n")
    raw = tmp_path / "raw.jsonl"
    run(["corpus", "import", str(tmp_path / "d"), "--no-roles", "-o", str(raw)], capsys)
    code, _, err = run(["corpus", "roles", "train", str(raw), "-o", str(tmp_path / "m.npz")],
                       capsys)
    assert code == 1 and err.startswith("error: ") and "nothing to train on" in err


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["corpus", "import", "--sample", "-o", str(blocker / "c.jsonl")], capsys)
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err


def test_output_does_not_depend_on_hash_seeds(tmp_path):
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"c{seed}.jsonl"
        subprocess.run([sys.executable, "-m", "deescalwild.cli", "corpus", "import", "--sample",
                        "-o", str(out)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
