"""`acquire add`: lists, URLs, duplicates, captions and transcripts already published, and
channel/page expansion through yt-dlp against a local HTTP server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import needs_real_data, real_data
from media_fixtures import serve_dir

from deescalwild.acquire.add import add_sources
from deescalwild.acquire.formats import read_segments
from deescalwild.acquire.manifest import Manifest
from deescalwild.acquire.tasks import Settings, file_hash
from deescalwild.errors import InputError

HEADER = ("id,Index,Title,URL,Uploader,Views,Upload Date,Duration (sec),Description,"
          "Transcript,channel_name\n")
ROWS = [
    '0,1,Pizza Pirates,https://www.youtube.com/watch?v=cZAxcoimdPg,Donut Operator,326254,'
    '20251029,2480,Sponsored,,DonutOperator\n',
    '1,2,Teen reports man,https://www.youtube.com/watch?v=HwDkHqmtfrI,Police Activity,702420,'
    '20251027,848,A 12-year-old girl,"An officer arrives. >> I cannot prove intent. >> Yeah.",'
    'PoliceActivity\n',
    # the same video as row 1, spelled differently
    '2,3,Pizza Pirates again,https://youtu.be/cZAxcoimdPg?si=abc,Donut Operator,1,20251029,'
    '2480,,,DonutOperator\n',
    '3,4,No duration,https://www.youtube.com/watch?v=IuPuAcccvnw,Cam,5,20251001,,,,Cam\n',
]


@pytest.fixture
def setup(tmp_path):
    lst = tmp_path / "raw_youtube_video_list.csv"
    lst.write_text(HEADER + "".join(ROWS), encoding="utf-8")
    manifest = Manifest(tmp_path / "acq" / "m.db")
    yield tmp_path, lst, manifest
    manifest.close()


def _files(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_deescalwild_list_metadata_captions_and_duplicates(setup):
    tmp, lst, m = setup
    work = tmp / "acq" / "work"
    seen = []
    s = add_sources(m, [str(lst)], workdir=work, progress=lambda d, t: seen.append((d, t)))
    assert (s.added, s.duplicates, s.problems) == (3, 1, [])
    assert s.duplicate_examples == [f"youtube_cZAxcoimdPg ({lst}:4) = already from {lst}:2"]
    assert seen[-1] == (4, 4) and len(seen) == 4
    # complete list metadata: the metadata stage is done, without the network
    assert s.metadata_from_list == 2
    stages = m.stages_of("youtube_cZAxcoimdPg")
    assert stages["metadata"].status == "done"
    assert stages["metadata"].detail == {"source": "list"}
    # a row without a duration still needs the metadata stage (audio reads the duration)
    assert m.stages_of("youtube_IuPuAcccvnw")["metadata"].status == "pending"
    video = m.video("youtube_cZAxcoimdPg")
    assert video.meta["list_id"] == "0" and video.meta["duration_s"] == 2480
    assert video.url == "https://www.youtube.com/watch?v=cZAxcoimdPg"
    assert m.video_for_url("https://youtu.be/cZAxcoimdPg?si=abc") == "youtube_cZAxcoimdPg"
    # the caption cell became the transcribe stage's output
    assert s.captions_attached == 1
    tr = m.stages_of("youtube_HwDkHqmtfrI")["transcribe"]
    assert tr.status == "done" and tr.detail["source"] == "list"
    assert tr.outputs["json"]["path"] == "work/transcribe/youtube_HwDkHqmtfrI.json"
    path = tmp / "acq" / tr.outputs["json"]["path"]
    assert tr.outputs["json"]["sha256"] == file_hash(path)["sha256"]
    transcript = read_segments(path)
    assert transcript.source == "list"
    assert [seg.text for seg in transcript.segments] == [
        "An officer arrives.", "I cannot prove intent.", "Yeah."]
    assert m.stages_of("youtube_cZAxcoimdPg")["transcribe"].status == "pending"


def test_add_again_is_idempotent(setup):
    tmp, lst, m = setup
    work = tmp / "acq" / "work"
    add_sources(m, [str(lst)], workdir=work)
    before_counts, before_files = m.counts(), _files(tmp)
    before_meta = {v.id: v.meta for v in m.videos()}
    again = add_sources(m, [str(lst)], workdir=work)
    assert (again.added, again.duplicates, again.captions_attached) == (0, 4, 0)
    assert m.counts() == before_counts
    assert {v.id: v.meta for v in m.videos()} == before_meta
    after = _files(tmp)
    assert {k for k in after if "/work/" in k} == {k for k in before_files if "/work/" in k}
    assert all(after[k] == before_files[k] for k in before_files if "/work/" in k)


def test_duplicates_across_a_list_and_a_url(setup):
    tmp, lst, m = setup
    first = add_sources(m, ["https://youtu.be/HwDkHqmtfrI?t=3",
                            "https://www.tiktok.com/@u/video/7312345678901234567"],
                        workdir=tmp / "w")
    assert first.added == 2
    second = add_sources(m, [str(lst), "https://www.tiktok.com/@u/video/7312345678901234567"
                             "?is_from_webapp=1"], workdir=tmp / "w")
    assert (second.added, second.duplicates) == (2, 3)
    assert any(e.startswith(f"youtube_HwDkHqmtfrI ({lst}:3) = already from "
                            "https://youtu.be/HwDkHqmtfrI?t=3") for e in second.duplicate_examples)
    # a duplicate gets metadata it lacked, nothing else: the list's captions are not attached
    row = m.video("youtube_HwDkHqmtfrI")
    assert row.meta["title"] == "Teen reports man" and row.source.startswith("https://youtu.be")
    assert m.stages_of("youtube_HwDkHqmtfrI")["transcribe"].status == "pending"
    assert not (tmp / "w" / "transcribe" / "youtube_HwDkHqmtfrI.json").exists()
    assert len(m.videos()) == 4


def test_attach_published_transcripts(setup, tmp_path):
    tmp, lst, m = setup
    pub = tmp_path / "published" / "train"
    pub.mkdir(parents=True)
    body = "start_time,speaker_label,transcript\n00:00,Officer,Hello\n"
    (pub / "youtube_1.csv").write_text(body)  # list id 1 -> HwDkHqmtfrI
    (pub / "tiktok_7312345678901234567.csv").write_text(body)  # by key
    (pub / "facebook_999.csv").write_text(body)  # no such video
    (pub / "youtube_3.csv").write_text("time,who,what\n")  # list id 3, but not a transcript
    add_sources(m, ["https://www.tiktok.com/@u/video/7312345678901234567"], workdir=tmp / "w")
    s = add_sources(m, [str(lst)], workdir=tmp / "w", transcripts=[tmp_path / "published"])
    assert s.transcripts_attached == 2 and s.transcripts_unmatched == 1
    assert s.unmatched_examples == [str(pub / "facebook_999.csv")]
    assert s.problems == [f"{pub / 'youtube_3.csv'}:1: expected the header "
                          "start_time,speaker_label,transcript; not attached"]
    st = m.stages_of("youtube_HwDkHqmtfrI")
    assert st["diarize"].status == "done"
    assert st["diarize"].detail == {"source": "attached", "file": "youtube_1.csv"}
    assert st["diarize"].outputs["csv"]["path"] == str(pub / "youtube_1.csv")  # outside: absolute
    assert st["diarize"].outputs["csv"]["sha256"] == file_hash(pub / "youtube_1.csv")["sha256"]
    assert st["audio"].status == "skipped" and st["audio"].last_error == "transcript attached"
    assert st["transcribe"].status == "done"  # the list's captions stay
    tk = m.stages_of("tiktok_7312345678901234567")
    assert tk["diarize"].status == "done" and tk["transcribe"].status == "skipped"
    assert m.stages_of("youtube_IuPuAcccvnw")["diarize"].status == "pending"
    again = add_sources(m, [], workdir=tmp / "w", transcripts=[tmp_path / "published"])
    assert again.transcripts_attached == 0  # already attached: left alone


def test_bad_inputs_raise_before_anything_is_added(setup):
    tmp, lst, m = setup
    (tmp / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"notes\.txt: expected a \.csv or \.xlsx"):
        add_sources(m, [str(lst), str(tmp / "notes.txt")], workdir=tmp / "w")
    with pytest.raises(InputError, match=r"cZAxcoimdPg: expected a video/channel/playlist URL "
                       r"or a \.csv/\.xlsx list"):
        add_sources(m, [str(lst), "cZAxcoimdPg"], workdir=tmp / "w")
    with pytest.raises(InputError, match="no such folder"):
        add_sources(m, [str(lst)], workdir=tmp / "w", transcripts=[tmp / "missing"])
    assert m.counts()["videos"] == 0


def test_expand_a_page_with_two_videos(setup):
    tmp, _, m = setup
    site = tmp / "site"
    site.mkdir()
    (site / "a.webm").write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 64)
    (site / "b.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 64)
    (site / "two.html").write_text(
        "<!doctype html><html><head><title>Two stops</title></head><body>"
        '<video src="a.webm"></video><p>and</p><video src="b.mp4"></video></body></html>')
    settings = Settings(workdir=str(tmp / "w"), out_dir=str(tmp / "out"), max_retries=0)
    with serve_dir(site) as base:
        page = f"{base}/two.html"
        plain = add_sources(m, [page], workdir=tmp / "w", settings=settings)
        assert plain.added == 1 and plain.expanded == []  # not a known collection: one video
        m2 = Manifest(tmp / "m2.db")
        s = add_sources(m2, [page], workdir=tmp / "w", settings=settings, expand=True)
        assert s.expanded == [{"url": page, "videos": 2}] and s.added == 2
        rows = m2.videos()
        assert sorted(v.url for v in rows) == [f"{base}/a.webm", f"{base}/b.mp4"]
        assert sorted(v.source for v in rows) == [f"{page}#1", f"{page}#2"]
        assert sorted(v.meta["title"] for v in rows) == ["Two stops (1)", "Two stops (2)"]
        assert len({v.id for v in rows}) == 2
        again = add_sources(m2, [page], workdir=tmp / "w", settings=settings, expand=True)
        assert (again.added, again.duplicates) == (0, 2)
        # a page that cannot be listed is a problem, not a crash
        bad = add_sources(m2, [f"{base}/gone.html"], workdir=tmp / "w", settings=settings,
                          expand=True)
        assert bad.added == 0 and len(bad.problems) == 1
        assert bad.problems[0].startswith(f"{base}/gone.html: could not list the videos of "
                                          f"{base}/gone.html: ")
        assert "404" in bad.problems[0]
        m2.close()


@pytest.mark.realdata
@needs_real_data
def test_real_deescalwild_list(tmp_path):
    data = real_data()
    m = Manifest(tmp_path / "m.db")
    t0 = time.perf_counter()
    s = add_sources(m, [str(data / "raw_youtube_video_list.csv")], workdir=tmp_path / "work",
                    transcripts=[data / "train", data / "test"])
    seconds = time.perf_counter() - t0
    print(f"add of the DeEscalWild list + transcripts: {seconds:.1f} s")
    assert (s.added, s.duplicates, s.problems) == (2805, 0, [])
    assert s.metadata_from_list == 2805
    assert s.captions_attached == 238 and s.transcripts_attached == 866
    assert s.transcripts_unmatched == 281  # the TikTok and Facebook transcripts: not in the list
    counts = m.counts()["stages"]
    assert counts["transcribe"]["done"] == 238 and counts["diarize"]["done"] == 866
    assert seconds < 30
    m.close()


def test_channel_tabs_are_followed(setup, monkeypatch):
    """A YouTube channel's flat extraction lists its tabs, each a playlist of videos (the
    shapes below are yt-dlp's, trimmed); a video in two tabs is one video. The network is
    replaced here only: the real flat extraction is exercised by the page test above."""
    tmp, _, m = setup
    chan = "https://www.youtube.com/@SomeDept"
    tabs = {
        chan: {"_type": "playlist", "id": "UCx", "title": "SomeDept", "entries": [
            {"_type": "url", "ie_key": "YoutubeTab", "url": f"{chan}/videos"},
            {"_type": "url", "ie_key": "YoutubeTab", "url": f"{chan}/shorts"}]},
        f"{chan}/videos": {"_type": "playlist", "entries": [
            {"_type": "url", "ie_key": "Youtube", "id": "cZAxcoimdPg", "title": "Stop",
             "url": "https://www.youtube.com/watch?v=cZAxcoimdPg", "duration": 2480.0,
             "channel": "SomeDept", "view_count": 9}]},
        f"{chan}/shorts": {"_type": "playlist", "entries": [
            {"_type": "url", "ie_key": "Youtube", "id": "HwDkHqmtfrI",
             "url": "https://www.youtube.com/shorts/HwDkHqmtfrI", "title": "Short"},
            {"_type": "url", "ie_key": "Youtube", "id": "cZAxcoimdPg",
             "url": "https://www.youtube.com/shorts/cZAxcoimdPg"}]},
    }
    calls = []

    def flat(url, settings, *, flat=False, **kw):
        calls.append((url, flat))
        return tabs[url]

    monkeypatch.setattr("deescalwild.acquire.ytdlp.extract_info", flat)
    lst = tmp / "channels.csv"
    lst.write_text(f"url\n{chan}\n")
    s = add_sources(m, [str(lst)], workdir=tmp / "w")
    assert calls == [(chan, True), (f"{chan}/videos", True), (f"{chan}/shorts", True)]
    assert s.expanded == [{"url": chan, "videos": 3}]
    assert (s.added, s.duplicates) == (2, 1)
    row = m.video("youtube_cZAxcoimdPg")
    assert row.source == f"{chan}#1" and row.platform == "youtube"
    assert row.meta == {"title": "Stop", "channel": "SomeDept", "duration_s": 2480.0,
                        "extractor": "Youtube", "view_count": 9}
    assert m.video("youtube_HwDkHqmtfrI").url == "https://www.youtube.com/watch?v=HwDkHqmtfrI"


def test_rerun_finishes_an_add_that_stopped_midway(setup):
    """An `add` killed after inserting a row but before recording the list's metadata and
    captions: the same `add` again finishes the row (and only rows of the same input line)."""
    tmp, lst, m = setup
    from deescalwild.acquire.sources import read_list

    read = read_list(lst)
    m.add_video(read.entries[1])  # the row with captions, as the killed run left it
    s = add_sources(m, [str(lst)], workdir=tmp / "acq" / "work")
    assert (s.added, s.duplicates) == (2, 2)
    assert s.metadata_from_list == 2 and s.captions_attached == 1
    stages = m.stages_of("youtube_HwDkHqmtfrI")
    assert stages["metadata"].status == "done" and stages["transcribe"].status == "done"
    again = add_sources(m, [str(lst)], workdir=tmp / "acq" / "work")
    assert (again.metadata_from_list, again.captions_attached) == (0, 0)
