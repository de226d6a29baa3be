"""The metadata stage: yt-dlp's full extraction of a page served on 127.0.0.1, what reaches the
manifest, the trimmed info file, and the failures (404, a page of several videos, streams)."""

from __future__ import annotations

import json

import pytest
from media_fixtures import make_page, serve_dir

from deescalwild.acquire.metadata import (
    live_reason,
    metadata_from_info,
    run_metadata,
    trim_info,
)
from deescalwild.acquire.tasks import Settings, StageError, StageTask, VideoRef


def _task(tmp_path, url: str, video_id: str = "html5_watch") -> StageTask:
    settings = Settings(workdir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                        max_retries=0)
    return StageTask(VideoRef(video_id, url), "metadata", settings)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "clip.webm").write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 64)  # never downloaded
    make_page(root)
    with serve_dir(root) as base:
        yield root, base


def test_metadata_of_a_page_with_captions(tmp_path, site):
    _, base = site
    outcome = run_metadata(_task(tmp_path, f"{base}/watch.html"))
    assert outcome.status == "done"
    meta = outcome.meta
    assert meta["title"].startswith("Traffic stop on Main Street")
    assert meta["captions"] == ["en"] and meta["auto_captions"] == []
    assert meta["webpage_url"] == f"{base}/watch.html"
    assert meta["extractor"] == "HTML5MediaEmbed"
    assert None not in meta.values()
    info_path = tmp_path / "work" / "metadata" / "html5_watch.info.json"
    assert outcome.outputs == {"info": str(info_path)}
    info = json.loads(info_path.read_text())
    assert info["subtitles"]["en"][0]["url"] == f"{base}/clip.en.vtt"
    assert "formats" not in info and "http_headers" not in info
    assert outcome.detail["captions"] == ["en"]
    assert not list(info_path.parent.glob(".*.tmp"))  # no temporary file left


def test_missing_page_fails_for_good(tmp_path, site):
    _, base = site
    with pytest.raises(StageError, match="404") as err:
        run_metadata(_task(tmp_path, f"{base}/gone.html"))
    assert err.value.retryable is False
    assert "\n" not in err.value.reason
    assert not (tmp_path / "work" / "metadata" / "html5_watch.info.json").exists()


def test_a_page_of_several_videos_is_not_one_video(tmp_path, site):
    root, base = site
    (root / "two.html").write_text('<html><head><title>Two</title></head><body>'
                                   '<video src="clip.webm"></video><video src="b.mp4"></video>'
                                   "</body></html>")
    with pytest.raises(StageError, match=r"page of 2 videos.*--expand"):
        run_metadata(_task(tmp_path, f"{base}/two.html"))


def test_metadata_from_info_keeps_what_is_known():
    full = {"title": "T", "uploader": "U", "channel": "C", "duration": 61.5,
            "upload_date": "20250101", "description": "d" * 6000, "webpage_url": "https://w",
            "extractor_key": "Youtube", "view_count": 7,
            "subtitles": {"en": [{"ext": "vtt"}], "live_chat": [{"ext": "json"}], "fr": []},
            "automatic_captions": {"en-orig": [{"ext": "vtt"}], "de": [{"ext": "vtt"}]}}
    meta = metadata_from_info(full)
    assert meta["duration_s"] == 61.5 and meta["extractor"] == "Youtube"
    assert len(meta["description"]) == 5000
    assert meta["captions"] == ["en"]  # live chat is not speech; an empty track list is none
    assert meta["auto_captions"] == ["de", "en-orig"]
    # a flat playlist entry says nothing about captions: no claim that there are none
    flat = metadata_from_info({"id": "x", "title": "T", "duration": None, "ie_key": "Youtube"})
    assert flat == {"title": "T", "extractor": "Youtube"}


def test_trim_info_drops_formats_and_translated_captions():
    info = {"id": "x", "title": "T", "formats": [{"url": "u"}] * 50, "thumbnails": [{}],
            "subtitles": {"en": [{"ext": "vtt", "url": "s", "http_headers": {}}]},
            "automatic_captions": {lang: [{"ext": "vtt", "url": lang}] for lang in
                                   ("en", "es-orig", "es", "fr", "de", "en-GB")}}
    out = trim_info(info, ("en", "en-GB"))
    assert "formats" not in out and "thumbnails" not in out
    assert out["subtitles"] == {"en": [{"ext": "vtt", "url": "s"}]}
    assert sorted(out["automatic_captions"]) == ["en", "en-GB", "es", "es-orig"]


@pytest.mark.parametrize(("info", "expected"), [
    ({"live_status": "is_live"}, "live now"),
    ({"is_live": True}, "live now"),
    ({"live_status": "is_upcoming"}, "scheduled"),
    ({"live_status": "post_live"}, "just ended"),
    ({"live_status": "was_live"}, None),
    ({"live_status": "not_live"}, None),
    ({}, None),
])
def test_streams_are_skipped_until_they_can_be_processed(info, expected):
    reason = live_reason(info)
    assert (reason is None) if expected is None else (expected in reason)
