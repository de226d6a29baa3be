"""`gemini` diarization, the paper's method: the 16 kHz WAV in, a JSON schema out.

One request per video through google-genai: the audio inline (`Part.from_bytes`) when it is
at most `INLINE_LIMIT` bytes (14 MiB: base64 makes it 4/3 larger and the whole request must stay
under 20 MB), else uploaded through the Files API (and deleted afterwards); JSON
mode with `RESPONSE_SCHEMA`, temperature 0, `Settings.diarize_max_output_tokens`. The client is
built like the `gemini:` responder's (explicit key from GOOGLE_API_KEY then GEMINI_API_KEY, API
version pinned, SDK retries off); `retry.call_with_retry` retries 429, 5xx, timeouts and dropped
connections with backoff (a server's Retry-After is followed, capped at
`Settings.backoff_cap_s`), after which the failure is retryable. An upload still PROCESSING
when the wait runs out is retryable too.

What comes back must pass every guard, or the stage fails with the reason (never a success):
prompt blocked; finish reason other than STOP (MAX_TOKENS = truncated, SAFETY, RECITATION,
PROHIBITED_CONTENT, BLOCKLIST, SPII, OTHER...); empty reply; malformed JSON; schema violation
(guards.validate_reply); degenerate repetition (guards.repetition); no segments at all.

The four adjustable harm filters are off: the audio is public police footage, often profane
and violent, and a transcript of it is what the user asked for; the non-adjustable filters
still apply and their blocks are failures like any other.
"""

from __future__ import annotations

import contextlib
import os
import time
import wave
from pathlib import Path
from typing import Any

from deescalwild.acquire.diarize import Diarized, needs_input
from deescalwild.acquire.diarize.guards import GuardError, json_object, repetition, validate_reply
from deescalwild.acquire.diarize.voices import VoiceHint
from deescalwild.acquire.formats import Segment
from deescalwild.acquire.tasks import Settings, StageError, StageTask
from deescalwild.responders.gemini_api import (
    DEFAULT_BASE_URL,
    KEY_VARIABLES,
    SAFETY_CATEGORIES,
    enum_name,
    retry_after,
)
from deescalwild.responders.retry import (
    GiveUp,
    RetryPolicy,
    Verdict,
    call_with_retry,
    is_transport_error,
    one_line,
    retryable_status,
    root_reason,
)

__all__ = ["INLINE_LIMIT", "PROMPT", "PROMPT_VERSION", "RESPONSE_SCHEMA", "diarize_gemini",
           "wav_duration"]

PROMPT_VERSION = "gemini-diarize/1"
# A request body is capped at 20 MB (20,000,000 bytes) and inline audio travels as base64,
# 4/3 of its size: 14 MiB of WAV (about 7.6 minutes at 16 kHz mono) is 19,573,420 bytes of
# base64, leaving ~400 kB for the prompt, the schema and the JSON around them.
INLINE_LIMIT = 14 * 1024 * 1024
FINE_FINISH = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})
UPLOAD_POLL_S = 2.0

PROMPT = """\
Transcribe and diarize this audio. It is usually from a video of an encounter between police \
and members of the public (body camera, dash camera, bystander phone, news report).

Rules:
- Transcribe every spoken word verbatim, in the language spoken. Do not summarise, translate, \
correct grammar or censor profanity. Write [inaudible] for speech you cannot make out.
- One segment per speaker turn: start a new segment whenever the speaker changes. Split a turn \
longer than about 30 seconds at a sentence boundary.
- "start" is when the segment begins, from the start of the audio: MM:SS, or H:MM:SS past one \
hour.
- Voices are V1, V2, ... in order of first appearance. The same person keeps the same id \
throughout; do not give one person two ids.
- For each voice: "role_hint" is who they are in the encounter: police officer, civilian (the \
person the police are dealing with), bystander, dispatcher (radio or phone), narrator \
(voice-over, host, news anchor) or unknown; a few words more are fine ("civilian, the \
driver"). "name" is the person's name only if it is said in the audio, else "". \
"description" is a few words about the voice and what they do (e.g. "calm male voice, asks \
for the licence"), without names.
- Leave out music, sound effects and silence. Never repeat a segment you have already written.
"""

RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "OBJECT",
    "properties": {
        "voices": {"type": "ARRAY", "items": {
            "type": "OBJECT",
            "properties": {
                "id": {"type": "STRING", "description": "V1, V2, ... in order of first "
                       "appearance"},
                "role_hint": {"type": "STRING", "description": "police officer | civilian | "
                              "bystander | dispatcher | narrator | unknown (free text allowed)"},
                "name": {"type": "STRING", "description": "the name if said in the audio, "
                         "else empty"},
                "description": {"type": "STRING", "description": "a few words on the voice, "
                                "no names"},
            },
            "required": ["id", "role_hint", "name", "description"],
            "propertyOrdering": ["id", "role_hint", "name", "description"],
        }},
        "segments": {"type": "ARRAY", "items": {
            "type": "OBJECT",
            "properties": {
                "start": {"type": "STRING", "description": "MM:SS or H:MM:SS from the start "
                          "of the audio"},
                "voice": {"type": "STRING", "description": "a voice id from voices"},
                "text": {"type": "STRING", "description": "what was said, verbatim"},
            },
            "required": ["start", "voice", "text"],
            "propertyOrdering": ["start", "voice", "text"],
        }},
    },
    "required": ["voices", "segments"],
    "propertyOrdering": ["voices", "segments"],
}


def wav_duration(path: Path) -> float:
    """Seconds of audio in a WAV file, from its header."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError) as e:
        raise StageError(f"diarize: {path} is not a readable WAV file ({e})") from e


def _key() -> str:
    for name in KEY_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise StageError(f"diarize (gemini): no API key; set {' or '.join(KEY_VARIABLES)}")


def _client(settings: Settings, key: str) -> Any:
    """SDK retries off, API version pinned, key explicit (no Vertex switch from the env)."""
    from google import genai
    from google.genai import types

    base = (settings.gemini_base_url or DEFAULT_BASE_URL).rstrip("/") + "/"
    http = types.HttpOptions(base_url=base, api_version="v1beta",
                             timeout=int(settings.timeout_s * 1000),
                             retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(vertexai=False, api_key=key, http_options=http)


def _classify(e: BaseException) -> Verdict:
    from google.genai import errors

    if isinstance(e, errors.APIError):
        return Verdict(retryable_status(e.code), retry_after(e))
    return Verdict(is_transport_error(e))


def _failure(e: GiveUp, settings: Settings, key: str) -> StageError:
    """The last attempt's failure as the stage's one line; retryable when a later run may
    succeed (rate limit, server error, network)."""
    from google.genai import errors

    c = e.cause
    if isinstance(c, errors.APIError):
        what = f"HTTP {c.code} {c.status or ''}: {c.message or ''}".replace(" :", ":")
    elif is_transport_error(c) and "timeout" in type(c).__name__.lower():
        what = f"timed out after {settings.timeout_s:g}s"
    elif is_transport_error(c):
        what = f"connection failed: {root_reason(c)}"
    else:
        what = f"{type(c).__name__}: {root_reason(c)}"
    if e.attempts > 1:
        what += f" (gave up after {e.attempts} attempts)"
    return StageError(one_line(f"gemini {settings.gemini_model}: {what}", (key,), limit=300),
                      retryable=_classify(c).retry)


def _audio_part(client: Any, wav: Path, wait_s: float, retry: dict[str, Any]
                ) -> tuple[Any, Any]:
    """(part, uploaded file or None): inline bytes for short audio, else a Files API upload
    waited on (up to `wait_s`) until it is ACTIVE."""
    from google.genai import types

    if wav.stat().st_size <= INLINE_LIMIT:
        return types.Part.from_bytes(data=wav.read_bytes(), mime_type="audio/wav"), None
    f = call_with_retry(lambda: client.files.upload(
        file=str(wav), config=types.UploadFileConfig(mime_type="audio/wav")), **retry)
    name = f.name
    deadline = time.monotonic() + wait_s
    while enum_name(f.state) == "PROCESSING" and time.monotonic() < deadline:
        time.sleep(UPLOAD_POLL_S)
        f = call_with_retry(lambda: client.files.get(name=name), **retry)
    state = enum_name(f.state)
    if state != "ACTIVE":
        with contextlib.suppress(Exception):
            client.files.delete(name=name)
        if state == "PROCESSING":  # slow, not broken: a later run may find it quicker
            raise StageError(f"the uploaded audio is still PROCESSING after {wait_s:g}s",
                             retryable=True)
        raise GuardError(f"the uploaded audio is {state} after {wait_s:g}s "
                         f"({f.error or 'no error given'})")
    return types.Part.from_uri(file_uri=f.uri, mime_type="audio/wav"), f


def _request(client: Any, settings: Settings, audio: Any, retry: dict[str, Any]) -> Any:
    from google.genai import types

    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=RESPONSE_SCHEMA,
        max_output_tokens=settings.diarize_max_output_tokens, temperature=0,
        candidate_count=1,
        safety_settings=[types.SafetySetting(category=c, threshold="OFF")
                         for c in SAFETY_CATEGORIES],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    contents = [types.Content(role="user", parts=[audio, types.Part(text=PROMPT)])]
    return call_with_retry(lambda: client.models.generate_content(
        model=settings.gemini_model, contents=contents, config=config), **retry)


def _tokens(response: Any) -> dict[str, int | None]:
    u = response.usage_metadata
    if u is None:
        return {}
    return {"prompt": u.prompt_token_count, "reply": u.candidates_token_count,
            "thinking": u.thoughts_token_count}


def _reply_text(response: Any, settings: Settings) -> tuple[str, str | None]:
    """(text, finish reason), or GuardError when the prompt was blocked, the reply was cut off
    or stopped by a filter, or there is no text."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        extra = f": {feedback.block_reason_message}" if feedback.block_reason_message else ""
        raise GuardError(f"prompt blocked ({enum_name(feedback.block_reason)}{extra})")
    cands = response.candidates or []
    if not cands:
        raise GuardError("empty reply (no candidate)")
    cand = cands[0]
    finish = enum_name(cand.finish_reason)
    parts = (cand.content.parts or []) if cand.content else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if finish == "MAX_TOKENS":
        raise GuardError(f"reply truncated at max_output_tokens="
                         f"{settings.diarize_max_output_tokens} (finish_reason=MAX_TOKENS, "
                         f"{len(text)} characters); raise diarize_max_output_tokens or split the "
                         "audio")
    if finish is not None and finish not in FINE_FINISH:
        raise GuardError(f"reply blocked (finish_reason={finish})")
    if not text.strip():
        raise GuardError(f"empty reply (finish_reason={finish})")
    return text, finish


