"""`deescalwild release`: a split corpus → a dataset directory others can load and cite.

One directory holds the same scenarios in every form people load: JSON Lines and Parquet per
split (`data/`), a Hugging Face `DatasetDict` (`hf/`), a ConvoKit corpus (`convokit/`), a
dataset card whose numbers are computed from the released records (`README.md`, see card.py)
and a manifest with checksums (`release.json`). The layout is in docs/release.md.

What is released: scenarios the curation policy kept, without the turns it excluded, names
pseudonymized (deescalwild.curate.privacy), and a metadata subset that cannot leak a user's
folders or the raw text of skipped rows. The directory is built beside the target and renamed
into place, so an interrupted run leaves the previous release as it was.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from deescalwild.core import Scenario, Turn, read_corpus
from deescalwild.curate.card import (
    INTENDED_USES,
    PAPER_ARXIV,
    PROHIBITED_USES,
    SOURCE_COMMIT,
    SOURCE_LICENSE,
    SOURCE_REPO,
    SPLITS,
    CardInfo,
    InputTally,
    bibtex,
    released_counts,
    render_card,
)
from deescalwild.curate.policy import is_excluded, kept_turns
from deescalwild.errors import DeescalwildError

RELEASE_SCHEMA = "deescalwild.release/1"
SUMMARY_SCHEMA = "deescalwild.release-summary/1"
CONVOKIT_VERSION = 1  # index.json "version": what ConvoKit writes for a corpus dumped once

Progress = Callable[[int, int | None], None]


@dataclass
class ReleaseSummary:
    """What a release wrote and what it left out (`release --json`)."""

    output: str
    scenarios_in: int = 0
    turns_in: int = 0
    scenarios: int = 0
    turns: int = 0
    words: int = 0
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    excluded_scenarios: int = 0  # kept out by the curation policy
    excluded_turns: int = 0  # dropped from released scenarios by the policy
    empty_scenarios: int = 0  # no turn left to release
    pseudonymized: bool = True
    include_excluded: bool = False
    privacy: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SUMMARY_SCHEMA, **asdict(self)}


def release(source: Path | str | Iterable[Scenario], out_dir: Path | str, *,
            pseudonymize: bool = True, include_excluded: bool = False,
            progress: Progress | None = None) -> ReleaseSummary:
    """Write a release directory from a split corpus (a file path, or scenarios).

    `include_excluded` releases what the policy excluded too (scenarios and turns), marked in
    `meta.curation`. `progress(done, total)` is called after each scenario (total may be None).
    An existing `out_dir` is replaced only when it holds a previous release (or nothing), and
    only once the new one is complete.
    """
    out_dir = Path(out_dir)
    datasets, pa, pq = _heavy_imports()
    pseudo = _pseudonymizer() if pseudonymize else None
    _check_target(out_dir)

    if isinstance(source, (str, Path)):
        scenarios: Iterable[Scenario] = read_corpus(source)
        total: int | None = _count_lines(Path(source))
        owned = True  # read from a file: ours to change in place
    else:
        scenarios = source
        total = len(source) if isinstance(source, Sized) else None
        owned = False

    summary = ReleaseSummary(output=str(out_dir), pseudonymized=pseudonymize,
                             include_excluded=include_excluded)
    tally = InputTally()
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    privacy_total: Any = None
    seen: set[str] = set()
    sample_dir = _sample_dir()
    for done, sc in enumerate(scenarios, start=1):
        if sc.id in seen:
            raise DeescalwildError(f"scenario id {sc.id!r} appears twice in the input; "
                                   "release needs unique ids")
        seen.add(sc.id)
        is_sample = sample_dir is not None and _under(sc.source, sample_dir)
        excluded = is_excluded(sc)
        keep: set[int] | None = None
        if not excluded or include_excluded:
            if sc.split not in SPLITS:
                raise DeescalwildError(_split_message(sc))
            keep = {t.index for t in (sc.turns if include_excluded else kept_turns(sc))} or None
        tally.add(sc, keep, sample=is_sample)
        if excluded:
            tally.excluded_scenarios += 1
            tally.excluded_scenario_turns += len(sc.turns)
        if keep is None:
            tally.empty_scenarios += not excluded or include_excluded
        else:
            if pseudo is not None:
                if not owned:
                    sc = copy.deepcopy(sc)  # do not rewrite the caller's scenarios
                counts = pseudo(sc)
                privacy_total = counts if privacy_total is None else (
                    privacy_total.add(counts) or privacy_total)
            turns = [t for t in sc.turns if t.index in keep]
            records[sc.split].append(released_record(sc, turns, pseudonymize))
        if progress:
            progress(done, total)

    summary.scenarios_in, summary.turns_in = tally.scenarios, tally.turns
    summary.excluded_scenarios = tally.excluded_scenarios
    summary.excluded_turns, summary.empty_scenarios = tally.dropped_turns, tally.empty_scenarios
    summary.privacy = _counts_dict(privacy_total) if pseudonymize else None
    counts = released_counts(records)
    summary.splits = counts["splits"]
    summary.scenarios, summary.turns, summary.words = (counts["total"][k] for k in
                                                       ("scenarios", "turns", "words"))
    from deescalwild import __version__
    from deescalwild.provenance import git_commit

    info = CardInfo(version=__version__, git_commit=git_commit(), created=_created(),
                    pseudonymized=pseudonymize, include_excluded=include_excluded,
                    privacy=summary.privacy,
                    data_files=[f"data/{s}.parquet" for s in SPLITS if records[s]])

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp",
                                dir=out_dir.parent))
    try:
        tables = _write_data(tmp, records, datasets, pa, pq)
        _write_hf(tmp / "hf", tables, datasets)
        _write_convokit(tmp / "convokit", records, info, counts)
        (tmp / "README.md").write_text(render_card(records, tally, info), encoding="utf-8")
        summary.files = _write_manifest(tmp, summary, tally, info)
        _fsync_tree(tmp)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def released_record(sc: Scenario, turns: list[Turn], pseudonymized: bool) -> dict[str, Any]:
    """One scenario as released: no source path beyond the file name, no raw skipped rows or
    warnings, no role `why` (it can quote a name), speakers limited to those who speak."""
    order = {label: i for i, label in enumerate(sc.speakers)}
    labels = sorted(dict.fromkeys(t.speaker for t in turns),
                    key=lambda x: order.get(x, len(order)))
    speakers = []
    for label in labels:
        sr = sc.speakers.get(label)
        speakers.append({"label": label, "role": sr.role.value if sr else "unknown",
                         "evidence": sr.evidence.value if sr else None,
                         "confidence": sr.confidence if sr else None})
    cur = sc.meta.get("curation") if isinstance(sc.meta.get("curation"), dict) else {}
    spl = sc.meta.get("split") if isinstance(sc.meta.get("split"), dict) else {}
    title = sc.meta.get("title")
    return {
        "id": sc.id,
        "platform": sc.platform,
        "split": sc.split,
        "title": title if isinstance(title, str) else None,
        "turns": [{"index": t.index, "start": None if t.start is None else float(t.start),
                   "speaker": t.speaker, "role": t.role.value, "text": t.text,
                   "flags": list(t.flags)} for t in turns],
        "speakers": speakers,
        "flags": list(sc.flags),
        "meta": {
            "source_file": sc.source.replace("\\", "/").rsplit("/", 1)[-1] or None,
            "source_sha256": _str_or_none(sc.meta.get("sha256")),
            "curation": {
                "excluded": bool(cur.get("excluded", False)),
                "excluded_by": [str(f) for f in cur.get("excluded_by") or ()],
                "excluded_turns": [int(i) for i in cur.get("excluded_turns") or ()],
                "near_duplicate_of": _str_or_none(cur.get("near_duplicate_of")),
                "group": _str_or_none(cur.get("group", cur.get("cluster"))),
            },
            "split": {"strategy": _str_or_none(spl.get("strategy")),
                      "seed": spl.get("seed") if isinstance(spl.get("seed"), int) else None,
                      "group": _str_or_none(spl.get("group"))},
            "pseudonymized": pseudonymized,
        },
    }


def hf_features(datasets: Any) -> Any:
    """The released record's schema, explicit so empty splits and all-null columns (a split
    without timestamps) keep their types in Parquet and in the DatasetDict."""
    V, L = datasets.Value, datasets.List
    strings = L(V("string"))
    return datasets.Features({
        "id": V("string"), "platform": V("string"), "split": V("string"), "title": V("string"),
        "turns": L({"index": V("int64"), "start": V("float64"), "speaker": V("string"),
                    "role": V("string"), "text": V("string"), "flags": strings}),
        "speakers": L({"label": V("string"), "role": V("string"), "evidence": V("string"),
                       "confidence": V("float64")}),
        "flags": strings,
        "meta": {
            "source_file": V("string"), "source_sha256": V("string"),
            "curation": {"excluded": V("bool"), "excluded_by": strings,
                         "excluded_turns": L(V("int64")), "near_duplicate_of": V("string"),
                         "group": V("string")},
            "split": {"strategy": V("string"), "seed": V("int64"), "group": V("string")},
            "pseudonymized": V("bool"),
        },
    })


# ---------------------------------------------------------------- writers


def _write_data(root: Path, records: dict[str, list[dict]], datasets: Any, pa: Any,
                pq: Any) -> dict[str, Any]:
    """data/{split}.jsonl and .parquet; returns the Arrow tables (reused for hf/)."""
    schema = hf_features(datasets).arrow_schema
    (root / "data").mkdir()
    tables = {}
    for split in SPLITS:
        with (root / "data" / f"{split}.jsonl").open("wb") as fh:
            for rec in records[split]:
                fh.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        tables[split] = pa.Table.from_pylist(records[split], schema=schema)
        pq.write_table(tables[split], root / "data" / f"{split}.parquet")
    return tables


def _write_hf(path: Path, tables: dict[str, Any], datasets: Any) -> None:
    """A DatasetDict built from the same Arrow tables as the Parquet files (an empty split
    keeps its columns, which `Dataset.from_list([])` would not)."""
    from datasets.table import InMemoryTable

    features = hf_features(datasets)
    description = ("Police-civilian encounter transcripts for training human officers in "
                   "de-escalation. Prohibited: " + "; ".join(PROHIBITED_USES) + ".")
    dd = datasets.DatasetDict({
        split: datasets.Dataset(
            InMemoryTable(tables[split]), split=datasets.NamedSplit(split),
            info=datasets.DatasetInfo(description=description, license="mit",
                                      homepage=f"https://arxiv.org/abs/{PAPER_ARXIV}",
                                      citation=bibtex(), features=features))
        for split in SPLITS})
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        # an empty split must still get one (empty) shard, or load_from_disk fails on it
        dd.save_to_disk(str(path), num_shards={s: 1 for s in SPLITS if not len(tables[s])})
    finally:
        if bars:
            datasets.enable_progress_bars()


def _write_convokit(root: Path, records: dict[str, list[dict]], info: CardInfo,
                    counts: dict[str, Any]) -> None:
    """ConvoKit's directory format (its docs/source/data_format.rst and the files
    `Corpus.dump` writes): a conversation's id is the id of its first utterance; speaker ids
    are per scenario ("{scenario}::{label}") since a label names different people in
    different videos; `reply_to` is the previous released utterance."""
    root.mkdir()
    speakers: dict[str, dict[str, Any]] = {}
    conversations: dict[str, dict[str, Any]] = {}
    index: dict[str, dict[str, list[str]]] = {"utterance": {}, "speaker": {},
                                              "conversation": {}, "corpus": {}}
    with (root / "utterances.jsonl").open("wb") as fh:
        for split in SPLITS:
            for rec in records[split]:
                sid = rec["id"]
                convo_id = f"{sid}::{rec['turns'][0]['index']}"
                prev = None
                for t in rec["turns"]:
                    uid = f"{sid}::{t['index']}"
                    meta = {"role": t["role"], "flags": t["flags"], "split": split,
                            "index": t["index"]}
                    _index(index["utterance"], meta)
                    fh.write(orjson.dumps({
                        "id": uid, "speaker": f"{sid}::{t['speaker']}",
                        "conversation_id": convo_id, "reply_to": prev,
                        "timestamp": t["start"], "text": t["text"], "meta": meta,
                    }, option=orjson.OPT_APPEND_NEWLINE))
                    prev = uid
                for sp in rec["speakers"]:
                    meta = {"label": sp["label"], "role": sp["role"],
                            "evidence": sp["evidence"], "confidence": sp["confidence"],
                            "scenario_id": sid}
                    _index(index["speaker"], meta)
                    speakers[f"{sid}::{sp['label']}"] = {"meta": meta, "vectors": []}
                meta = {"scenario_id": sid, "platform": rec["platform"], "split": split,
                        "title": rec["title"], "flags": rec["flags"]}
                _index(index["conversation"], meta)
                conversations[convo_id] = {"meta": meta, "vectors": []}
    corpus_meta = {
        "name": "DeEscalWild dialogues (deescalwild release)",
        "source": f"https://github.com/{SOURCE_REPO} @ {SOURCE_COMMIT}",
        "license": SOURCE_LICENSE, "paper": f"arXiv:{PAPER_ARXIV}",
        "deescalwild_version": info.version, "git_commit": info.git_commit,
        "created": info.created, "pseudonymized": info.pseudonymized,
        "intended_uses": list(INTENDED_USES), "prohibited_uses": list(PROHIBITED_USES),
        "num_conversations": len(conversations), "num_utterances": counts["total"]["turns"],
        "num_speakers": len(speakers),
    }
    _index(index["corpus"], corpus_meta)
    dump = orjson.OPT_INDENT_2
    (root / "speakers.json").write_bytes(orjson.dumps(speakers))
    (root / "conversations.json").write_bytes(orjson.dumps(conversations))
    (root / "corpus.json").write_bytes(orjson.dumps(corpus_meta, option=dump))
    (root / "index.json").write_bytes(orjson.dumps({
        "utterances-index": index["utterance"], "speakers-index": index["speaker"],
        "conversations-index": index["conversation"], "overall-index": index["corpus"],
        "version": CONVOKIT_VERSION, "vectors": [],
    }, option=dump))


def _index(idx: dict[str, list[str]], meta: dict[str, Any]) -> None:
    """ConvoKit's metadata index: every type seen per key, as `str(type(value))`; None adds
    nothing (as ConvoKitIndex does)."""
    for k, v in meta.items():
        if v is not None:
            types = idx.setdefault(k, [])
            if str(type(v)) not in types:
                types.append(str(type(v)))


def _write_manifest(root: Path, summary: ReleaseSummary, tally: InputTally,
                    info: CardInfo) -> list[str]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            files[p.relative_to(root).as_posix()] = {"bytes": p.stat().st_size,
                                                     "sha256": _sha256(p)}
    policies = [orjson.loads(k) for k in tally.policies]
    manifest = {
        "schema": RELEASE_SCHEMA,
        "created": info.created,
        "deescalwild_version": info.version,
        "git_commit": info.git_commit,
        "source": {"repository": SOURCE_REPO, "commit": SOURCE_COMMIT,
                   "license": SOURCE_LICENSE, "paper": f"arXiv:{PAPER_ARXIV}"},
        "pseudonymized": info.pseudonymized,
        "include_excluded": info.include_excluded,
        "privacy": summary.privacy,
        "policy": policies[0] if len(policies) == 1 else (policies or None),
        "counts": {"released": {"total": {k: getattr(summary, k) for k in
                                          ("scenarios", "turns", "words")},
                                "splits": summary.splits},
                   "input": tally.to_dict()},
        "files": files,
    }
    (root / "release.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return [*files, "release.json"]


# ---------------------------------------------------------------- the directory swap


def _check_target(out: Path) -> None:
    """Refuse to replace anything but an earlier release: `-o ~` must not delete a home."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DeescalwildError(f"{out}: exists and is not a directory; choose another output")
    if out.is_dir() and any(out.iterdir()):
        try:
            schema = orjson.loads((out / "release.json").read_bytes()).get("schema")
        except (OSError, orjson.JSONDecodeError, AttributeError):
            schema = None
        if schema != RELEASE_SCHEMA:
            raise DeescalwildError(f"{out}: not empty and not a deescalwild release; choose "
                                   "another output directory or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished release over `out`; the old one is removed only after that."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "release")
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / "release", out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    _fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- helpers


