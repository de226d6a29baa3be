"""Where videos come from: one key per video, whatever spelling of its URL the user gave, and
the lists (CSV, XLSX) that name many videos at once.

Nothing here touches the network. A video's key (`youtube_<id>`, `tiktok_<id>`, ...) is read
from its URL alone so that a list of 3,000 rows is added in seconds and the same video given as
`youtu.be/ID` and as `watch?v=ID&t=42` is recognised as one. The key names every file made for
the video, and its prefix is the platform `corpus import` reads from a transcript's file name.

A list is read leniently: a row without a usable URL is a problem that names the file, the line
and the column, never the end of the import. The DeEscalWild YouTube list
(`raw_youtube_video_list.csv`) is recognised by its columns: its metadata is complete, its `id`
is the number its published transcripts are named by (`youtube_<id>.csv`) and its `Transcript`
column holds caption text.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from deescalwild.acquire.manifest import NewVideo
from deescalwild.corpus.csv_transcripts import PLATFORMS
from deescalwild.errors import InputError

__all__ = ["DEESCALWILD_COLUMNS", "ListRead", "canonical_url", "caption_lines", "is_collection",
           "is_url", "metadata_complete", "platform_of_extractor", "read_list", "video_key"]

# Some caption cells of the DeEscalWild list run to tens of thousands of characters.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

DESCRIPTION_LIMIT = 5000  # characters of a description kept in the manifest

# Query parameters that say who shared a link, never which video it is.
_TRACKING = frozenset({
    "si", "feature", "fbclid", "gclid", "igshid", "igsh", "mibextid", "is_from_webapp",
    "sender_device", "share_app_id", "share_link_id", "_r", "_t", "pp", "ab_channel",
    "rdid", "rdt", "ref_src", "ref_url",
})
_TRACKING_BY_HOST = {  # short names that mean tracking only on these sites
    "tiktok.com": frozenset({"t", "lang", "q", "refer", "source"}),
    "twitter.com": frozenset({"s", "t"}),
    "x.com": frozenset({"s", "t"}),
    "instagram.com": frozenset({"utm_source", "hl"}),
}

_YT_ID = r"[A-Za-z0-9_-]{11}"
_YT_HOSTS = re.compile(r"^(?:(?:www|m|music)\.)?youtube(?:-nocookie)?\.com$")
_YT_PATH = re.compile(rf"^/(?:shorts|embed|live|v|e)/({_YT_ID})(?:[/?&#]|$)")
_YT_COLLECTION = re.compile(
    r"^/(?:@[^/]+|channel/UC[A-Za-z0-9_-]+|c/[^/]+|user/[^/]+)"
    r"(?:/(?:videos|shorts|streams|playlists|featured|podcasts|releases))?/?$")
_TIKTOK_VIDEO = re.compile(r"^/@[^/]+/video/(\d+)")
_TIKTOK_PROFILE = re.compile(r"^/@[^/]+/?$")
_FB_VIDEOS = re.compile(r"/videos/(?:[^/]+/)?(\d+)")
_FB_REEL = re.compile(r"^/reels?/(\d+)")
_FB_SHARE = re.compile(r"^/share/(?:v|r)/([A-Za-z0-9_-]+)")
_IG_CODE = re.compile(r"^/(?:[^/]+/)?(?:reels?|p|tv)/([A-Za-z0-9_-]+)")
_TW_STATUS = re.compile(r"/status(?:es)?/(\d+)")
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def is_url(text: str) -> bool:
    """An http(s) or file URL (what `add` accepts besides list files)."""
    parts = urlsplit(text.strip())
    if parts.scheme.lower() in ("http", "https"):
        return bool(parts.netloc)
    return parts.scheme.lower() == "file"


def _site(host: str) -> str:
    """`www.m.tiktok.com` -> `tiktok.com`: the registrable part we match sites on."""
    host = host.split(":", 1)[0]
    parts = host.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else host


def canonical_url(url: str) -> str:
    """`url` without what does not identify the video: fragment, tracking parameters, a
    trailing slash; scheme and host lower-cased. Other parameters keep their order."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), parts.netloc.lower()
    site_tracking = _TRACKING_BY_HOST.get(_site(host), frozenset())
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not k.lower().startswith("utm_") and k not in _TRACKING and k not in site_tracking]
    path = parts.path
    if len(path) > 1:
        path = path.rstrip("/")
    elif path == "/":
        path = ""
    return urlunsplit((scheme, host, path, urlencode(query, doseq=True), ""))


