"""Video keys from URLs, canonical URLs, collections, and reading CSV/XLSX video lists."""

from __future__ import annotations

import re

import pytest

from deescalwild.acquire.sources import (
    canonical_url,
    caption_lines,
    is_collection,
    read_list,
    video_key,
)
from deescalwild.corpus.csv_transcripts import PLATFORMS
from deescalwild.errors import InputError

YT = "https://www.youtube.com/watch?v=cZAxcoimdPg"

KEYS = [
    # YouTube: every spelling of one video is one key and one canonical URL
    ("https://www.youtube.com/watch?v=cZAxcoimdPg", "youtube_cZAxcoimdPg", YT),
    ("https://www.youtube.com/watch?v=cZAxcoimdPg&t=42s&si=abc&list=PL1", "youtube_cZAxcoimdPg",
     YT),
    ("https://youtu.be/cZAxcoimdPg?si=UK0bmsJPmHuBa28z", "youtube_cZAxcoimdPg", YT),
    ("https://m.youtube.com/shorts/cZAxcoimdPg/", "youtube_cZAxcoimdPg", YT),
    ("https://music.youtube.com/watch?feature=share&v=cZAxcoimdPg", "youtube_cZAxcoimdPg", YT),
    ("https://www.youtube.com/embed/cZAxcoimdPg?start=3", "youtube_cZAxcoimdPg", YT),
    ("https://www.youtube-nocookie.com/embed/cZAxcoimdPg", "youtube_cZAxcoimdPg", YT),
    ("https://youtube.com/live/cZAxcoimdPg?feature=shared", "youtube_cZAxcoimdPg", YT),
    ("https://www.youtube.com/watch?v=a-b_c1234_Z#comments", "youtube_a-b_c1234_Z",
     "https://www.youtube.com/watch?v=a-b_c1234_Z"),
    # a malformed but common short link: parameters joined with & instead of ?
    ("https://youtu.be/cZAxcoimdPg&t=10", "youtube_cZAxcoimdPg", YT),
    ("https://youtu.be/cZAxcoimdPg#t=10", "youtube_cZAxcoimdPg", YT),
    ("https://youtu.be/cZAxcoimdPg/", "youtube_cZAxcoimdPg", YT),
    ("https://www.youtube.com/shorts/cZAxcoimdPg&feature=share", "youtube_cZAxcoimdPg", YT),
    # TikTok: tracking (is_from_webapp, sender_device, t) dropped
    ("https://www.tiktok.com/@cop.cam/video/7312345678901234567?is_from_webapp=1"
     "&sender_device=pc&t=99", "tiktok_7312345678901234567",
     "https://www.tiktok.com/@cop.cam/video/7312345678901234567"),
    # Facebook
    ("https://www.facebook.com/PoliceDept/videos/1210753647087672/", "facebook_1210753647087672",
     "https://www.facebook.com/PoliceDept/videos/1210753647087672"),
    ("https://www.facebook.com/watch/?v=1210753647087672&mibextid=abc",
     "facebook_1210753647087672", "https://www.facebook.com/watch?v=1210753647087672"),
    ("https://m.facebook.com/reel/1210753647087672?fbclid=xyz", "facebook_1210753647087672",
     "https://m.facebook.com/reel/1210753647087672"),
    ("https://www.facebook.com/share/v/1AbC9xYz/", "facebook_1AbC9xYz",
     "https://www.facebook.com/share/v/1AbC9xYz"),
    # Instagram
    ("https://www.instagram.com/reel/C1a2B3c4D5e/?igsh=abc", "instagram_C1a2B3c4D5e",
     "https://www.instagram.com/reel/C1a2B3c4D5e"),
    ("https://www.instagram.com/p/C1a2B3c4D5e/", "instagram_C1a2B3c4D5e",
     "https://www.instagram.com/p/C1a2B3c4D5e"),
    # X / Twitter
    ("https://x.com/someone/status/1790000000000000000?s=20", "twitter_1790000000000000000",
     "https://x.com/someone/status/1790000000000000000"),
    ("https://twitter.com/i/web/status/1790000000000000000", "twitter_1790000000000000000",
     "https://twitter.com/i/web/status/1790000000000000000"),
]


@pytest.mark.parametrize(("url", "key", "canonical"), KEYS)
def test_video_key_known_platforms(url, key, canonical):
    got_key, got_canon, platform = video_key(url)
    assert (got_key, got_canon) == (key, canonical)
    assert platform == key.split("_", 1)[0] and platform in PLATFORMS
    assert re.fullmatch(r"[A-Za-z0-9_-]+", got_key)


