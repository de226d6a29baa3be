"""What one stage of one video is given and gives back: the contract between the runner and the
stage functions.

A stage function is `run(task: StageTask) -> StageOutcome`. It writes its files under
`task.settings.workdir` (atomically), returns their paths, and raises `StageError` when it fails
(`retryable` says whether a later attempt may succeed). It never touches the manifest: the runner
records outcomes, so the same function runs in a local process or on a Ray worker. Everything
here pickles and holds no secret (API keys are read from the environment where they are used).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

STAGES: tuple[str, ...] = ("metadata", "audio", "transcribe", "diarize", "relevance", "export")
STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed", "skipped")
DEFAULT_RULE = "exclusions == 0 and police >= 2 and (escalation >= 3 or deescalation >= 3)"

# Where each stage's function lives (imported lazily: faster-whisper, google-genai, ... are
# imported only by the worker that runs the stage).
STAGE_FUNCTIONS: dict[str, str] = {
    "metadata": "deescalwild.acquire.metadata:run_metadata",
    "audio": "deescalwild.acquire.audio:run_audio",
    "transcribe": "deescalwild.acquire.transcribe:run_transcribe",
    "diarize": "deescalwild.acquire.diarize:run_diarize",
    "relevance": "deescalwild.acquire.relevance:run_relevance",
    "export": "deescalwild.acquire.export:run_export",
}
# Stages that talk to a remote host; `--rate` spaces their starts.
NETWORK_STAGES = frozenset({"metadata", "audio", "diarize", "relevance"})

Status = Literal["pending", "running", "done", "failed", "skipped"]


@dataclass(frozen=True)
class Settings:
    """Everything that decides what the stages produce (recorded with each run; no secrets)."""

    workdir: str  # absolute: stage files live under it (shared storage on a Ray cluster)
    out_dir: str  # absolute: export writes accepted transcripts here
    # audio
    max_duration_s: float = 3600.0  # longer videos are skipped; ffmpeg also cuts at this length
    audio_format: str = "bestaudio/best"
    allow_file_urls: bool = False  # yt-dlp's --enable-file-urls (local archives, tests)
    # transcription
    transcriber: Literal["whisper", "captions"] = "whisper"
    whisper_model: str = "large-v3"  # faster-whisper model name or a local CTranslate2 folder
    whisper_device: str = "auto"
    compute_type: str = "default"
    language: str | None = "en"
    vad: bool = True
    caption_languages: tuple[str, ...] = ("en", "en-US", "en-GB", "en-orig")
    # diarization
    diarizer: Literal["gemini", "local", "pyannote"] = "gemini"
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None  # API root for proxies and tests
    diarize_max_output_tokens: int = 65536
    attribution: str | None = None  # responder spec: who said each segment (local, pyannote)
    pyannote_model: str = "pyannote/speaker-diarization-3.1"
    # relevance
    judge: str | None = None  # responder spec scoring the 30 taxonomy features
    rule: str = DEFAULT_RULE
    max_chars: int = 24000  # transcript characters shown to the judge (head and tail kept)
    # network
    max_retries: int = 5  # per request, on 429 / 5xx / timeouts / dropped connections
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    timeout_s: float = 300.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "caption_languages" in kw:
            kw["caption_languages"] = tuple(kw["caption_languages"])
        return cls(**kw)

    def path(self, *parts: str) -> Path:
        return Path(self.workdir, *parts)


@dataclass
class VideoRef:
    """A manifest row as a stage sees it. `id` is the manifest key (`youtube_<video id>`,
    `tiktok_<id>`, ...), also the stem of every file made for the video."""

    id: str
    url: str
    platform: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # title, uploader, duration_s, ...


@dataclass
class StageTask:
    video: VideoRef
    stage: str
    settings: Settings
    # outputs of the video's finished earlier stages: "<stage>.<name>" -> absolute path
    inputs: dict[str, str] = field(default_factory=dict)
    # `detail` of the video's finished earlier stages (e.g. relevance's verdict for export)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempt: int = 1
    run_id: int | None = None


@dataclass
class StageOutcome:
    """What a stage did. `outputs`: name -> path (relative to the workdir when under it);
    the worker adds `hashes` (sha256 and size of each output) before the runner records it.
    `detail` is small JSON kept in the manifest (shown by `status`, read by later stages);
    `meta` is merged into the video's metadata; `private` holds what must never be written to
    an output file (speaker names) and is kept in the manifest only."""

    status: Status = "done"
    outputs: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    private: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # one line, secrets masked (failed and skipped say why)
    retryable: bool = False
    hashes: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def skipped(cls, reason: str, **detail: Any) -> StageOutcome:
        return cls(status="skipped", error=reason, detail=detail)


class StageError(Exception):
    """A stage failed for this video. The message is the one line the manifest keeps."""

    def __init__(self, reason: str, retryable: bool = False,
                 detail: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.detail = detail or {}


def output_path(settings: Settings, stage: str, video_id: str, suffix: str) -> Path:
    """The conventional place of a stage's file: `<workdir>/<stage>/<video id><suffix>`."""
    return settings.path(stage, f"{video_id}{suffix}")


def file_hash(path: str | Path, chunk: int = 1 << 20) -> dict[str, Any]:
    """sha256 and size of a file, read in 1 MiB chunks (audio files are large)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return {"sha256": h.hexdigest(), "bytes": size}