def _heavy_imports() -> tuple[Any, Any, Any]:
    """datasets and pyarrow, imported only when a release is made (~1 s)."""
    try:
        import datasets
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DeescalwildError(f"release needs datasets and pyarrow ({e.name} is missing): "
                               "pip install 'deescalwild[release]'") from e
    return datasets, pa, pq


def _pseudonymizer() -> Callable[[Scenario], Any]:
    try:
        from deescalwild.curate.privacy import pseudonymize
    except ImportError as e:
        raise DeescalwildError("pseudonymization is not available in this build "
                               f"({e}); use --no-pseudonymize only for data you will not "
                               "share") from e
    return pseudonymize


def _split_message(sc: Scenario) -> str:
    if sc.split is None:
        return f"scenario {sc.id!r} has no split; run `deescalwild split` first"
    return (f"scenario {sc.id!r} has split {sc.split!r}, expected train, dev or test; run "
            "`deescalwild split` first")


def _counts_dict(counts: Any) -> dict[str, Any] | None:
    if counts is None:
        return None
    if hasattr(counts, "to_dict"):
        d = counts.to_dict()
    elif is_dataclass(counts):
        d = asdict(counts)
    else:
        d = dict(vars(counts))
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _created() -> str:
    """UTC time of the release; SOURCE_DATE_EPOCH (reproducible builds) overrides it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = int(epoch) if epoch and epoch.isdigit() else int(time.time())
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return None  # read_corpus will report it


def _sample_dir() -> Path | None:
    from deescalwild.corpus.sample import sample_path

    return sample_path().resolve()


def _under(source: str, folder: Path) -> bool:
    try:
        return bool(source) and Path(source).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None
