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
file. Every voice's name is scrubbed from every voice's description and `why` (a description
often names the person spoken to, and a `why` may quote what others call someone): the whole
name and each of its words of three letters or more that is not a title, case-insensitive and
word-bounded, are replaced by the role of the voice the name belongs to.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from deescalwild.acquire.formats import Segment, Voice
from deescalwild.acquire.tasks import VideoRef

__all__ = ["VoiceHint", "resolve_voices", "scrub_name", "scrub_names", "voice_labels"]

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


_NAME_WORD = re.compile(r"[^\W\d_][\w'-]*")


def scrub_names(text: str, owners: dict[str, str]) -> str:
    """`text` with every name in `owners` (name -> its replacement, the owner's role) replaced:
    the whole name and each of its words of 3+ letters that is not a title (the halves of a
    hyphenated name too), case-insensitive and word-bounded: privacy over prose, so a name that
    is also a word costs that word ("Will Smith": "he will comply" -> "he civilian comply").
    One pass, longest match first, so a replacement is never scrubbed again and a full name
    wins over its words. A name made of
    titles only ("Officer") is left alone: it says the role, not who."""
    if not text:
        return text
    patterns: dict[str, tuple[str, str]] = {}  # lower-cased match -> (regex, replacement)
    for name, replacement in owners.items():
        name = " ".join(name.split())
        parts = _NAME_WORD.findall(name)
        if not parts or all(w.lower() in _TITLES for w in parts):
            continue
        pieces = parts + [p for w in parts if "-" in w for p in w.split("-")]  # Mary-Jane
        words = [w for w in pieces if len(w) >= 3 and w.lower() not in _TITLES]
        whole = r"\s+".join(re.escape(w) for w in name.split())
        patterns.setdefault(name.lower(), (whole, replacement))
        for w in words:
            patterns.setdefault(w.lower(), (re.escape(w), replacement))
    if not patterns:
        return text
    ordered = sorted(patterns.items(), key=lambda kv: -len(kv[0]))
    regex = re.compile("|".join(rf"(?<!\w)(?:{rx})(?!\w)" for _, (rx, _r) in ordered),
                       re.IGNORECASE)
    replacements = {k: r for k, (_rx, r) in patterns.items()}

    def sub(m: re.Match[str]) -> str:
        return replacements.get(" ".join(m.group(0).split()).lower(), m.group(0))

    return regex.sub(sub, text)


def scrub_name(text: str, name: str, replacement: str) -> str:
    """`text` with one name scrubbed (see `scrub_names`)."""
    return scrub_names(text, {name: replacement})


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
    roles = {}
    for v in voices:
        sr = scenario.speakers.get(labels[v.id])
        roles[v.id] = sr.role.value if sr else Role.UNKNOWN.value
    # every name, first: any voice's text may name any other voice
    names: dict[str, dict[str, str]] = {}
    owners: dict[str, str] = {}
    for v in voices:
        name = " ".join(v.name.split())
        if name:
            names[v.id] = {"name": name}
            owners.setdefault(name, roles[v.id])
    out: dict[str, Voice] = {}
    for v in voices:
        sr = scenario.speakers.get(labels[v.id])
        description = scrub_names(v.description.strip(), owners)
        why = scrub_names(sr.why if sr else "never speaks", owners)
        out[v.id] = Voice(id=v.id, role=roles[v.id], evidence=sr.evidence.value if sr else "",
                          confidence=sr.confidence if sr else 0.0, why=why,
                          description=description)
    return out, names
