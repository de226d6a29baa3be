"""The dataset card (README.md) of a release, and the counts it is made of.

Every number in the card comes from `released_counts` (over the records actually written) or
from `InputTally` (over the scenarios release read, for what curation kept out); nothing is typed
in, so the card cannot drift from the data. Layout: Gebru et al.'s "Datasheets for Datasets"
questions, under a Hugging Face dataset-card YAML header so the Hub reads the Parquet splits.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deescalwild.core import Evidence, Role, Scenario

SPLITS = ("train", "dev", "test")
ROLES = tuple(r.value for r in Role)
EVIDENCE = (*(e.value for e in Evidence), "none")

SOURCE_REPO = "Hasebul/DeEscalWild-Benchmark-Farmework"
SOURCE_COMMIT = "91af46b"
SOURCE_LICENSE = "MIT"
PAPER_ARXIV = "2604.13075"
PAPER_TITLE = "DeEscalWild: A Real-World Benchmark for Automated De-Escalation Training with SLMs"
PAPER_AUTHORS = ("Md Hasebul Hasan and Krity Haque Charu and Eshwara Prasad Sridhar and "
                 "Shuchisnigdha Deb and Mohammad A. Islam")

INTENDED_USES = (
    "training and assessing human police trainees in de-escalation",
    "research on dialogue systems that play the civilian in such training exercises",
)
PROHIBITED_USES = (
    "predictive policing (forecasting crime, risk, or where or against whom police should act)",
    "profiling of individuals or groups (inferring identity, character, dangerousness, "
    "ethnicity, mental state or guilt)",
    "automated decisions about people (dispatch, charging, sentencing, hiring, discipline)",
    "re-identification: identifying, tracking, contacting or exposing anyone in the videos",
)


def bibtex() -> str:
    """The paper's citation."""
    return ("@misc{hasan2026deescalwild,\n"
            f"  title         = {{{{{PAPER_TITLE}}}}},\n"
            f"  author        = {{{PAPER_AUTHORS}}},\n"
            "  year          = {2026},\n"
            f"  eprint        = {{{PAPER_ARXIV}}},\n"
            "  archivePrefix = {arXiv},\n"
            "  primaryClass  = {cs.CL},\n"
            f"  url           = {{https://arxiv.org/abs/{PAPER_ARXIV}}}\n}}")


def words(text: str) -> int:
    """Whitespace-separated tokens, as `corpus stats` counts them."""
    return len(text.split())


@dataclass
class FlagTally:
    """One quality flag over the input: how much it touched and how much of that was released."""

    count: int = 0  # turns (turn flag) or scenarios (scenario flag) carrying it
    words: int = 0
    released: int = 0


