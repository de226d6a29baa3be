"""`deescalwild acquire add URL|FILE...`: put videos into the manifest.

Single video URLs and list rows are added without touching the network: the key comes from
the URL (`sources.video_key`) and the `metadata` stage fetches the details later, spaced by the
run's rate limit and in parallel. Only a channel or playlist (or any URL with `expand=True`)
is opened now, through yt-dlp's flat extraction, because its videos are not known otherwise.

What a list already holds is used rather than fetched again: the DeEscalWild list's complete
metadata marks the `metadata` stage done, its caption text becomes the `transcribe` output, and
published DeEscalWild transcripts (`transcripts=[DIR]`) become the `diarize` output of the video
they belong to. Adding the same thing twice changes nothing but merged metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deescalwild.acquire.formats import Segment, Transcript, write_segments
from deescalwild.acquire.manifest import Manifest, NewVideo
from deescalwild.acquire.sources import (
    caption_lines,
    is_collection,
    is_url,
    metadata_complete,
    read_list,
    video_key,
)
from deescalwild.acquire.tasks import STAGES, Settings, StageError, file_hash
from deescalwild.corpus.csv_transcripts import HEADER, PLATFORMS
from deescalwild.errors import InputError

__all__ = ["AddSummary", "add_sources", "expand_collection"]

MAX_EXAMPLES = 20
MAX_DEPTH = 3  # channel -> tabs -> playlists: deeper nesting is not followed
Progress = Callable[[int, int], None]


@dataclass
class AddSummary:
    """What `add` did. `problems` are one line each (file:line: reason); nothing in them
    stopped the other inputs."""

    added: int = 0
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    expanded: list[dict[str, Any]] = field(default_factory=list)  # {"url", "videos"}
    metadata_from_list: int = 0
    captions_attached: int = 0
    transcripts_attached: int = 0
    transcripts_unmatched: int = 0
    unmatched_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    video: NewVideo
    captions: str | None = None
    complete: bool = False


def _entry_url(entry: dict[str, Any]) -> str | None:
    """The URL that names one entry: its own `url` (a video page, or the media file of a page
    embedding several), else its page."""
    for k in ("url", "webpage_url", "original_url"):
        v = entry.get(k)
        if isinstance(v, str) and is_url(v):
            return v
    return None


def _is_nested(entry: dict[str, Any], url: str | None) -> bool:
    if entry.get("_type") in ("playlist", "multi_video") or entry.get("entries") is not None:
        return True
    ie = str(entry.get("ie_key") or "").lower()
    return bool(url) and (is_collection(url) or ie.endswith(("tab", "playlist", "user",
                                                             "channel")))


def expand_collection(url: str, settings: Settings) -> list[NewVideo]:
    """The videos behind a channel, playlist or page (yt-dlp flat extraction); nested playlists
    (a channel's tabs) are followed. Source of each: `URL#n`. `StageError` when it fails."""
    from deescalwild.acquire.metadata import metadata_from_info
    from deescalwild.acquire.ytdlp import extract_info

    out: list[NewVideo] = []
    seen: set[str] = set()

    def visit(info: dict[str, Any], depth: int) -> None:
        entries = info.get("entries")
        if entries is None and info.get("_type", "video") == "video":
            entries = [info]
        for entry in entries or []:
            if not isinstance(entry, dict):
                continue
            eurl = _entry_url(entry)
            if _is_nested(entry, eurl) and entry is not info:
                if entry.get("entries") is not None:
                    visit(entry, depth + 1)
                elif eurl and depth < MAX_DEPTH and eurl not in seen:
                    seen.add(eurl)
                    visit(extract_info(eurl, settings, flat=True), depth + 1)
                continue
            if not eurl:
                continue
            key, canon, platform = video_key(eurl, entry)
            meta = metadata_from_info(entry)
            if meta.get("webpage_url") == url:  # the page itself, not this video's
                meta.pop("webpage_url")
            aliases = (eurl,) if eurl != canon else ()
            out.append(NewVideo(key, canon, platform, f"{url}#{len(out) + 1}", meta, aliases))

    seen.add(url)
    visit(extract_info(url, settings, flat=True), 0)
    return out


def _classify(inputs: Sequence[str], expand: bool) -> list[tuple[str, str]]:
    """`(kind, input)` for each input, kind = list | collection | video; a bad input raises
    before anything is added."""
    out = []
    for item in inputs:
        path = Path(item)
        if path.exists() and not is_url(item):
            if path.is_dir() or path.suffix.lower() not in (".csv", ".xlsx"):
                raise InputError(path, None, "expected a .csv or .xlsx video list (or a "
                                 "video/channel/playlist URL)")
            out.append(("list", item))
        elif is_url(item):
            out.append(("collection" if expand or is_collection(item) else "video", item))
        else:
            raise InputError(item, None, "expected a video/channel/playlist URL or a "
                             ".csv/.xlsx list")
    return out


def _gather(kinds: list[tuple[str, str]], settings: Settings,
            summary: AddSummary) -> list[_Pending]:
    pending: list[_Pending] = []
    for kind, item in kinds:
        if kind == "list":
            read = read_list(item)
            summary.problems += [str(p) for p in read.problems]
            for i, video in enumerate(read.entries):
                raw = video.aliases[0] if video.aliases else video.url
                if is_collection(raw):  # a channel or playlist named in a list
                    pending += _expand(raw, settings, summary, video.source)
                    continue
                pending.append(_Pending(video, read.captions.get(i),
                                        read.complete and metadata_complete(video.meta)))
        elif kind == "collection":
            pending += _expand(item, settings, summary, item)
        else:
            key, canon, platform = video_key(item)
            aliases = (item,) if item != canon else ()
            pending.append(_Pending(NewVideo(key, canon, platform, item, {}, aliases)))
    return pending


def _expand(url: str, settings: Settings, summary: AddSummary, where: str) -> list[_Pending]:
    try:
        videos = expand_collection(url, settings)
    except StageError as e:
        summary.problems.append(f"{where}: could not list the videos of {url}: {e.reason}")
        return []
    summary.expanded.append({"url": url, "videos": len(videos)})
    return [_Pending(v) for v in videos]


def _complete(manifest: Manifest, workdir: Path, item: _Pending, summary: AddSummary, *,
              pending_only: bool) -> None:
    """Record what the list row already holds (metadata, captions). `pending_only`: the row
    was added by an earlier `add` of the same input that stopped before this step; finish it
    where the stage is still pending."""
    video = item.video
    open_stages = set(STAGES)
    if pending_only:
        open_stages = {s for s, row in manifest.stages_of(video.id).items()
                       if row.status == "pending"}
    if item.complete and "metadata" in open_stages:
        manifest.set_stage(video.id, "metadata", "done", detail={"source": "list"})
        summary.metadata_from_list += 1
    if item.captions and "transcribe" in open_stages and _attach_captions(
            manifest, workdir, video, item.captions):
        summary.captions_attached += 1


def _attach_captions(manifest: Manifest, workdir: Path, video: NewVideo, text: str) -> bool:
    lines = caption_lines(text)
    if not lines:
        return False
    path = workdir / "transcribe" / f"{video.id}.json"
    transcript = Transcript(source="list", segments=[Segment(None, None, t) for t in lines],
                            meta={"from": video.source, "split": ">> and line breaks"})
    write_segments(path, transcript)
    manifest.set_stage(video.id, "transcribe", "done",
                       outputs={"json": {"path": manifest.stored_path(path),
                                         **file_hash(path)}},
                       detail={"source": "list", "segments": len(lines)})
    return True


_TRANSCRIPT_NAME = re.compile(r"^([a-z]+)_(.+)$")


def _transcript_files(dirs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            files.append(d)
        elif d.is_dir():
            files += sorted(p for p in d.rglob("*.csv") if p.is_file())
        else:
            raise InputError(d, None, "no such folder: expected a folder of DeEscalWild "
                             "transcripts (<platform>_<id>.csv)")
    return files


def _has_transcript_header(path: Path) -> bool:
    with path.open("rb") as fh:
        first = fh.readline().decode("utf-8-sig", errors="replace")
    return tuple(c.strip().lower() for c in first.split(",")) == HEADER


def _attach_transcripts(manifest: Manifest, files: Sequence[Path], summary: AddSummary,
                        tick: Callable[[], None]) -> None:
    """Published DeEscalWild transcripts become the `diarize` output of their video:
    `youtube_<list id>.csv` by the list's id, `<platform>_<id>.csv` by the key."""
    by_list_id: dict[str, str] = {}
    keys: set[str] = set()
    for row in manifest.videos():
        keys.add(row.id)
        list_id = row.meta.get("list_id")
        if list_id is not None and row.platform in (None, "youtube"):
            by_list_id.setdefault(str(list_id), row.id)
    for path in files:
        tick()
        m = _TRANSCRIPT_NAME.match(path.stem)
        if not m or m.group(1) not in PLATFORMS:
            continue  # not a transcript file name (the video list itself, notes, ...)
        video_id = path.stem if path.stem in keys else (
            by_list_id.get(m.group(2)) if m.group(1) == "youtube" else None)
        if video_id is None:
            summary.transcripts_unmatched += 1
            if len(summary.unmatched_examples) < MAX_EXAMPLES:
                summary.unmatched_examples.append(str(path))
            continue
        if not _has_transcript_header(path):
            summary.problems.append(f"{path}:1: expected the header "
                                    f"{','.join(HEADER)}; not attached")
            continue
        stages = manifest.stages_of(video_id)
        if stages["diarize"].status == "done":
            continue  # attached before (or diarized): leave it
        manifest.set_stage(video_id, "diarize", "done",
                           outputs={"csv": {"path": manifest.stored_path(path),
                                            **file_hash(path)}},
                           detail={"source": "attached", "file": path.name})
        for stage in ("audio", "transcribe"):
            if stages[stage].status != "done":
                manifest.set_stage(video_id, stage, "skipped", error="transcript attached",
                                   detail={"passthrough": True, "source": "attached"})
        summary.transcripts_attached += 1


def add_sources(manifest: Manifest, inputs: Sequence[str], *, workdir: Path,
                settings: Settings | None = None, transcripts: Sequence[Path] = (),
                expand: bool = False, progress: Progress | None = None) -> AddSummary:
    """Add every video named by `inputs` (URLs and .csv/.xlsx lists) to `manifest`.

    Bad inputs (a missing file, a word that is not a URL) raise `InputError` before anything
    is added; a bad row or a channel that cannot be listed is a problem in the summary."""
    workdir = Path(workdir).resolve()
    settings = settings or Settings(workdir=str(workdir), out_dir=str(workdir / "out"))
    summary = AddSummary()
    kinds = _classify(inputs, expand)
    pending = _gather(kinds, settings, summary)
    files = _transcript_files(transcripts) if transcripts else []
    total = len(pending) + len(files)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for item in pending:
        video = item.video
        tick()
        if manifest.add_video(video) == "duplicate":
            summary.duplicates += 1
            known = manifest.video_for_url(video.url) or video.id
            row = manifest.video(known)
            if len(summary.duplicate_examples) < MAX_EXAMPLES:
                summary.duplicate_examples.append(
                    f"{video.id} ({video.source}) = already from {row.source if row else '?'}"
                    + (f" as {known}" if known != video.id else ""))
            if row is not None and row.source == video.source and (item.complete
                                                                   or item.captions):
                _complete(manifest, workdir, item, summary, pending_only=True)
            continue
        summary.added += 1
        _complete(manifest, workdir, item, summary, pending_only=False)
    if files:
        _attach_transcripts(manifest, files, summary, tick)
    return summary