def _youtube_id(host: str, path: str, query: dict[str, str]) -> str | None:
    if host in ("youtu.be", "www.youtu.be"):
        # `youtu.be/ID&t=10` (parameters joined with & instead of ?) is common: path "/ID&t=10"
        m = re.match(rf"^/({_YT_ID})(?:[/?&#]|$)", path)
        return m.group(1) if m else None
    if not _YT_HOSTS.match(host):
        return None
    if path.rstrip("/") == "/watch":
        v = query.get("v", "")
        return v if re.fullmatch(_YT_ID, v) else None
    m = _YT_PATH.match(path)
    return m.group(1) if m else None


def _platform_key(url: str) -> tuple[str, str] | None:
    """(key, canonical URL) when the URL itself says which video of a known platform it is."""
    parts = urlsplit(url.strip())
    host, path = parts.netloc.lower().split(":", 1)[0], parts.path
    query = dict(parse_qsl(parts.query))
    site = _site(host)
    yt = _youtube_id(host, path, query)
    if yt:
        return f"youtube_{yt}", f"https://www.youtube.com/watch?v={yt}"
    canon = canonical_url(url)
    if site == "tiktok.com" and (m := _TIKTOK_VIDEO.match(path)):
        return f"tiktok_{m.group(1)}", canon
    if site in ("facebook.com", "fb.com"):
        if (path.rstrip("/") in ("/watch", "/video.php")) and query.get("v", "").isdigit():
            return f"facebook_{query['v']}", canon
        m = _FB_VIDEOS.search(path) or _FB_REEL.match(path) or _FB_SHARE.match(path)
        if m:  # a share link's code stands for the video until yt-dlp resolves it
            return f"facebook_{m.group(1)}", canon
    if site == "instagram.com" and (m := _IG_CODE.match(path)):
        return f"instagram_{m.group(1)}", canon
    if site in ("twitter.com", "x.com") and (m := _TW_STATUS.search(path)):
        return f"twitter_{m.group(1)}", canon
    return None


def platform_of_extractor(extractor_key: str) -> str:
    """yt-dlp's extractor key as a platform name: `TwitchVod` -> `twitch`, `Vimeo` -> `vimeo`,
    else the key lower-cased and made file-name safe."""
    low = _SAFE.sub("", extractor_key.split(":", 1)[0]).lower()
    if low in PLATFORMS:
        return low
    for name in sorted(PLATFORMS, key=len, reverse=True):
        if len(name) >= 4 and low.startswith(name):
            return name
    return low or "video"


# yt-dlp extractors whose ids are file names or page slugs, not unique across sites
_GENERIC_EXTRACTORS = frozenset({"generic", "html5mediaembed", "html5"})


def video_key(url: str, info: dict[str, Any] | None = None) -> tuple[str, str, str | None]:
    """`(key, canonical URL, platform)` of a video. Known platforms by their URL shape; else,
    given yt-dlp's `info`, `<extractor>_<id>`; else `url_<sha1 of the canonical URL>`.
    The key is a valid file stem ([A-Za-z0-9_-] only)."""
    found = _platform_key(url)
    if found:
        key, canon = found
        key = _SAFE.sub("_", key)
        return key, canon, key.split("_", 1)[0]
    canon = canonical_url(url)
    if info:
        extractor = str(info.get("extractor_key") or info.get("ie_key") or "")
        vid = _SAFE.sub("_", str(info.get("id") or "")).strip("_")
        if extractor and vid and extractor.lower() not in _GENERIC_EXTRACTORS:
            platform = platform_of_extractor(extractor)
            return f"{platform}_{vid}", canon, platform
    digest = hashlib.sha1(canon.encode("utf-8")).hexdigest()[:12]
    return f"url_{digest}", canon, None