@dataclass
class InputTally:
    """What release read, before policy and pseudonymization: the card's curation figures."""

    scenarios: int = 0
    turns: int = 0
    words: int = 0
    excluded_scenarios: int = 0  # kept out by the policy
    excluded_scenario_turns: int = 0
    dropped_turns: int = 0  # turns the policy excluded inside released scenarios
    dropped_words: int = 0
    empty_scenarios: int = 0  # nothing left to release after dropping turns
    turn_flags: dict[str, FlagTally] = field(default_factory=dict)
    scenario_flags: dict[str, FlagTally] = field(default_factory=dict)
    policies: Counter[str] = field(default_factory=Counter)  # canonical JSON → scenarios
    split_methods: Counter[str] = field(default_factory=Counter)
    split_checks: Counter[str] = field(default_factory=Counter)
    uncurated: int = 0
    sample: int = 0  # scenarios from the fictional sample corpus shipped with deescalwild

    def add(self, sc: Scenario, released_turns: set[int] | None, *, sample: bool) -> None:
        """Count one input scenario; `released_turns` is None when it is not released."""
        n_words = [words(t.text) for t in sc.turns]
        total = sum(n_words)
        self.scenarios += 1
        self.turns += len(sc.turns)
        self.words += total
        self.sample += sample
        for t, w in zip(sc.turns, n_words):
            out = released_turns is not None and t.index in released_turns
            for f in t.flags:
                ft = self.turn_flags.setdefault(f, FlagTally())
                ft.count += 1
                ft.words += w
                ft.released += out
        for f in sc.flags:
            ft = self.scenario_flags.setdefault(f, FlagTally())
            ft.count += 1
            ft.words += total
            ft.released += released_turns is not None
        cur = sc.meta.get("curation")
        if isinstance(cur, dict):
            pol = cur.get("policy")
            if isinstance(pol, str):  # a policy file's path: keep its name, not user folders
                pol = pol.replace("\\", "/").rsplit("/", 1)[-1]
            if pol is not None:
                self.policies[_canonical(pol)] += 1
        else:
            self.uncurated += 1
        split = sc.meta.get("split")
        if isinstance(split, dict):
            self.split_methods[_canonical({"strategy": split.get("strategy"),
                                           "seed": split.get("seed")})] += 1
            check = split.get("cross_split")
            if isinstance(check, dict):
                self.split_checks[_canonical({k: check.get(k) for k in _CHECK_KEYS})] += 1
        if released_turns is None:
            return
        kept = [w for t, w in zip(sc.turns, n_words) if t.index in released_turns]
        self.dropped_turns += len(sc.turns) - len(kept)
        self.dropped_words += total - sum(kept)

    def to_dict(self) -> dict[str, Any]:
        def flags(d: dict[str, FlagTally]) -> dict[str, dict[str, int]]:
            return {k: vars(v).copy() for k, v in sorted(d.items())}

        return {
            "scenarios": self.scenarios, "turns": self.turns, "words": self.words,
            "excluded_scenarios": self.excluded_scenarios,
            "excluded_scenario_turns": self.excluded_scenario_turns,
            "dropped_turns": self.dropped_turns, "dropped_words": self.dropped_words,
            "empty_scenarios": self.empty_scenarios, "uncurated_scenarios": self.uncurated,
            "turn_flags": flags(self.turn_flags), "scenario_flags": flags(self.scenario_flags),
        }


