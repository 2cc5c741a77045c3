"""`mambaner pubmed download`: NCBI's PubMed baseline and update files, md5-checked, resumable."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mambaner_cli.cli.common import Terminated, cli, sigterm_raises, stderr_console
from mambaner_cli.errors import MambanerUsageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from mambaner_cli.fetch.baseline import FileResult


@cli.group()
def pubmed() -> None:
    """PubMed's bulk files (the annual baseline and the daily updates)."""


class _ProgressObserver:
    """A rich progress display on stderr: one line counting files, one byte bar per file in flight.

    The workers call it from their threads; rich's Progress takes its own lock for every update."""

    def __init__(self, progress: Progress, total_files: int) -> None:
        self.progress = progress
        self.files = progress.add_task("files", total=total_files, kind="files")
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def started(self, name: str, offset: int, total: int | None) -> None:
        with self.lock:
            task = self.tasks.get(name)
            if task is None:
                self.tasks[name] = self.progress.add_task(name, total=total, completed=offset, kind="bytes")
            else:
                self.progress.update(task, total=total, completed=offset)

    def advanced(self, name: str, size: int) -> None:
        task = self.tasks.get(name)
        if task is not None:
            self.progress.advance(task, size)

    def restarted(self, name: str) -> None:
        task = self.tasks.get(name)
        if task is not None:
            self.progress.reset(task)

    def finished(self, result: FileResult) -> None:
        with self.lock:
            task = self.tasks.pop(result.name, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.files)
        if result.status == "failed":
            self.progress.console.print(f"[red]failed:[/red] {result.name}: {result.reason}", markup=True,
                                        highlight=False)


def _progress(console: Console, quiet: bool) -> Progress:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    class _Amount(DownloadColumn):
        """Bytes for a file's bar, "N/M" for the files line."""

        def render(self, task):  # type: ignore[no-untyped-def]
            if task.fields.get("kind") == "files":
                return MofNCompleteColumn().render(task)
            return super().render(task)

    class _Speed(TransferSpeedColumn):
        def render(self, task):  # type: ignore[no-untyped-def]
            return super().render(task) if task.fields.get("kind") == "bytes" else ""

    return Progress(TextColumn("{task.description}"), BarColumn(), _Amount(), _Speed(), TimeElapsedColumn(),
                    console=console, transient=True, disable=quiet)


def _file_names(values: tuple[str, ...]) -> list[str]:
    """``--files`` values, each one name or several separated by commas or spaces."""
    return [name for value in values for name in value.replace(",", " ").split()]


def _folder(value: str, option: str) -> Path:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise MambanerUsageError(f"{option} {value!r} is not a directory")
    return path


@pubmed.command()
@click.option("--baseline", "baseline", metavar="DIR", default=None,
              help="Download the annual baseline files (pubmed/baseline/) into DIR (made if missing).")
@click.option("--updates", "updates", metavar="DIR", default=None,
              help="Download the daily update files (pubmed/updatefiles/) into DIR (made if missing).")
@click.option("--limit", type=click.IntRange(1), default=None, metavar="N",
              help="Only the first N files of each listing, in name order.")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--files", "files", multiple=True, metavar="NAME",
              help="Only these files, e.g. pubmed25n0001.xml.gz: repeat the option, separate names with "
                   "commas, or list them after the options (--files a b c works too).")
@click.option("--connections", type=click.IntRange(1, 4), default=2, show_default=True,
              help="Files downloaded at the same time (NCBI asks for few connections).")
@click.option("--base-url", default=None, metavar="URL",
              help="Where the pubmed/ folder is served [default: $NCBI_PUBMED_FTP_URL, else "
                   "https://ftp.ncbi.nlm.nih.gov/pubmed/].")
@click.option("--retries", type=click.IntRange(0, 20), default=5, show_default=True,
              help="Retries of a request on timeouts, HTTP 429, 5xx and dropped connections (exponential "
                   "back-off; a connection that drops after sending data resumes at once).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr (failures still).")
def download(names: tuple[str, ...], baseline: str | None, updates: str | None, limit: int | None,
             files: tuple[str, ...],
             connections: int, base_url: str | None, retries: int, quiet: bool) -> None:
    """Download PubMed's baseline and/or update files, each checked against its published .md5.

    NAMEs, like --files, pick files by name (a name must be in a listing).

    Files already there with the right md5 are skipped; a file is written to NAME.part and renamed when
    its md5 matches, so an interrupted run leaves no half-written file, and the next run resumes the
    .part (HTTP Range) or starts it over. A file whose md5 does not match is downloaded once more, then
    reported as failed; the other files are still downloaded.

    Exit status: 0 all files there, 1 some file failed (the summary says why), 2 usage error,
    130 Ctrl-C, 143 SIGTERM.

    \b
    Examples:
      mambaner pubmed download --baseline pubmed/ --limit 10
      mambaner pubmed download --updates updates/ --files pubmed25n1275.xml.gz
    """
    from mambaner_cli.fetch.baseline import (
        DownloadReport,
        DownloadSettings,
        download_files,
        list_files,
        select,
    )

    if baseline is None and updates is None:
        raise MambanerUsageError("Give --baseline DIR and/or --updates DIR: where to put the files.")
    targets = {collection: _folder(value, f"--{collection}")
               for collection, value in (("baseline", baseline), ("updates", updates)) if value is not None}
    settings = DownloadSettings.from_env(base_url=base_url, connections=connections, max_retries=retries)
    wanted = list(dict.fromkeys(_file_names(files + names)))
    console = stderr_console(quiet)
    report = DownloadReport()
    with sigterm_raises():
        listings = {collection: list_files(settings, collection) for collection in targets}
        if wanted:
            unknown = [name for name in wanted if not any(name in listing for listing in listings.values())]
            if unknown:
                raise MambanerUsageError(f"--files: not in the {' or '.join(listings)} listing: "
                                         f"{', '.join(unknown)}")
        for collection, folder in targets.items():
            listing = listings[collection]
            subset = [name for name in wanted if name in listing]
            chosen = [] if wanted and not subset else select(listing, limit=limit, names=subset)
            if not quiet:
                console.print(f"{collection}: {len(chosen)} of {len(listing)} files → {folder}", markup=False)
            if not chosen:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            try:
                with _progress(console, quiet) as progress:
                    observer = _ProgressObserver(progress, len(chosen)) if not quiet else None
                    part = download_files(settings, collection, chosen, folder, observer=observer)
            except (KeyboardInterrupt, Terminated):
                with contextlib.suppress(Exception):
                    click.echo(f"Stopped: no file is half written; partial downloads stay as NAME.part in "
                               f"{folder} and the next run resumes them.", err=True)
                raise
            report.results.extend(part.results)
    lines = report.summary_lines()
    if not quiet:
        console.print(lines[0], markup=False)
    for line in lines[1:]:  # failures are shown even with --quiet: they explain exit status 1
        click.echo(line, err=True)
    if not report.ok:
        sys.exit(1)