def is_collection(url: str) -> bool:
    """A YouTube channel (`/@handle`, `/channel/UC…`, `/c/…`, `/user/…`, with an optional tab)
    or playlist (`/playlist?list=`), or a TikTok profile: many videos behind one URL."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().split(":", 1)[0]
    if _YT_HOSTS.match(host):
        if parts.path.rstrip("/") == "/playlist":
            return bool(dict(parse_qsl(parts.query)).get("list"))
        return bool(_YT_COLLECTION.match(parts.path))
    if _site(host) == "tiktok.com":
        return bool(_TIKTOK_PROFILE.match(parts.path))
    return False


# --- lists ------------------------------------------------------------------------------------

# The DeEscalWild list's columns (all of them must be there for it to be recognised).
DEESCALWILD_COLUMNS = ("id", "Index", "Title", "URL", "Uploader", "Views", "Upload Date",
                       "Duration (sec)", "Description", "Transcript", "channel_name")
# normalised header names of a URL column, strongest first ("video" often holds titles)
_URL_HEADERS = ("url", "video url", "link", "video link", "href", "video")
_WEAK_URL_HEADERS = frozenset({"video"})
_URL_SAMPLE = 50  # non-empty cells looked at to tell whether a column holds URLs
_META_HEADERS = {  # normalised header -> meta key
    "title": "title", "video title": "title",
    "uploader": "uploader", "author": "uploader",
    "channel": "channel", "channel name": "channel",
    "duration (sec)": "duration_s", "duration": "duration_s", "duration s": "duration_s",
    "length": "duration_s",
    "upload date": "upload_date", "date": "upload_date", "published": "upload_date",
    "description": "description",
    "views": "view_count", "view count": "view_count",
    "transcript": "_captions", "captions": "_captions",
}


@dataclass
class ListRead:
    """What a list gave. `captions[i]` is caption text for `entries[i]`; `complete` says that
    the list's metadata needs no fetching (the DeEscalWild list); `kind` is `deescalwild`
    or `generic`."""

    entries: list[NewVideo] = field(default_factory=list)
    problems: list[InputError] = field(default_factory=list)
    captions: dict[int, str] = field(default_factory=dict)
    complete: bool = False
    kind: str = "generic"
    url_column: str | None = None


def _norm(header: Any) -> str:
    return " ".join(str(header or "").replace("_", " ").replace("-", " ").lower().split())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _duration(text: str) -> float | int | None:
    """Seconds from `754`, `754.5`, `12:34` or `1:02:03`."""
    try:
        if ":" in text:
            total = 0.0
            for part in text.split(":"):
                total = total * 60 + float(part)
            return int(total) if total.is_integer() else total
        value = float(text)
        return int(value) if value.is_integer() else value
    except ValueError:
        return None


def _date(text: str) -> str:
    """yt-dlp's YYYYMMDD from `2025-10-29`, `2025/10/29` or `20251029`; else as given."""
    m = re.fullmatch(r"(\d{4})[-/.]?(\d{2})[-/.]?(\d{2})(?:[ T].*)?", text)
    return "".join(m.groups()) if m else text


def _meta_value(key: str, text: str) -> Any:
    if key == "duration_s":
        return _duration(text)
    if key == "view_count":
        try:
            return int(float(text.replace(",", "")))
        except ValueError:
            return None
    if key == "upload_date":
        return _date(text)
    if key == "description":
        return text[:DESCRIPTION_LIMIT]
    return text


def _rows_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each record; a quoted cell may span lines."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            line = 1
            for row in reader:
                yield line, row
                line = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise InputError(path, None, f"not UTF-8 ({e.reason} at byte {e.start}): expected a "
                         "UTF-8 CSV video list (re-save it as UTF-8)") from e
    except csv.Error as e:
        raise InputError(path, None, f"CSV syntax error: {e}") from e