_CHECK_KEYS = ("max_jaccard", "max_pair", "groups_spanning_splits", "near_duplicate_pairs_across")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def released_counts(records: Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """Counts over released records (split → list of records): per split, per split and
    platform, and per role (turns, words, speakers and how their roles were resolved)."""
    per_split: dict[str, dict[str, int]] = {}
    per_platform: dict[str, dict[str, dict[str, int]]] = {}
    roles = {r: {"turns": 0, "words": 0, "speakers": 0, **{e: 0 for e in EVIDENCE}}
             for r in ROLES}
    for split in SPLITS:
        tot = per_split[split] = {"scenarios": 0, "turns": 0, "words": 0}
        plat = per_platform[split] = {}
        for rec in records.get(split, ()):
            w = 0
            for t in rec["turns"]:
                n = words(t["text"])
                w += n
                r = roles.setdefault(t["role"], {"turns": 0, "words": 0, "speakers": 0,
                                                 **{e: 0 for e in EVIDENCE}})
                r["turns"] += 1
                r["words"] += n
            for sp in rec["speakers"]:
                r = roles.setdefault(sp["role"], {"turns": 0, "words": 0, "speakers": 0,
                                                  **{e: 0 for e in EVIDENCE}})
                r["speakers"] += 1
                r[sp["evidence"] or "none"] += 1
            p = plat.setdefault(rec["platform"] or "unknown",
                                {"scenarios": 0, "turns": 0, "words": 0})
            for d in (tot, p):
                d["scenarios"] += 1
                d["turns"] += len(rec["turns"])
                d["words"] += w
        per_platform[split] = dict(sorted(plat.items()))
    total = {k: sum(s[k] for s in per_split.values()) for k in ("scenarios", "turns", "words")}
    return {"total": total, "splits": per_split, "platforms": per_platform, "roles": roles}


@dataclass
class CardInfo:
    """What the card says about how this release was made (not computed from the data)."""

    version: str
    git_commit: str | None
    created: str
    pseudonymized: bool
    include_excluded: bool
    privacy: dict[str, Any] | None = None
    data_files: Sequence[str] = ()  # parquet files listed in the YAML configs


def _policy_text(pol: Any, version: str) -> str:
    """A recorded policy: its content when recorded, the shipped defaults when it says
    "default", else only the file's name (its content is not in the corpus)."""
    if pol == "default":
        from deescalwild.curate.policy import load_policy

        pol = {"source": f"the default policy of deescalwild {version}",
               **{k: v for k, v in load_policy().to_dict().items() if k != "source"}}
    if isinstance(pol, dict):
        return f"```json\n{json.dumps(pol, indent=2, ensure_ascii=False)}\n```\n"
    return f"A policy file `{pol}`; its content is not recorded in the corpus.\n"


def _n(x: int) -> str:
    return f"{x:,}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_n(c) if isinstance(c, int) else str(c) for c in row)
                     + " |")
    return "\n".join(lines)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _yaml_header(counts: dict[str, Any], info: CardInfo) -> str:
    q = json.dumps  # a JSON string is a valid YAML scalar
    lines = ["---", f"pretty_name: {q('DeEscalWild dialogues (deescalwild release)')}",
             "license: mit", "language:", "- en", "multilinguality: monolingual",
             "task_categories:", "- text-generation", "task_ids:", "- dialogue-modeling",
             "size_categories:", f"- {_size_category(counts['total']['scenarios'])}",
             "annotations_creators:", "- machine-generated", "language_creators:", "- found",
             "tags:", "- dialogue", "- de-escalation", "- police-training",
             "configs:", "- config_name: default", "  data_files:"]
    for path in info.data_files:
        split = path.rsplit("/", 1)[-1].split(".", 1)[0]
        lines += [f"  - split: {split}", f"    path: {path}"]
    lines.append("---")
    return "\n".join(lines)