def test_video_key_other_sites_use_yt_dlp_info_else_a_url_hash():
    key, canon, platform = video_key("https://vimeo.com/123456/?utm_source=x",
                                     {"extractor_key": "Vimeo", "id": "123456"})
    assert (key, canon, platform) == ("vimeo_123456", "https://vimeo.com/123456", "vimeo")
    # extractor keys map onto the platform names transcript file names use
    assert video_key("https://www.twitch.tv/videos/9", {"extractor_key": "TwitchVod",
                                                        "id": "v9"})[0] == "twitch_v9"
    # unsafe characters in an id never reach the file stem
    assert video_key("https://ex.org/a", {"extractor_key": "Odd", "id": "a/b c.d"})[0] == \
        "odd_a_b_c_d"
    # no info: a hash of the canonical URL, so two spellings of one URL agree
    a = video_key("HTTPS://Example.COM/media/clip.webm/#t=3")
    b = video_key("https://example.com/media/clip.webm?utm_campaign=x")
    assert a[0] == b[0] and re.fullmatch(r"url_[0-9a-f]{12}", a[0]) and a[2] is None
    assert a[1] == "https://example.com/media/clip.webm"
    assert video_key("https://example.com/media/other.webm")[0] != a[0]
    # generic extractors name videos after their file: not unique across sites
    assert video_key("https://a.org/clip.webm", {"extractor_key": "Generic", "id": "clip"})[0] \
        != video_key("https://b.org/clip.webm", {"extractor_key": "Generic", "id": "clip"})[0]


def test_canonical_url_keeps_meaningful_parameters():
    assert canonical_url("https://Example.com/v?id=3&utm_medium=x&fbclid=y&b=2#frag") == \
        "https://example.com/v?id=3&b=2"
    assert canonical_url("https://example.com/") == "https://example.com"
    # path case is significant on most sites
    assert canonical_url("https://example.com/Clip/") == "https://example.com/Clip"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://www.youtube.com/@DonutOperator", True),
    ("https://www.youtube.com/@DonutOperator/videos", True),
    ("https://youtube.com/@DonutOperator/shorts/", True),
    ("https://www.youtube.com/channel/UCabcdefghijklmnopqrstuv/streams", True),
    ("https://www.youtube.com/c/PoliceActivity", True),
    ("https://www.youtube.com/user/someone", True),
    ("https://www.youtube.com/playlist?list=PLabc123", True),
    ("https://www.tiktok.com/@cop.cam", True),
    ("https://www.youtube.com/watch?v=cZAxcoimdPg&list=PLabc123", False),  # a video
    ("https://www.youtube.com/@DonutOperator/live", False),
    ("https://www.youtube.com/playlist", False),
    ("https://www.tiktok.com/@cop.cam/video/7312345678901234567", False),
    ("https://example.com/@someone", False),
])
def test_is_collection(url, expected):
    assert is_collection(url) is expected


def test_caption_lines_split_at_speaker_marks():
    assert caption_lines("An officer walks up. >> Sir, license please. >>  \n>> Why?") == \
        ["An officer walks up.", "Sir, license please.", "Why?"]


# --- lists ------------------------------------------------------------------------------------

def test_csv_list_with_header_variants_and_a_row_without_url(tmp_path):
    path = tmp_path / "clips.csv"
    path.write_text(
        "Notes, Video URL ,Title,Channel,Duration,Date,Views\n"
        "first,https://youtu.be/cZAxcoimdPg?si=x,Stop one,Cam Co,12:34,2025-10-29,\"1,200\"\n"
        "no link here,,Missing,,,,\n"
        "bad,not a url,Bad,,,,\n"
        "third,https://www.tiktok.com/@u/video/7312345678901234567,,,,,\n",
        encoding="utf-8")
    read = read_list(path)
    assert read.url_column == "Video URL" and read.kind == "generic" and not read.complete
    assert [v.id for v in read.entries] == ["youtube_cZAxcoimdPg",
                                            "tiktok_7312345678901234567"]
    first = read.entries[0]
    assert first.url == YT and first.aliases == ("https://youtu.be/cZAxcoimdPg?si=x",)
    assert first.source == f"{path}:2" and read.entries[1].source == f"{path}:5"
    assert first.meta == {"title": "Stop one", "channel": "Cam Co", "duration_s": 754,
                          "upload_date": "20251029", "view_count": 1200}
    assert read.entries[1].meta == {}
    problems = [str(p) for p in read.problems]
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:3: ") and "'Video URL'" in problems[0]
    assert problems[1].startswith(f"{path}:4: ") and "not a url" in problems[1]


def test_csv_without_header_or_url_named_column(tmp_path):
    bare = tmp_path / "bare.csv"
    bare.write_text("https://youtu.be/cZAxcoimdPg\nhttps://x.com/a/status/1790000000000000000\n")
    read = read_list(bare)
    assert [v.id for v in read.entries] == ["youtube_cZAxcoimdPg",
                                            "twitter_1790000000000000000"]
    assert read.entries[0].source == f"{bare}:1" and read.problems == []
    # a header without a known URL name: the column whose values are URLs
    odd = tmp_path / "odd.csv"
    odd.write_text("name,where\nA,https://youtu.be/cZAxcoimdPg\n")
    assert [v.id for v in read_list(odd).entries] == ["youtube_cZAxcoimdPg"]