def _rows_xlsx(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of the workbook's active sheet."""
    import zipfile

    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as e:
        raise InputError(path, None, f"not an Excel workbook ({e}): expected an .xlsx video "
                         "list") from e
    try:
        ws = wb.active
        for number, row in enumerate(ws.iter_rows(values_only=True), start=1):
            yield number, [_cell(v) for v in row]
    finally:
        wb.close()


def _looks_like_url(text: str) -> bool:
    return bool(re.match(r"^(?:https?|file)://\S+$", text.strip(), re.IGNORECASE))


def _holds_urls(data: list[tuple[int, list[str]]], col: int) -> bool:
    """Whether most of the column's first non-empty cells are http(s) URLs."""
    cells = [r[col].strip() for _, r in data if col < len(r) and r[col].strip()][:_URL_SAMPLE]
    return bool(cells) and 2 * sum(map(_looks_like_url, cells)) >= len(cells)


def _url_column(normed: list[str], data: list[tuple[int, list[str]]]) -> int | None:
    """The URL column: a URL-named one holding URLs (stronger names first: url, video url,
    link, video link, href, then video); else a strongly named one; else the first column
    with a URL among its first rows; else one named "video"."""
    named = sorted((_URL_HEADERS.index(h), i) for i, h in enumerate(normed)
                   if h in _URL_HEADERS)
    for _, i in named:
        if _holds_urls(data, i):
            return i
    for rank, i in named:
        if _URL_HEADERS[rank] not in _WEAK_URL_HEADERS:
            return i
    width = max(len(r) for _, r in data) if data else 0
    found = next((i for i in range(width) if any(
        i < len(r) and _looks_like_url(r[i]) for _, r in data[:_URL_SAMPLE])), None)
    if found is not None:
        return found
    return named[0][1] if named else None


def read_list(path: str | Path) -> ListRead:
    """Read a CSV or XLSX list of videos. The URL column is found by its header (url,
    video_url, "Video URL", link, href, video; one whose cells are URLs first, see
    `_url_column`), else as the first column holding URLs; a file without a header row (URLs
    from the first line) works too. Raises `InputError` only when the whole
    file is unreadable (not UTF-8, not a workbook, no URL column)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = list(_rows_csv(path))
    elif suffix == ".xlsx":
        rows = list(_rows_xlsx(path))
    else:
        raise InputError(path, None, "expected a .csv or .xlsx video list")
    rows = [(n, r) for n, r in rows if any(c.strip() for c in r)]
    out = ListRead()
    if not rows:
        out.problems.append(InputError(path, None, "empty list: expected a header row with a "
                                       "url column and one video per row"))
        return out
    first_line, first = rows[0]
    header = [c.strip() for c in first]
    if any(_looks_like_url(c) for c in header):
        header, data = [], rows  # no header: URLs from the first line
    else:
        data = rows[1:]
    normed = [_norm(h) for h in header]
    deescalwild = all(c in header for c in DEESCALWILD_COLUMNS)
    url_col = _url_column(normed, data)
    if url_col is None:
        raise InputError(path, first_line, "no URL column: expected a header named url, link, "
                         "video_url or href, or a column of http(s) URLs")
    out.url_column = header[url_col] if url_col < len(header) else f"column {url_col + 1}"
    out.kind = "deescalwild" if deescalwild else "generic"
    out.complete = deescalwild
    meta_cols = {i: _META_HEADERS[h] for i, h in enumerate(normed)
                 if h in _META_HEADERS and i != url_col}
    if deescalwild:  # exact columns: Uploader and channel_name are different things
        meta_cols = {header.index(c): k for c, k in (
            ("Title", "title"), ("Uploader", "uploader"), ("channel_name", "channel"),
            ("Views", "view_count"), ("Upload Date", "upload_date"),
            ("Duration (sec)", "duration_s"), ("Description", "description"),
            ("Transcript", "_captions"))}
    id_col = header.index("id") if deescalwild else None
    for line, row in data:
        raw = row[url_col].strip() if url_col < len(row) else ""
        if not raw:
            out.problems.append(InputError(path, line, f"no URL in column "
                                           f"{out.url_column!r}; row skipped"))
            continue
        if not is_url(raw):
            out.problems.append(InputError(path, line, f"column {out.url_column!r}: "
                                           f"{raw[:80]!r} is not an http(s) URL; row skipped"))
            continue
        key, canon, platform = video_key(raw)
        meta: dict[str, Any] = {}
        captions = ""
        for i, name in meta_cols.items():
            text = row[i].strip() if i < len(row) else ""
            if not text:
                continue
            if name == "_captions":
                captions = text
                continue
            value = _meta_value(name, text)
            if value not in (None, ""):
                meta[name] = value
        if id_col is not None and id_col < len(row) and row[id_col].strip():
            meta["list_id"] = row[id_col].strip()
        aliases = (raw,) if raw != canon else ()
        out.entries.append(NewVideo(key, canon, platform, f"{path}:{line}", meta, aliases))
        if captions:
            out.captions[len(out.entries) - 1] = captions
    return out


def metadata_complete(meta: dict[str, Any]) -> bool:
    """Whether a list row told us what the metadata stage would: at least a title and a
    duration (the audio stage's length limit reads it)."""
    return bool(meta.get("title")) and meta.get("duration_s") is not None


def caption_lines(text: str) -> list[str]:
    """Caption text split where YouTube's captions mark a new speaker (`>>`) and at line
    breaks; empty pieces dropped."""
    pieces: list[str] = []
    for block in text.splitlines():
        pieces += [p.strip() for p in block.split(">>")]
    return [p for p in pieces if p]

