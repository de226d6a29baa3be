"""`deescalwild acquire add | run | status | retry | report`: thin wrappers over the manifest,
`add.add_sources`, `runner.run_stages` and `reporting.write_relevance_report`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from deescalwild.acquire.manifest import DEFAULT_MANIFEST
from deescalwild.acquire.tasks import DEFAULT_RULE, STAGES, STATUSES

manifest_option = click.option(
    "--manifest", "manifest_path", type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_MANIFEST, show_default=True,
    help="The acquisition manifest (SQLite); created on first use.")
workdir_option = click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path),
    help="Where stage files go (default: acquire-work/ beside the manifest).")


def _console(stderr: bool = True):
    from rich.console import Console

    return Console(stderr=stderr)


def _open(path: Path):
    from deescalwild.acquire.manifest import Manifest

    return Manifest(path)


def _workdir(manifest_path: Path, workdir: Path | None) -> Path:
    return (workdir or manifest_path.parent / "acquire-work").resolve()


@click.group("acquire")
def acquire_group() -> None:
    """From videos to transcripts: add sources, run the stages, see where they stand
    (docs/acquisition.md). Stages: metadata, audio, transcribe, diarize, relevance, export."""


@acquire_group.command("add")
@click.argument("inputs", nargs=-1, required=True)
@manifest_option
@workdir_option
@click.option("--transcripts", "transcripts", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of existing DeEscalWild transcripts (youtube_<id>.csv ...) to attach "
                   "as finished diarization; repeatable.")
@click.option("--expand", is_flag=True,
              help="Expand every URL as a collection through yt-dlp (YouTube channels and "
                   "playlists are always expanded).")
@click.option("--allow-file-urls", is_flag=True, help="Let yt-dlp read file:// URLs.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def add_cmd(inputs: tuple[str, ...], manifest_path: Path, workdir: Path | None,
            transcripts: tuple[Path, ...], expand: bool, allow_file_urls: bool,
            as_json: bool) -> None:
    """Add videos: YouTube video, channel and playlist URLs, any URL yt-dlp supports, and
    CSV/XLSX lists of URLs (the DeEscalWild list's metadata and captions are used as is).
    Duplicates are recognised; adding the same input twice changes nothing."""
    from deescalwild.acquire.add import add_sources
    from deescalwild.acquire.tasks import Settings
    from deescalwild.progress import ProgressBar

    wd = _workdir(manifest_path, workdir)
    settings = Settings(workdir=str(wd), out_dir=str(wd), allow_file_urls=allow_file_urls)
    console = _console()
    with _open(manifest_path) as manifest, ProgressBar(console, "adding") as progress:
        manifest.acquire()  # add writes stage rows and files: not while a run owns them
        summary = add_sources(manifest, list(inputs), workdir=wd, settings=settings,
                              transcripts=list(transcripts), expand=expand, progress=progress)
        status = manifest.status()
    data = summary.to_dict()
    if as_json:
        click.echo(json.dumps({**data, "manifest": status}, indent=2))
        return
    console.print(_add_line(data))
    for example in data["duplicate_examples"][:5] if data["added"] else []:
        console.print(f"duplicate: {example}")
    for p in data["problems"][:20]:
        console.print(f"[yellow]skipped[/] {p}")
    if len(data["problems"]) > 20:
        console.print(f"... and {len(data['problems']) - 20} more problems (--json lists all)")
    console.print(f"{status['videos']:,} videos in {manifest_path}")


def _add_line(d: dict[str, Any]) -> str:
    parts = [f"[bold]{d['added']:,}[/] added", f"{d['duplicates']:,} duplicates"]
    for key, what in (("metadata_from_list", "with metadata from the list"),
                      ("captions_attached", "caption transcripts"),
                      ("transcripts_attached", "transcripts attached"),
                      ("transcripts_unmatched", "transcripts matching no video")):
        if d.get(key):
            parts.append(f"{d[key]:,} {what}")
    if d.get("expanded"):
        parts.append(f"{len(d['expanded']):,} collections expanded")
    if d.get("problems"):
        parts.append(f"[yellow]{len(d['problems']):,} problems[/]")
    return ", ".join(parts)


@acquire_group.command("status")
@manifest_option
@click.option("--json", "as_json", is_flag=True,
              help="JSON: videos, and per stage the count of each status.")
@click.option("--failed", "show_failed", is_flag=True, help="Also list failed stages and why.")
def status_cmd(manifest_path: Path, as_json: bool, show_failed: bool) -> None:
    """Counts per stage and status."""
    if not manifest_path.exists():
        raise click.BadParameter(f"{manifest_path} does not exist (run `acquire add` first)",
                                 param_hint="--manifest")
    from rich.table import Table

    with _open(manifest_path) as manifest:
        status = manifest.status()
        failed = manifest.stage_rows(status="failed") if show_failed else []
    if as_json:
        if show_failed:
            status["failed"] = [{"id": r.video_id, "stage": r.stage, "attempts": r.attempts,
                                 "retryable": r.retryable, "error": r.last_error}
                                for r in failed]
        click.echo(json.dumps(status, indent=2))
        return
    table = Table(title=f"{status['videos']:,} videos", box=None)
    table.add_column("stage")
    for s in STATUSES:
        table.add_column(s, justify="right")
    for stage in STAGES:
        counts = status["stages"][stage]
        table.add_row(stage, *(f"{counts[s]:,}" if counts[s] else "·" for s in STATUSES))
    console = _console(stderr=False)
    console.print(table)
    for r in failed:
        kind = "retryable" if r.retryable else "needs a change"
        console.print(f"[red]{r.stage}[/] {r.video_id} (attempt {r.attempts}, {kind}): "
                      f"{r.last_error}")


@acquire_group.command("retry")
@manifest_option
@click.option("--stage", type=click.Choice(STAGES), help="Only this stage (and, without "
              "--failed, every stage after it).")
@click.option("--failed", is_flag=True, help="Only failed stages (the default without --stage).")
def retry_cmd(manifest_path: Path, stage: str | None, failed: bool) -> None:
    """Queue stages again for the next `acquire run`: failed ones, or with --stage S alone
    every video's S and later stages (to redo them with new settings)."""
    if not manifest_path.exists():
        raise click.BadParameter(f"{manifest_path} does not exist", param_hint="--manifest")
    with _open(manifest_path) as manifest:
        manifest.acquire()  # not while a run owns the rows
        n = manifest.retry(stage, failed_only=failed or stage is None)
    click.echo(f"{n:,} stages queued again")


@acquire_group.command("run")
@manifest_option
@workdir_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where accepted transcripts are exported (default: acquired/ beside the "
                   "manifest).")
@click.option("--stages", "stage_list", multiple=True,
              help=f"Stages to run, comma-separated or repeated (default: all: "
                   f"{','.join(STAGES)}).")
@click.option("--workers", type=click.IntRange(1), help="Stages in parallel (default: CPUs; "
              "with Ray: the cluster's CPUs).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="At most R network stage starts per second, across workers.")
@click.option("--executor", type=click.Choice(["local", "ray", "inline"]), default="local",
              show_default=True, help="local process pool, a Ray cluster, or this process "
              "(debugging).")
@click.option("--ray-address", help="Ray cluster to join (e.g. auto, ray://head:10001); "
              "default: start a local Ray instance.")
@click.option("--max-duration", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="Seconds: longer videos are skipped, audio is cut at this length.")
@click.option("--transcriber", type=click.Choice(["whisper", "captions"]), default="whisper",
              show_default=True, help="faster-whisper on the audio, or the platform's captions.")
@click.option("--caption-languages", default="en,en-US,en-GB,en-orig", show_default=True,
              help="Caption languages to use, in order of preference (--transcriber captions).")
@click.option("--whisper-model", default="large-v3", show_default=True,
              help="faster-whisper model name or local CTranslate2 folder.")
@click.option("--compute-type", default="default", show_default=True,
              help="CTranslate2 compute type (int8, float16, ...).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--language", default="en", show_default=True,
              help="Spoken language ('auto' to detect).")
@click.option("--no-vad", is_flag=True, help="Transcribe without voice activity detection.")
@click.option("--diarizer", type=click.Choice(["gemini", "local", "pyannote"]), default="gemini",
              show_default=True, help="gemini: audio in, speakers out (the paper's method); "
              "local: LLM attribution of whisper segments; pyannote: pyannote.audio turns.")
@click.option("--gemini-model", default="gemini-2.5-flash", show_default=True)
@click.option("--gemini-base-url", help="Gemini API root (proxies, tests).")
@click.option("--attribution", help="Responder spec that attributes speakers for --diarizer "
              "local/pyannote.")
@click.option("--judge", help="Responder spec that scores relevance (e.g. openai:gpt-4o-mini).")
@click.option("--rule", default=DEFAULT_RULE, show_default=True,
              help="Selection rule over the taxonomy's group counts and features.")
@click.option("--max-chars", type=click.IntRange(1000), default=24000, show_default=True,
              help="Transcript characters the judge reads (head and tail kept).")
@click.option("--max-retries", type=click.IntRange(0), default=5, show_default=True,
              help="Retries per request on 429/5xx/timeouts (exponential backoff, jitter).")
@click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds per request.")
@click.option("--allow-file-urls", is_flag=True, help="Let yt-dlp read file:// URLs.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the relevance report goes (default: acquire-report/ beside the "
                   "manifest).")
def run_cmd(manifest_path: Path, workdir: Path | None, out_dir: Path | None,
            stage_list: tuple[str, ...], workers: int | None, rate: float | None,
            executor: str, ray_address: str | None, max_duration: float, transcriber: str,
            caption_languages: str, whisper_model: str, compute_type: str, device: str,
            language: str, no_vad: bool,
            diarizer: str, gemini_model: str, gemini_base_url: str | None,
            attribution: str | None, judge: str | None, rule: str, max_chars: int,
            max_retries: int, timeout: float, allow_file_urls: bool,
            report_dir: Path | None) -> None:
    """Run the pending stages of every video. Safe to stop at any moment (Ctrl-C, kill -9)
    and rerun: finished stages are not redone, interrupted ones start again."""
    from deescalwild.acquire.relevance.rule import compile_rule
    from deescalwild.acquire.reporting import write_relevance_report
    from deescalwild.acquire.runner import run_stages
    from deescalwild.acquire.tasks import Settings

    stages = [s.strip() for item in stage_list for s in item.split(",") if s.strip()] or STAGES
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise click.BadParameter(f"unknown stage {bad[0]!r}; expected some of "
                                 f"{', '.join(STAGES)}", param_hint="--stages")
    compile_rule(rule)  # a typo in the rule fails now, not after an hour of transcription
    if not manifest_path.exists():
        raise click.BadParameter(f"{manifest_path} does not exist (run `acquire add` first)",
                                 param_hint="--manifest")
    base = manifest_path.parent
    settings = Settings(
        workdir=str(_workdir(manifest_path, workdir)),
        out_dir=str((out_dir or base / "acquired").resolve()),
        max_duration_s=max_duration, allow_file_urls=allow_file_urls,
        transcriber=transcriber,
        caption_languages=tuple(x.strip() for x in caption_languages.split(",") if x.strip()),
        whisper_model=whisper_model, whisper_device=device,
        compute_type=compute_type, language=None if language == "auto" else language,
        vad=not no_vad, diarizer=diarizer, gemini_model=gemini_model,
        gemini_base_url=gemini_base_url, attribution=attribution, judge=judge, rule=rule,
        max_chars=max_chars, max_retries=max_retries, timeout_s=timeout)
    console = _console()
    command = "deescalwild " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with _open(manifest_path) as manifest:
        with _RunProgress(console) as progress:
            summary = run_stages(manifest, settings, stages=stages, executor=executor,
                                 workers=workers, address=ray_address, rate=rate,
                                 progress=progress, command=command)
        _print_run(console, summary.to_dict())
        if "relevance" in stages:
            paths = write_relevance_report(manifest, report_dir or base / "acquire-report")
            console.print("relevance report: " + ", ".join(str(p) for p in paths))


class _RunProgress:
    """A bar with the stage and video just finished; silent when stderr is not a terminal."""

    def __init__(self, console) -> None:
        self.console, self.bar = console, None

    def __enter__(self):
        if not self.console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[last]}"), console=self.console,
                            transient=True)
        self.bar.start()
        task = self.bar.add_task("acquiring", total=None, last="")
        return lambda done, total, last: self.bar.update(task, completed=done, total=total,
                                                         last=last)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_run(console, d: dict[str, Any]) -> None:
    if d["recovered"]:
        console.print(f"{d['recovered']} stages left running by a stopped run were started again")
    for stage in STAGES:
        o = d["outcomes"].get(stage)
        if o:
            console.print(f"{stage:>10}: " + ", ".join(f"{n:,} {k}" for k, n in o.items() if n))
    for f in d["failures"][:10]:
        console.print(f"[red]failed[/] {f['stage']} {f['id']}: {f['error']}")
    console.print(f"run {d['run_id']} {d['status']} in {d['seconds']:.1f} s "
                  "(`deescalwild acquire status` for the totals)")


@acquire_group.command("report")
@manifest_option
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for relevance-report.{md,json,csv} (default: acquire-report/ "
                   "beside the manifest).")
@click.option("--rule", help="Re-apply another selection rule to the stored judgements (no "
              "judge is called; the export is not changed).")
def report_cmd(manifest_path: Path, out_dir: Path | None, rule: str | None) -> None:
    """Write the relevance report: accepted and rejected videos, each with the reason."""
    from deescalwild.acquire.reporting import write_relevance_report

    if not manifest_path.exists():
        raise click.BadParameter(f"{manifest_path} does not exist", param_hint="--manifest")
    with _open(manifest_path) as manifest:
        paths = write_relevance_report(manifest, out_dir or manifest_path.parent
                                       / "acquire-report", rule=rule)
    for p in paths:
        click.echo(str(p))

