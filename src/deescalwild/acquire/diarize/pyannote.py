"""`pyannote` diarization (optional): speaker turns from pyannote.audio, words from whisper.

pyannote.audio is not a dependency (its torch/torchaudio builds cannot be installed on the CI
machines); a user who has it installed, and a Hugging Face token in HF_TOKEN for the gated
model, gets: the pipeline (`Settings.pyannote_model`) run on the 16 kHz WAV -> speaker turns;
each whisper word given to the speaker whose turns overlap it most (`assign_words`, pure); each
whisper segment split where its words change speaker. Voices are V1, V2, ... in order of first
appearance (the pipeline's SPEAKER_nn labels are kept in the meta). Who each voice is comes from
the attribution LLM when `Settings.attribution` is set (`attribution.describe_voices`), else
from role resolution reading what each voice says.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from collections.abc import Sequence
from typing import Any

from deescalwild.acquire.diarize import Diarized, needs_input, read_input
from deescalwild.acquire.diarize.voices import VoiceHint
from deescalwild.acquire.formats import Segment, Word
from deescalwild.acquire.tasks import StageError, StageOutcome, StageTask

__all__ = ["NOT_INSTALLED", "Turn", "assign_words", "diarize_pyannote", "speaker_turns",
           "split_segments"]

NOT_INSTALLED = ("pyannote.audio is not installed: pip install pyannote.audio (needs a Hugging "
                 "Face token in HF_TOKEN)")
Turn = tuple[float, float, str]  # (start s, end s, speaker label)
_PIPELINES: dict[str, Any] = {}
_LOCK = threading.Lock()


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def assign_words(words: Sequence[Word], turns: Sequence[Turn]) -> list[str | None]:
    """The speaker of each word: the one whose turns overlap the word's span most (summed over
    turns). A word overlapping no turn (a pause the pipeline left out) goes to the nearest turn;
    a word without timing takes its neighbour's speaker. None only when there are no turns."""
    if not turns:
        return [None] * len(words)
    turns = sorted(turns)
    starts = [t[0] for t in turns]
    reach = list(itertools.accumulate((t[1] for t in turns), max))  # latest end up to k
    out: list[str | None] = []
    for w in words:
        if w.start is None or w.end is None:
            out.append(None)
            continue
        a, b = w.start, max(w.end, w.start)
        scores: dict[str, float] = {}
        k = bisect.bisect_left(starts, b) - 1  # turns starting before the word ends...
        while k >= 0 and reach[k] > a:  # ...back to where none can still reach the word
            t0, t1, who = turns[k]
            scores[who] = scores.get(who, 0.0) + _overlap(a, b, t0, t1)
            k -= 1
        best = max(scores.items(), key=lambda kv: kv[1], default=None)
        if best is not None and best[1] > 0:
            out.append(best[0])
            continue
        mid = (a + b) / 2  # no overlap: the nearest turn
        near = min(turns, key=lambda t: max(t[0] - mid, mid - t[1], 0.0))
        out.append(near[2])
    for k in range(len(out)):  # untimed words: previous speaker, else next
        if out[k] is None:
            out[k] = next((out[j] for j in range(k - 1, -1, -1) if out[j] is not None), None) \
                or next((out[j] for j in range(k + 1, len(out)) if out[j] is not None), None)
    return out


def split_segments(segments: Sequence[Segment], turns: Sequence[Turn]) -> list[Segment]:
    """Whisper segments with `voice` set to a speaker label, split where the words' speaker
    changes. A segment without word timings goes whole to the speaker overlapping it most."""
    out: list[Segment] = []
    for seg in segments:
        if not seg.words:
            span = Word(seg.start, seg.end, seg.text)
            who = assign_words([span], turns)[0]
            out.append(Segment(seg.start, seg.end, seg.text, who, []))
            continue
        labels = assign_words(seg.words, turns)
        if len(set(labels)) == 1:  # one speaker: the segment as transcribed
            out.append(Segment(seg.start, seg.end, seg.text, labels[0], list(seg.words)))
            continue
        run: list[Word] = []
        for k, (w, who) in enumerate(zip(seg.words, labels)):
            run.append(w)
            if k + 1 == len(seg.words) or labels[k + 1] != who:
                text = " ".join(x.text.strip() for x in run if x.text.strip())
                first = run[0].start if run[0].start is not None else seg.start
                last = run[-1].end if run[-1].end is not None else seg.end
                out.append(Segment(first, last, text, who, run))
                run = []
    return [s for s in out if s.text.strip()]


def _pipeline(model: str) -> Any:
    """The pyannote pipeline, loaded once per worker and model."""
    try:
        from pyannote.audio import Pipeline
    except ImportError as e:
        raise StageError(NOT_INSTALLED) from e
    with _LOCK:
        if model not in _PIPELINES:
            token = os.environ.get("HF_TOKEN")
            try:
                pipe = Pipeline.from_pretrained(model, token=token)
            except TypeError:  # pyannote.audio 3.x names the argument use_auth_token
                pipe = Pipeline.from_pretrained(model, use_auth_token=token)
            if pipe is None:  # 3.x returns None for a gated model it may not download
                raise StageError(f"pyannote could not load {model!r}: accept its conditions on "
                                 "huggingface.co and put a token in HF_TOKEN")
            _PIPELINES[model] = pipe
        return _PIPELINES[model]


def speaker_turns(pipeline: Any, wav: str) -> list[Turn]:
    """(start, end, label) turns; pyannote.audio 4 wraps the annotation in its output."""
    out = pipeline(wav)
    annotation = getattr(out, "speaker_diarization", out)
    return [(float(seg.start), float(seg.end), str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)]


def diarize_pyannote(task: StageTask) -> Diarized | StageOutcome:
    """Turns from pyannote, words from the transcribe stage, roles from the LLM if given."""
    settings = task.settings
    wav = needs_input(task, "audio.wav", "audio")
    path = needs_input(task, "transcribe.json", "transcribe")
    pipeline = _pipeline(settings.pyannote_model)
    transcript = read_input(path)
    if not any(s.text.strip() for s in transcript.segments):
        return StageOutcome.skipped("no speech: the transcript has no segments")
    try:
        turns = speaker_turns(pipeline, str(wav))
    except Exception as e:
        raise StageError(f"pyannote failed on {wav.name}: {type(e).__name__}: {e}"[:300]) from e
    if not turns:
        raise StageError("pyannote found no speech turns in the audio")
    segments = split_segments(transcript.segments, turns)
    ids: dict[str, str] = {}
    for s in segments:  # SPEAKER_nn -> V1, V2, ... in order of first appearance
        if s.voice is not None and s.voice not in ids:
            ids[s.voice] = f"V{len(ids) + 1}"
        s.voice = ids.get(s.voice or "")
    voices = [VoiceHint(v) for v in ids.values()]
    meta: dict[str, Any] = {"model": settings.pyannote_model,
                            "labels": {v: lab for lab, v in ids.items()},
                            "transcript": {"source": transcript.source, **transcript.meta}}
    if settings.attribution:
        from deescalwild.acquire.diarize.attribution import (
            PROMPT_VERSION,
            describe_voices,
            responder_for,
        )

        voices, fixed = describe_voices(responder_for(settings), segments,
                                        list(ids.values()), settings.max_chars, task.video.id)
        meta.update(attribution=settings.attribution, prompt_version=PROMPT_VERSION,
                    corrections=fixed)
    return Diarized(source="pyannote", segments=segments, voices=voices,
                    language=transcript.language, duration_s=transcript.duration_s, meta=meta)