def test_url_column_prefers_a_column_of_urls_and_stronger_names(tmp_path):
    path = tmp_path / "l.csv"
    # "Video" holds titles, "Link" the URLs
    path.write_text("Video,Link,Duration\nTraffic stop in Ohio,https://youtu.be/cZAxcoimdPg,"
                    "12:34\nArrest,https://www.youtube.com/watch?v=aaaaaaaaaaa,1:00\n")
    read = read_list(path)
    assert read.url_column == "Link" and read.problems == []
    assert [v.id for v in read.entries] == ["youtube_cZAxcoimdPg", "youtube_aaaaaaaaaaa"]
    # both named like URL columns: the stronger name wins over "Video"
    path.write_text("Video,Video URL\nclip1.mp4,https://youtu.be/cZAxcoimdPg\n")
    assert read_list(path).url_column == "Video URL"
    # a strong name whose cells are not URLs loses to a weaker one whose cells are
    path.write_text("URL,Video\nsee below,https://youtu.be/cZAxcoimdPg\n")
    assert read_list(path).url_column == "Video"
    # "Video" of titles next to an unnamed column of URLs: the URLs
    path.write_text("Video,where\nStop,https://youtu.be/cZAxcoimdPg\n")
    assert read_list(path).url_column == "where"
    # no column holds URLs: the strongest name, its rows reported
    path.write_text("Video,Link\nStop,nowhere\n")
    read = read_list(path)
    assert read.url_column == "Link" and read.entries == [] and len(read.problems) == 1


def test_quoted_multiline_cells_keep_line_numbers(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('url,description\nhttps://youtu.be/cZAxcoimdPg,"two\nlines"\n,empty\n')
    read = read_list(path)
    assert read.entries[0].meta["description"] == "two\nlines"
    assert str(read.problems[0]).startswith(f"{path}:4: ")


def test_unreadable_lists_are_one_line_errors(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("url,title\nhttps://youtu.be/cZAxcoimdPg,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv: not UTF-8"):
        read_list(latin)
    nourl = tmp_path / "nourl.csv"
    nourl.write_text("title,views\nA,3\n")
    with pytest.raises(InputError, match=r"nourl\.csv:1: no URL column"):
        read_list(nourl)
    txt = tmp_path / "list.txt"
    txt.write_text("https://youtu.be/cZAxcoimdPg\n")
    with pytest.raises(InputError, match=r"expected a \.csv or \.xlsx"):
        read_list(txt)
    fake = tmp_path / "fake.xlsx"
    fake.write_text("not a zip")
    with pytest.raises(InputError, match=r"fake\.xlsx: not an Excel workbook"):
        read_list(fake)


def test_xlsx_list(tmp_path):
    import datetime as dt

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Link", "Title", "Uploader", "Duration (sec)", "Upload date"])
    ws.append(["https://www.facebook.com/watch/?v=1210753647087672", "FB stop", "Dept", 95.0,
               dt.datetime(2024, 5, 6)])
    ws.append([None, "no url", None, None, None])
    ws.append(["https://www.instagram.com/reel/C1a2B3c4D5e/", None, None, None, None])
    path = tmp_path / "videos.xlsx"
    wb.save(path)
    read = read_list(path)
    assert [v.id for v in read.entries] == ["facebook_1210753647087672",
                                            "instagram_C1a2B3c4D5e"]
    assert read.entries[0].meta == {"title": "FB stop", "uploader": "Dept", "duration_s": 95,
                                    "upload_date": "20240506"}
    assert read.entries[1].source == f"{path}:4"
    assert len(read.problems) == 1 and str(read.problems[0]).startswith(f"{path}:3: ")


DEESCALWILD_HEADER = ("id,Index,Title,URL,Uploader,Views,Upload Date,Duration (sec),"
                      "Description,Transcript,channel_name\n")


def test_deescalwild_list_is_recognised(tmp_path):
    path = tmp_path / "raw_youtube_video_list.csv"
    path.write_text(
        "\ufeff" + DEESCALWILD_HEADER
        + '7,8,Stop,https://www.youtube.com/watch?v=cZAxcoimdPg,Donut Operator,326254,20251029,'
          '2480,"Desc",">> Sir. >> Yes?",DonutOperator\n'
        + "9,10,Other,https://www.youtube.com/watch?v=HwDkHqmtfrI,Cam,5,20251027,848,,,Cam\n",
        encoding="utf-8")
    read = read_list(path)
    assert read.kind == "deescalwild" and read.complete
    first, second = read.entries
    assert first.meta == {"title": "Stop", "uploader": "Donut Operator",
                          "channel": "DonutOperator", "view_count": 326254,
                          "upload_date": "20251029", "duration_s": 2480,
                          "description": "Desc", "list_id": "7"}
    assert second.meta["list_id"] == "9" and "description" not in second.meta
    assert read.captions == {0: ">> Sir. >> Yes?"}