def render_card(records: Mapping[str, Sequence[dict[str, Any]]], tally: InputTally,
                info: CardInfo) -> str:
    """The README.md of a release directory."""
    c = released_counts(records)
    tot = c["total"]
    out: list[str] = [_yaml_header(c, info), ""]
    add = out.append

    add("# DeEscalWild dialogues (deescalwild release)\n")
    add("## Summary\n")
    sample_note = ("**These are the fictional sample transcripts shipped with deescalwild**, not "
                   "real encounters; the release exists to show the layout. "
                   if tally.sample and tally.sample == tally.scenarios else "")
    add(f"{sample_note}Transcripts of police-civilian encounters from public videos, as "
        f"dialogues with a speaker role on every turn: {_n(tot['scenarios'])} scenarios, "
        f"{_n(tot['turns'])} turns, {_n(tot['words'])} words, in splits "
        + ", ".join(f"{s} ({_n(c['splits'][s]['scenarios'])})" for s in SPLITS) + ". "
        "Made to train **human officers** in de-escalation; see the prohibited uses below.\n")
    add("Files: `data/{split}.jsonl` and `data/{split}.parquet` (one scenario per row), `hf/` "
        "(a `datasets.DatasetDict`), `convokit/` (a ConvoKit corpus), `release.json` (manifest "
        "with checksums). The record layout is described in deescalwild's `docs/release.md`.\n")

    add("## Provenance\n")
    only_sample = tally.sample == tally.scenarios > 0
    if only_sample:
        add("- Source: the fictional sample corpus inside the deescalwild package "
            "(`deescalwild corpus import --sample`), written for deescalwild in the format of "
            "the published DeEscalWild transcripts; all names and events are invented.")
    else:
        add(f"- Source: the DeEscalWild transcripts published by the paper's authors, GitHub "
            f"[`{SOURCE_REPO}`](https://github.com/{SOURCE_REPO}), commit `{SOURCE_COMMIT}`, "
            f"folder `processed_data/`, {SOURCE_LICENSE} licence.")
        if tally.sample:
            add(f"- {_n(tally.sample)} of the input scenarios come from deescalwild's fictional "
                "sample corpus.")
        add("- How the transcripts were made, by the original authors: public videos from "
            "YouTube, TikTok and Facebook, transcribed by automatic speech recognition, "
            "speakers separated and labelled by an automatic diarizer (labels are free text), "
            "filtered with human checks and an LLM judge. Nobody re-listened to the audio for "
            "this release.")
    add(f"- Paper: *{PAPER_TITLE}*, arXiv [{PAPER_ARXIV}](https://arxiv.org/abs/{PAPER_ARXIV}).")
    add(f"- This release: made with deescalwild {info.version} (git commit "
        f"`{info.git_commit or 'unknown'}`) on {info.created}, from a corpus built with "
        "`deescalwild corpus import` (speaker roles resolved), `curate` and `split`. Speaker "
        "roles are machine guesses with a confidence, not judgements about anyone.\n")

    add("## Counts\n")
    rows = []
    for s in SPLITS:
        for p, d in c["platforms"][s].items():
            rows.append((s, p, d["scenarios"], d["turns"], d["words"]))
        d = c["splits"][s]
        rows.append((f"**{s}**", "all", d["scenarios"], d["turns"], d["words"]))
    rows.append(("**all**", "all", tot["scenarios"], tot["turns"], tot["words"]))
    add(_table(("split", "platform", "scenarios", "turns", "words"), rows) + "\n")

    add("## Speaker roles\n")
    add("Turns and words per role; speakers are (scenario, label) pairs. A role is settled by "
        "the label's words (`label`), a cue in the conversation such as being addressed as "
        "\"Officer Bruno\" (`context`), or a classifier (`model`); `none` marks a label with no "
        "resolution recorded. `unknown` is an honest answer where the evidence does not settle "
        "the role.\n")
    add(_table(("role", "turns", "words", "speakers", *(f"by {e}" for e in EVIDENCE)),
               [(r, d["turns"], d["words"], d["speakers"], *(d[e] for e in EVIDENCE))
                for r, d in c["roles"].items()]) + "\n")

    add("## Quality flags and curation\n")
    add(f"Release read {_n(tally.scenarios)} scenarios ({_n(tally.turns)} turns, "
        f"{_n(tally.words)} words). The curation policy kept {_n(tally.excluded_scenarios)} "
        f"scenarios out ({_n(tally.excluded_scenario_turns)} turns) and dropped "
        f"{_n(tally.dropped_turns)} turns ({_n(tally.dropped_words)} words) from the scenarios "
        f"it released; {_n(tally.empty_scenarios)} scenarios had no turn left."
        + (" Excluded scenarios and turns were **included** on request "
           "(`--include-excluded`); `meta.curation` says which they are."
           if info.include_excluded else "") + "\n")
    if tally.uncurated:
        add(f"**{_n(tally.uncurated)} scenarios carry no curation record** (they were not run "
            "through `deescalwild curate`), so nothing was excluded from them.\n")
    for what, unit, flags in (("Turn", "turns", tally.turn_flags),
                              ("Scenario", "scenarios", tally.scenario_flags)):
        if not flags:
            add(f"{what} flags: none in the input.\n")
            continue
        add(f"{what} flags, counted over the input (words: of the flagged {unit}; released: "
            f"{unit} in this release):\n")
        add(_table(("flag", unit, "words", "released", "not released"),
                   [(f, t.count, t.words, t.released, t.count - t.released)
                    for f, t in sorted(flags.items())]) + "\n")
    add("### Curation policy\n")
    if not tally.policies:
        add("The input does not record the policy it was curated with (`meta.curation.policy`); "
            "see the report written by `deescalwild curate`.\n")
    for pol, n in tally.policies.most_common():
        if len(tally.policies) > 1:
            add(f"Used for {_n(n)} scenarios:\n")
        add(_policy_text(json.loads(pol), info.version))

    add("## Splits\n")
    if not tally.split_methods:
        add("The input does not record how it was split (`meta.split`).\n")
    for m, n in tally.split_methods.most_common():
        d = json.loads(m)
        add(f"- strategy `{d['strategy']}`, seed `{d['seed']}` ({_n(n)} scenarios)")
    if not tally.split_checks:
        add("- Cross-split near-duplicate check: not recorded in the scenarios; "
            "`deescalwild split --report FILE` writes it (`cross_split` in that report).")
    for chk, n in tally.split_checks.most_common():
        d = json.loads(chk)
        pair = " / ".join(f"`{x}`" for x in d["max_pair"]) if d.get("max_pair") else "none"
        add(f"- Cross-split near-duplicate check ({_n(n)} scenarios): highest word-shingle "
            f"Jaccard similarity between scenarios in different splits {d['max_jaccard']} "
            f"(pair: {pair}); {d['groups_spanning_splits']} near-duplicate groups and "
            f"{d['near_duplicate_pairs_across']} near-duplicate pairs span two splits.")
    add("")

    add("## Pseudonymization\n")
    if info.pseudonymized:
        add("Names were replaced by consistent pseudonyms before release. The replacement is "
            "automatic and imperfect: it misses names it does not recognise (misspelt by the "
            "transcriber, nicknames, unusual names), and indirect identifiers stay (places, "
            "dates, the events described, the videos themselves, which are public). Exactly "
            "what is and is not replaced is in deescalwild's `docs/privacy.md`.\n")
        if info.privacy:
            add(_table(("replaced", "count"), sorted(info.privacy.items())) + "\n")
    else:
        add("**This release is NOT pseudonymized** (made with `--no-pseudonymize`)"
            + (": its names are invented (sample corpus).\n" if only_sample else
               ": it contains real people's names. Do not redistribute it.\n"))

    add("## Intended uses\n")
    add("\n".join(f"- {u}" for u in INTENDED_USES) + "\n")
    add("## Prohibited uses\n")
    add("This dataset must **not** be used for:\n")
    add("\n".join(f"- {u}" for u in PROHIBITED_USES) + "\n")
    add("Speaker roles describe who speaks in a transcript; they say nothing about any real "
        "person and must not be used to make or support decisions about anyone.\n")

    add("## Limitations and known biases\n")
    add("- Videos are what YouTube, TikTok and Facebook channels chose to publish: commentary "
        "and body-camera compilation channels are overrepresented, and so are dramatic "
        "encounters; routine, calm contacts are rare.")
    add("- Transcripts and speaker labels are machine-made: misheard words, merged or split "
        "speakers, wrong labels, timestamps that run backwards or are missing.")
    add("- English only; overwhelmingly US policing, its law and its practices.")
    add("- Speaker roles are inferred and can be wrong; see the role table above.")
    add("- Quality flags come from heuristics; some noise passes and some good turns are "
        "flagged.")
    add("- The videos' own copyright and the privacy of the people in them are not covered by "
        "the transcripts' licence.\n")

    add("## Citation\n")
    add(f"```bibtex\n{bibtex()}\n```\n")

    add("## How to load\n")
    add("From the release directory:\n")
    add("```python\nfrom datasets import load_from_disk\nds = load_from_disk(\"hf\")  "
        "# DatasetDict: train, dev, test\nprint(ds[\"train\"][0][\"turns\"][0][\"text\"])\n\n"
        "import pandas as pd\ndf = pd.read_parquet(\"data/train.parquet\")\n\n"
        "from convokit import Corpus\ncorpus = Corpus(filename=\"convokit\")\n```\n")
    return "\n".join(out)
