"""The `metadata` stage: what yt-dlp knows about a video, without downloading it.

Title, uploader, duration, upload date, description and which caption languages exist go into
the video's manifest row (the audio stage reads the duration to enforce the length limit, the
captions transcriber the languages, the relevance judge the title and description). yt-dlp's
info is also kept on disk, trimmed: its format list and the URLs of ~150 machine-translated
caption tracks are most of its size and nothing here reads them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from deescalwild.acquire.sources import DESCRIPTION_LIMIT
from deescalwild.acquire.tasks import StageError, StageOutcome, StageTask, output_path
from deescalwild.atomic import atomic_write

__all__ = ["live_reason", "metadata_from_info", "run_metadata", "trim_info"]

# Top-level fields of yt-dlp's info kept in `<workdir>/metadata/<id>.info.json`.
_KEEP = ("id", "title", "fulltitle", "uploader", "uploader_id", "uploader_url", "channel",
         "channel_id", "channel_url", "duration", "upload_date", "timestamp", "release_date",
         "description", "webpage_url", "original_url", "extractor", "extractor_key",
         "view_count", "like_count", "comment_count", "categories", "tags", "language",
         "live_status", "is_live", "was_live", "age_limit", "availability", "chapters")
# Caption pseudo-languages that are not speech (YouTube's live chat replay).
_NOT_SPEECH = frozenset({"live_chat", "rechat"})
# yt-dlp errors that mean "not yet", not "never": the video is a scheduled premiere or stream.
_NOT_YET = re.compile(r"premieres in|live event will begin|this live stream recording is not "
                      r"available|is_upcoming|scheduled", re.IGNORECASE)


def _languages(tracks: Any) -> list[str]:
    if not isinstance(tracks, dict):
        return []
    return sorted(lang for lang, formats in tracks.items()
                  if lang not in _NOT_SPEECH and formats)


def metadata_from_info(info: dict[str, Any]) -> dict[str, Any]:
    """The manifest's video metadata from a yt-dlp info dict (full or flat). Absent values are
    left out, so merging it never erases what a list gave; caption languages are listed only
    when the info says (a flat playlist entry does not, which is not "none")."""
    description = info.get("description")
    meta: dict[str, Any] = {
        "title": info.get("title") or info.get("fulltitle"),
        "uploader": info.get("uploader"),
        "channel": info.get("channel") or info.get("playlist_channel"),
        "duration_s": info.get("duration"),
        "upload_date": info.get("upload_date"),
        "description": description[:DESCRIPTION_LIMIT] if isinstance(description, str)
        else None,
        "webpage_url": info.get("webpage_url"),
        "extractor": info.get("extractor_key") or info.get("ie_key") or info.get("extractor"),
        "view_count": info.get("view_count"),
    }
    if "subtitles" in info:
        meta["captions"] = _languages(info.get("subtitles"))
    if "automatic_captions" in info:
        meta["auto_captions"] = _languages(info.get("automatic_captions"))
    return {k: v for k, v in meta.items() if v not in (None, "")}


def trim_info(info: dict[str, Any], caption_languages: tuple[str, ...] = ()) -> dict[str, Any]:
    """yt-dlp's info without formats and thumbnails; every human caption track, and the
    automatic tracks only in `caption_languages` or their original language (`*-orig`)."""
    out = {k: info[k] for k in _KEEP if info.get(k) is not None}
    subs = info.get("subtitles") or {}
    out["subtitles"] = {lang: [_track(t) for t in tracks] for lang, tracks in subs.items()
                        if lang not in _NOT_SPEECH and tracks}
    auto = info.get("automatic_captions") or {}
    origs = {lang[:-5] for lang in auto if lang.endswith("-orig")}
    wanted = set(caption_languages) | origs | {f"{lang}-orig" for lang in origs}
    out["automatic_captions"] = {lang: [_track(t) for t in tracks] for lang, tracks in
                                 auto.items() if lang in wanted and tracks}
    return out


def _track(t: dict[str, Any]) -> dict[str, Any]:
    return {k: t[k] for k in ("ext", "url", "name") if t.get(k) is not None}


def live_reason(info: dict[str, Any]) -> str | None:
    """Why a stream cannot be processed yet (live now, scheduled, just ended), or None."""
    live = info.get("live_status")
    if not (info.get("is_live") or live in ("is_live", "is_upcoming", "post_live")):
        return None
    state = {"is_upcoming": "scheduled, not started",
             "post_live": "just ended, recording not processed yet"}.get(live or "", "live now")
    return f"live stream ({state}): nothing to transcribe yet"


def run_metadata(task: StageTask) -> StageOutcome:
    """Full extraction of `task.video.url` (no download). A live or scheduled stream is
    skipped (nothing to transcribe yet); a page holding several videos fails, pointing at
    `add --expand`."""
    from deescalwild.acquire.ytdlp import extract_info

    url = task.video.url
    try:
        info = extract_info(url, task.settings)
    except StageError as e:
        if _NOT_YET.search(e.reason):
            return StageOutcome.skipped(f"not available yet: {e.reason}")
        raise
    kind = info.get("_type", "video")
    if kind in ("playlist", "multi_video") or info.get("entries") is not None:
        n = len(info.get("entries") or [])
        raise StageError(f"{url} is a page of {n} videos, not one video; add it with "
                         "--expand to list them", retryable=False)
    not_ready = live_reason(info)
    if not_ready:
        return StageOutcome.skipped(not_ready, live_status=info.get("live_status") or "is_live")
    meta = metadata_from_info(info)
    meta.setdefault("captions", [])
    meta.setdefault("auto_captions", [])
    path = output_path(task.settings, "metadata", task.video.id, ".info.json")
    trimmed = trim_info(info, tuple(task.settings.caption_languages))
    with atomic_write(path) as fh:
        json.dump(trimmed, fh, ensure_ascii=False, indent=1)
    detail = {k: meta[k] for k in ("extractor", "duration_s", "captions") if k in meta}
    return StageOutcome(outputs={"info": str(path)}, meta=meta, detail=detail)
