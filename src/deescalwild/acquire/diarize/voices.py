"""Voices get roles through the foundation's role resolution, and names stay out of the files.

Every backend ends with voices (an id, the model's free-text role hint, a name when the audio
says one, a description) and segments that point at them. Rather than trust the hint as is, the
voices go through the same resolution as the published corpus (`corpus.roles.resolve`): a
one-scenario `core.Scenario` whose speaker labels are `[<role hint>]` when the model gave one
(the lexicon reads "police officer", "driver", "bystander filming" as people do), else the name
("Officer Bruno" is an officer by its title; a plain name is read by the classifier and by what
others call them), else `Voice N`; the classifier reads what each voice says when the label is
not decisive. A role hint of "unknown" counts as none.

Names are the manifest's only (`StageOutcome.private`): they are never written to the stage
file, and one that leaked into a description (or into a resolution's `why`, which may quote
what others call someone) is replaced by the voice's role.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from deescalwild.acquire.formats import Segment, Voice
from deescalwild.acquire.tasks import VideoRef

__all__ = ["VoiceHint", "resolve_voices", "scrub_name", "voice_labels"]

NO_HINT = frozenset({"", "unknown", "unclear", "n/a", "none", "?"})
# words of a name that are titles, not the person: kept when scrubbing single words
_TITLES = frozenset({"officer", "deputy", "sergeant", "sgt", "lieutenant", "lt", "captain",
                     "capt", "detective", "det", "trooper", "sheriff", "chief", "agent",
                     "corporal", "cpl", "mr", "mrs", "ms", "miss", "dr", "sir", "madam"})


@dataclass
class VoiceHint:
    """What a diarizer said about one voice (before role resolution)."""

    id: str
    role_hint: str = ""
    name: str = ""
    description: str = ""


def _hint(v: VoiceHint) -> str:
    h = " ".join(v.role_hint.split())
    return "" if h.lower().strip(" .[]()") in NO_HINT else h.strip("[] ")


def voice_labels(voices: Sequence[VoiceHint]) -> dict[str, str]:
    """Voice id -> the speaker label role resolution reads (see the module docstring). Two
    voices with the same label get " 2", " 3", ... so they stay two speakers."""
    labels: dict[str, str] = {}
    used: Counter[str] = Counter()
    for n, v in enumerate(voices, 1):
        hint = _hint(v)
        name = " ".join(v.name.split())
        label = f"[{hint}]" if hint else (name or f"Voice {n}")
        used[label.lower()] += 1
        if used[label.lower()] > 1:
            label = f"{label} {used[label.lower()]}"
        labels[v.id] = label
    return labels


def scrub_name(text: str, name: str, replacement: str) -> str:
    """`text` with the name (whole, case-insensitive) and its words that are not titles
    (capitalised, 3+ letters) replaced."""
    name = " ".join(name.split())
    if not name or not text:
        return text
    out = re.sub(rf"\b{re.escape(name)}\b", replacement, text, flags=re.IGNORECASE)
    for word in re.findall(r"[^\W\d_][\w'-]*", name):
        if len(word) >= 3 and word.lower() not in _TITLES:
            out = re.sub(rf"\b{re.escape(word)}\b", replacement, out)
    return out


def resolve_voices(video: VideoRef, voices: Sequence[VoiceHint], segments: Sequence[Segment],
                   source: str) -> tuple[dict[str, Voice], dict[str, dict[str, str]]]:
    """Voices with roles (`formats.Voice`, no names), and the names by voice id for the
    manifest. `segments` must already carry voice ids from `voices`."""
    from deescalwild.core import Role, Scenario, Turn
    from deescalwild.corpus.roles.resolve import resolve_corpus

    labels = voice_labels(voices)
    turns = [Turn(index=k, start=s.start, speaker=labels[s.voice], role=Role.UNKNOWN,
                  text=s.text) for k, s in enumerate(segments) if s.voice in labels]
    meta = {k: video.meta[k] for k in ("title", "uploader") if video.meta.get(k)}
    scenario = Scenario(id=video.id, platform=video.platform, split=None, source=source,
                        turns=turns, meta=meta)
    if turns:
        resolve_corpus([scenario])
    out: dict[str, Voice] = {}
    names: dict[str, dict[str, str]] = {}
    for v in voices:
        sr = scenario.speakers.get(labels[v.id])
        role = sr.role.value if sr else Role.UNKNOWN.value
        name = " ".join(v.name.split())
        description, why = v.description.strip(), sr.why if sr else "never speaks"
        if name:
            names[v.id] = {"name": name}
            description = scrub_name(description, name, role)
            why = scrub_name(why, name, role)
        out[v.id] = Voice(id=v.id, role=role, evidence=sr.evidence.value if sr else "",
                          confidence=sr.confidence if sr else 0.0, why=why,
                          description=description)
    return out, names
