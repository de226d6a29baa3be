"""Resolve every speaker label of every scenario to a role, with evidence and confidence.

Order of evidence, strongest first (docs/roles.md):
1. `label`: the label states the role (`[Police Officer]`, `Deputy Wills`, `[Suspect]`).
2. `context`: the conversation names them (the others call them "Officer Bruno" or "Mr. Robbins",
   another label of the video is "Officer Bruno", they say "I'm Sergeant Roberts", the video's
   title names them), they greet the video's audience, or they are the channel's recurring host.
3. `model`: the classifier trained on the corpus's own role-labelled speakers reads what they say,
   what is said around them and where they sit in the conversation. How roles are usually spread
   among plain names or generic labels enters as a prior, and so does a weak label
   (`[Mother]`, `[Employee]`). Two passes: the second sees the first pass's roles for the
   neighbours, which matters in videos where no label says anything.
Below `MIN_CONFIDENCE` the answer is `unknown`: an honest answer beats a confident guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deescalwild.core import Evidence, Role, Scenario, SpeakerRole
from deescalwild.corpus.roles.cues import Cue, Mentions, audience_cue, decide, named_cues
from deescalwild.corpus.roles.features import (
    NUMERIC_NAMES,
    ROLE_ORDER,
    Speaker,
    addresses_audience,
    around_text,
    neighbour_features,
    neighbour_labels,
    own_text,
    scenario_chars,
    shape_features,
    speakers_of,
)
from deescalwild.corpus.roles.lexicon import LabelVerdict, classify_label
from deescalwild.corpus.roles.model import RoleModel, Views
from deescalwild.corpus.roles.vectorize import grams

MIN_CONFIDENCE = 0.35
CHANNEL_MIN_VIDEOS = 3
CHANNEL_MIN_PROB = 0.1
CONTEXT_CONFIDENCE = 0.9
PASSES = 2


@dataclass(slots=True)
class Item:
    """One speaker with what resolution needs of its scenario."""

    speaker: Speaker
    verdict: LabelVerdict
    known: dict[str, Role | None]  # the scenario's label → role map, shared by its speakers
    own: str = ""  # these are filled by `fill_text`, only for the speakers that need them
    around: str = ""
    shape: np.ndarray | None = None
    neighbours: list[str] | None = None


def label_prior(verdict: LabelVerdict) -> np.ndarray:
    """A weak label as a distribution over roles (uniform when the label says nothing)."""
    p = np.full(len(ROLE_ORDER), 1.0 / len(ROLE_ORDER))
    if verdict.role in ROLE_ORDER:
        p[:] = (1.0 - verdict.confidence) / (len(ROLE_ORDER) - 1)
        p[ROLE_ORDER.index(verdict.role)] = verdict.confidence
    return p


def speaker_items(scenarios: Sequence[Scenario]) -> list[Item]:
    """Every speaker of every scenario with its label verdict (nothing is modified)."""
    items: list[Item] = []
    for sc in scenarios:
        sps = speakers_of(sc)
        verdicts = {sp.label: classify_label(sp.label) for sp in sps}
        known = {lab: (v.role if v.decisive else None) for lab, v in verdicts.items()}
        items.extend(Item(sp, verdicts[sp.label], known) for sp in sps)
    return items


def fill_text(items: Sequence[Item]) -> None:
    """Compute what the classifier reads, only for the speakers that need it."""
    chars: dict[int, int] = {}
    for it in items:
        sc = it.speaker.scenario
        if id(sc) not in chars:
            chars[id(sc)] = scenario_chars(sc)
        it.own = own_text(it.speaker)
        it.around = around_text(it.speaker)
        it.shape = shape_features(it.speaker, chars[id(sc)], len(it.known),
                                  addresses_audience(it.own))
        it.neighbours = neighbour_labels(it.speaker)


def views(items: Sequence[Item], own: list[list[str]] | None = None,
          around: list[list[str]] | None = None) -> Views:
    """Classifier input; pass precomputed `own`/`around` grams to reuse them across passes."""
    return Views(
        own if own is not None else [grams(it.own) for it in items],
        around if around is not None else [grams(it.around) for it in items],
        np.stack([np.concatenate([it.shape, neighbour_features(it.speaker.label, it.neighbours,
                                                                it.known)])
                  for it in items]),
    )


def posteriors(pending: Sequence[Item], model: RoleModel, passes: int = PASSES,
               use_priors: bool = True) -> np.ndarray:
    """Role probabilities for pending speakers: classifier × kind prior × weak-label prior."""
    first = views(pending)
    own, around = first.own, first.around
    encoded = model.encode(first)
    priors = np.stack([model.kind_prior(it.verdict.kind) * label_prior(it.verdict)
                       if use_priors else np.ones(len(ROLE_ORDER)) for it in pending])

    def predict(v: Views) -> np.ndarray:
        p = model.predict_proba(v, encoded) * priors
        return p / p.sum(axis=1, keepdims=True)

    probs = predict(first)
    for _ in range(passes - 1):  # each further pass sees the previous pass's neighbour roles
        for it, row in zip(pending, probs):
            best = int(row.argmax())
            it.known[it.speaker.label] = ROLE_ORDER[best] if row[best] >= MIN_CONFIDENCE else None
        probs = predict(views(pending, own, around))
    return probs


def cues_for(it: Item, mentions: dict[int, Mentions]) -> list[Cue]:
    """Context cues for a pending speaker (its text must be filled)."""
    if it.verdict.kind not in ("name", "generic"):
        return []
    cues = []
    if it.verdict.kind == "name":
        sc = it.speaker.scenario
        if id(sc) not in mentions:
            mentions[id(sc)] = Mentions(sc.turns)
        others = [lab for lab in it.known if lab != it.speaker.label]
        cues = named_cues(it.speaker.label, mentions[id(sc)], others, sc.meta.get("title"))
    if it.shape[NUMERIC_NAMES.index("addresses_audience")]:
        cues.append(audience_cue(it.own))
    return cues


def resolve_corpus(
    scenarios: Sequence[Scenario], model_path: str | Path | None = None,
    model: RoleModel | None = None,
) -> None:
    """Fill `scenario.speakers` (in order of first appearance) and every turn's `role`."""
    items = speaker_items(scenarios)
    resolved: list[SpeakerRole | None] = [
        SpeakerRole(it.verdict.role, Evidence.LABEL, it.verdict.confidence,
                    f"label says '{it.verdict.matched}'") if it.verdict.decisive else None
        for it in items
    ]
    todo = [i for i, r in enumerate(resolved) if r is None]
    if todo:
        pending = [items[i] for i in todo]
        fill_text(pending)
        model = model or RoleModel.load(model_path)
        probs = posteriors(pending, model)
        mentions: dict[int, Mentions] = {}
        cues = channel_cues(pending, [decide(cues_for(it, mentions)) for it in pending], probs)
        for i, it, row, cue in zip(todo, pending, probs, cues):
            resolved[i] = _decide(it, row, cue)
    for sc in scenarios:
        sc.speakers = {}
    for it, role in zip(items, resolved):
        it.speaker.scenario.speakers[it.speaker.label] = role
    for sc in scenarios:
        sc.apply_roles()


