"""The DeEscalWild YouTube list (`raw_youtube_video_list.csv`): title, channel and URL per video.

Transcript files named `youtube_<id>.csv` are rows of this list by its `id` column. Joining it
gives each scenario its provenance and a title that later stages use as scenario context.
"""

from __future__ import annotations

import csv
from pathlib import Path

from deescalwild.errors import InputError

FILENAME = "raw_youtube_video_list.csv"
_FIELDS = {  # list column -> scenario meta key
    "Title": "title",
    "URL": "url",
    "Uploader": "uploader",
    "channel_name": "channel",
    "Upload Date": "upload_date",
    "Duration (sec)": "duration_s",
    "Views": "views",
}


def load_youtube_list(path: str | Path) -> dict[str, dict]:
    """Map `youtube_<id>` → metadata dict. Raises `InputError` when the file is not such a list."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"id", *_FIELDS} - set(reader.fieldnames or [])
            if missing:
                raise InputError(path, 1, "expected a YouTube video list with columns id, "
                                 f"{', '.join(_FIELDS)}; missing {', '.join(sorted(missing))}")
            out: dict[str, dict] = {}
            for row in reader:
                meta = {}
                for col, key in _FIELDS.items():
                    value = (row.get(col) or "").strip()
                    if not value:
                        continue
                    if key in ("duration_s", "views"):
                        try:
                            meta[key] = int(float(value))
                        except ValueError:
                            continue
                    else:
                        meta[key] = value
                out[f"youtube_{row['id'].strip()}"] = meta
    except UnicodeDecodeError as e:
        raise InputError(path, None, "not UTF-8: expected a UTF-8 CSV video list") from e
    except csv.Error as e:
        raise InputError(path, None, f"CSV syntax error: {e}") from e
    return out