def parse_diarization(text: str, duration_s: float | None
                      ) -> tuple[list[VoiceHint], list[Segment]]:
    """Voices and timed segments from the reply's JSON, through every content guard."""
    reply, starts = validate_reply(json_object(text), duration_s)
    if not reply.segments:
        raise GuardError("no segments: the reply has no speech (zero segments)")
    loop = repetition([s.text for s in reply.segments])
    if loop:
        raise GuardError(f"degenerate repetition: {loop}")
    segments = []
    for k, (seg, start) in enumerate(zip(reply.segments, starts)):
        # a segment ends where the next begins; the last one's end is not known
        nxt = starts[k + 1] if k + 1 < len(starts) else None
        end = nxt if nxt is not None and nxt >= start else None
        segments.append(Segment(start=start, end=end, text=seg.text.strip(), voice=seg.voice))
    voices = [VoiceHint(v.id, v.role_hint, v.name, v.description) for v in reply.voices]
    return voices, segments


def diarize_gemini(task: StageTask) -> Diarized:
    """One Gemini request for the video's audio; a StageError for every failure."""
    settings = task.settings
    wav = needs_input(task, "audio.wav", "audio")
    duration = wav_duration(wav)
    key = _key()
    policy = RetryPolicy(max_retries=settings.max_retries, base_delay_s=settings.backoff_base_s,
                         max_delay_s=settings.backoff_cap_s,
                         max_retry_after_s=settings.backoff_cap_s)
    retry = {"classify": _classify, "policy": policy, "what": f"gemini diarize {task.video.id}",
             "secrets": (key,)}
    client = _client(settings, key)
    uploaded = None
    try:
        audio, uploaded = _audio_part(client, wav, settings.timeout_s, retry)
        response = _request(client, settings, audio, retry)
        text, finish = _reply_text(response, settings)
        voices, segments = parse_diarization(text, duration)
    except GiveUp as e:
        raise _failure(e, settings, key) from e
    except GuardError as e:
        raise StageError(one_line(f"gemini {settings.gemini_model}: {e}", (key,),
                                  limit=300)) from e
    except StageError as e:
        raise StageError(one_line(f"gemini {settings.gemini_model}: {e.reason}", (key,),
                                  limit=300), retryable=e.retryable) from e
    finally:
        if uploaded is not None:  # else it expires on its own after 48 hours
            with contextlib.suppress(Exception):
                client.files.delete(name=uploaded.name)
        client.close()
    meta = {"model": settings.gemini_model, "prompt_version": PROMPT_VERSION,
            "finish_reason": finish, "tokens": _tokens(response),
            "audio": "file" if uploaded is not None else "inline",
            "max_output_tokens": settings.diarize_max_output_tokens}
    return Diarized(source="gemini", segments=segments, voices=voices,
                    language=settings.language, duration_s=round(duration, 3), meta=meta)