def channel_cues(pending: Sequence[Item], cues: list[Cue | None], probs: np.ndarray,
                 min_videos: int = CHANNEL_MIN_VIDEOS) -> list[Cue | None]:
    """A channel's recurring personality plays the same part in every video: when a named
    speaker's cues settle their role in at least `min_videos` videos of one channel, with two
    thirds agreeing, the same label in that channel's other videos gets that role too, unless
    the classifier gives it less than `CHANNEL_MIN_PROB`."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, it in enumerate(pending):
        channel = it.speaker.scenario.meta.get("uploader")
        if channel and it.verdict.kind == "name":
            groups.setdefault((channel, it.speaker.label), []).append(i)
    out = list(cues)
    for (channel, _), members in groups.items():
        settled = Counter(cues[i].role for i in members if cues[i] is not None)
        if not settled:
            continue
        role, n = settled.most_common(1)[0]
        if n < min_videos or n < 2 * sum(settled.values()) / 3:
            continue
        k = ROLE_ORDER.index(role)
        for i in members:
            if out[i] is None and probs[i, k] >= CHANNEL_MIN_PROB:
                out[i] = Cue(role, f"{role.value} in {n} other videos of '{channel}'")
    return out


def _decide(p: Item, row: np.ndarray, cue: Cue | None) -> SpeakerRole:
    k = int(row.argmax())
    if cue is not None:
        conf = max(CONTEXT_CONFIDENCE, float(row[ROLE_ORDER.index(cue.role)]))
        return SpeakerRole(cue.role, Evidence.CONTEXT, conf, cue.why)
    if row[k] >= MIN_CONFIDENCE:
        why = "classifier" + (f", label prior '{p.verdict.matched}'" if p.verdict.role else "")
        return SpeakerRole(ROLE_ORDER[k], Evidence.MODEL, float(row[k]), why)
    return SpeakerRole(Role.UNKNOWN, Evidence.MODEL, float(row[k]),
                       f"weak evidence (best guess {ROLE_ORDER[k].value} at {row[k]:.2f})")
