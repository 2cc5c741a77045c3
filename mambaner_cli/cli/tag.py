"""`mambaner tag` and `mambaner fetch`: documents from files or PubMed, through the tagger, into one output.

The commands only map options to values and draw progress: `tag` builds one
:class:`~mambaner_cli.runtime.run.TagOptions` and hands it to
:func:`~mambaner_cli.runtime.run.run_tag_job`. Format names, extensions and help come from the format
registry (:mod:`mambaner_cli.formats`), which is light enough to import here.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import click

from mambaner_cli.cli.common import cli, model_options, sigterm_raises, stderr_console
from mambaner_cli.formats import INPUT_FORMATS, OUTPUT_FORMATS, STDIN_FORMAT, STDOUT_FORMAT, FileFormat

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from mambaner_cli.errors import ReadError
    from mambaner_cli.fetch.source import PubmedOptions
    from mambaner_cli.runtime.pipeline import RunSummary
    from mambaner_cli.runtime.run import TagOptions


def pubmed_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options that take documents from PubMed (NCBI E-utilities) instead of files; the command receives
    them as one ``pubmed`` argument, a :class:`~mambaner_cli.fetch.source.PubmedOptions`."""

    @functools.wraps(function)
    def with_pubmed(*args: Any, pmids: tuple[str, ...], pmid_file: str | None, query: str | None,
                    max_results: int, email: str | None, api_key: str | None, eutils_url: str | None,
                    cache_dir: str | None, missing_file: str | None, retries: int, **kwargs: Any) -> Any:
        from mambaner_cli.fetch.source import PubmedOptions

        pubmed = PubmedOptions(pmid_lists=pmids, pmid_file=pmid_file, query=query, max_results=max_results,
                               email=email, api_key=api_key, eutils_url=eutils_url, cache_dir=cache_dir,
                               missing_file=missing_file, retries=retries)
        return function(*args, pubmed=pubmed, **kwargs)

    for option in reversed([
        click.option("--pmid", "pmids", multiple=True, metavar="LIST", help="PMIDs, comma-separated (repeatable)."),
        click.option("--pmid-file", type=click.Path(allow_dash=True), help="File of PMIDs (one a line, # comments)."),
        click.option("--query", help="PubMed query; its results are fetched (see --max)."),
        click.option("--max", "max_results", type=click.IntRange(1), default=10000, show_default=True,
                     help="At most this many results of --query."),
        click.option("--email", help="Your e-mail, sent to NCBI as they ask (default: $NCBI_EMAIL)."),
        click.option("--api-key", help="NCBI API key: 10 requests/s instead of 3 (default: $NCBI_API_KEY)."),
        click.option("--eutils-url", help="E-utilities base URL (default: $NCBI_EUTILS_URL, else NCBI's)."),
        click.option("--cache-dir", type=click.Path(file_okay=False),
                     help="Keep fetched XML here; reruns fetch only what is not cached."),
        click.option("--missing", "missing_file", type=click.Path(dir_okay=False),
                     help="Write PMIDs that could not be fetched to this file."),
        click.option("--retries", type=click.IntRange(0), default=5, show_default=True,
                     help="Retries of a request on timeouts, HTTP 429 and 5xx (exponential back-off)."),
    ]):
        with_pubmed = option(with_pubmed)
    return with_pubmed


def fetch_progress(console: Console, quiet: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]fetching"), BarColumn(), MofNCompleteColumn(), TextColumn("PMIDs"),
                    TimeElapsedColumn(), console=console, transient=True, disable=quiet)


class ConsoleObserver(contextlib.AbstractContextManager):
    """Progress bars, warnings and error lines on stderr; with --quiet only the error lines, plainly.

    A :class:`~mambaner_cli.runtime.run.TagObserver` by its methods (a Protocol), so that this module
    need not import the runtime, and with it lxml, when `mambaner --help` loads it. Use it in a ``with``
    block around the run and its summary: the fetch bar stays up until the block ends, so the summary
    is printed while it is still there, as `tag` has always shown it.
    """

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self._displays = contextlib.ExitStack()  # what stays on screen until the with block ends

    def __exit__(self, *exc_info: object) -> None:
        self._displays.close()

    def warning(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False)  # a glob's [ab] is not markup

    @contextlib.contextmanager
    def fetching(self, total: int) -> Iterator[Callable[[int, int], None]]:
        progress = self._displays.enter_context(fetch_progress(self.console, self.quiet))
        task = progress.add_task("fetch", total=total)
        yield lambda done, total: progress.update(task, completed=done, total=total)

    @contextlib.contextmanager
    def tagging(self) -> Iterator[Callable[[RunSummary], None]]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("[bold]tagging"), BarColumn(bar_width=None),
                            TextColumn("{task.fields[docs]} documents, {task.fields[sents]} sentences, "
                                       "{task.fields[rate]:.0f} sentences/s"),
                            TimeElapsedColumn(), console=self.console, transient=True, disable=self.quiet)
        with progress:
            task = progress.add_task("tag", total=None, docs=0, sents=0, rate=0.0)

            def on_progress(summary: RunSummary) -> None:
                progress.update(task, docs=summary.documents, sents=summary.sentences,
                                rate=summary.sentences / max(summary.seconds, 1e-9))

            yield on_progress

    def error(self, error: ReadError) -> None:
        if self.quiet:  # the console is silenced; errors still go to stderr, without colour
            click.echo(f"error: {error}", err=True)
        else:
            self.console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)


def formats_help(title: str, registry: Mapping[str, FileFormat]) -> str:
    """A help paragraph (kept as written: ``\\b``) with one line per format of ``registry``: its name, the
    extensions that pick it (and those where the content decides) and what it is."""
    lines = ["\b", title]
    for fmt in registry.values():
        extensions = ", ".join(fmt.named_extensions)
        if fmt.sniffed_extensions:
            extensions += f"; {', '.join(fmt.sniffed_extensions)} by content"
        lines.append(f"  {fmt.name} ({extensions}): {fmt.help}")
    return "\n".join(lines)


TAG_HELP = f"""Tag INPUTS (files, directories, globs, or - for stdin) and write the mentions to OUTPUT.

{formats_help(f"Inputs (--input-format; default: from each file's name, .gz too; {STDIN_FORMAT} for -):",
              INPUT_FORMATS)}

{formats_help(f"Outputs (--format; default: from the output file's extension; {STDOUT_FORMAT} for -):",
              OUTPUT_FORMATS)}

Or tag PubMed records fetched by PMID or query (NCBI E-utilities): --pmid, --pmid-file, --query.

The output appears only when the run completes (a temporary file beside it is renamed onto it); devices,
FIFOs and - are written as the run goes. Exit status: 0 done, 1 an input, document or PMID failed (or
the output could not be written), 2 usage error, 130 Ctrl-C, 143 SIGTERM.

\b
Examples:
  mambaner tag examples/*.xml -o out.parquet
  cat doc.txt | mambaner tag - -o - --format jsonl
  mambaner tag --pmid 9949209,10023456 -o out.bioc.xml --email you@example.org
"""


@cli.command(help=TAG_HELP)
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output", required=True,
              help=f"Output file, its extension picking the format "
                   f"({', '.join(fmt.extensions[0] for fmt in OUTPUT_FORMATS.values())}…), - for standard output, "
                   "or a directory (existing, or ending in /): one output per input, with a manifest.jsonl "
                   "that lets a rerun skip the inputs already done (default format there: parquet).")
@click.option("-f", "--format", "fmt", type=click.Choice(list(OUTPUT_FORMATS)),
              help=f"Output format; default: from the output file's extension ({STDOUT_FORMAT} for -).")
@click.option("--input-format", type=click.Choice(list(INPUT_FORMATS)),
              help=f"Input format; default: from each file's extension ({STDIN_FORMAT} for -).")
@click.option("--lines", is_flag=True, help="Plain text: one document per line instead of per file.")
@click.option("--encoding", default="utf-8", show_default=True, metavar="NAME",
              help="Encoding of inputs without a byte-order mark (XML: unless its declaration names one), "
                   "e.g. latin-1, cp1252, utf-16.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="strict: an input (with --lines, a line) that does not decode is an error; replace: "
                   "decode bad bytes as U+FFFD and tag the document.")
@model_options
@click.option("--types", "types", metavar="LIST",
              help="Keep only the mentions of these entity types, comma-separated (e.g. Disease,Chemical); each "
                   "must be a type the model tags. Default: every type the model tags.")
@click.option("--threads", type=click.IntRange(0), default=0,
              help="CPU threads of each tagging process (0: its share of the physical cores; in a single "
                   "process, one per physical core but one, which reads and writes).")
@pubmed_options
@click.option("--fail-fast", is_flag=True, help="Stop at the first bad input (no output is written).")
@click.option("--workers", type=click.IntRange(0), default=0,
              help="Processes that run the model, each with cores / N threads unless --threads is given "
                   "(0: one per physical core on a CPU, one on a GPU; 1: everything in this process). A "
                   "file output gets chunks of sentences tagged by all of them, in input order; a directory "
                   "output, whole input files.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="Directory output: run the inputs in this machine's processes (local, the default) or on "
                   "Ray actors (ray: an embedded local Ray, or the cluster of --ray-address; pip install "
                   "'mambaner[ray]').")
@click.option("--ray-address", metavar="ADDRESS",
              help="Directory output with Ray: join this running cluster (auto, or ray://host:10001) instead "
                   "of starting a local one; implies --engine ray.")
@click.option("--overwrite", is_flag=True,
              help="Directory output: re-tag every input, even those the manifest says are done, and accept "
                   "a directory tagged with another model or options.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
def tag(inputs: tuple[str, ...], output: str, fmt: str | None, input_format: str | None, lines: bool,
        encoding: str, encoding_errors: str, model: str | None, batch_size: int | None, device: str,
        network_only: bool, convention: str | None, types: str | None, threads: int, fail_fast: bool, workers: int, engine: str | None,
        ray_address: str | None, overwrite: bool, quiet: bool, pubmed: PubmedOptions) -> None:
    """`mambaner tag` (help: TAG_HELP, built from the format registry): every option into one TagOptions,
    one run over the files and the PubMed records, then the summary and the exit status."""
    from mambaner_cli.runtime.corpus import is_directory_output
    from mambaner_cli.runtime.device import default_batch_size
    from mambaner_cli.runtime.run import TagOptions, run_tag_job

    if ray_address is not None and engine == "local":
        raise click.UsageError("--ray-address joins a Ray cluster: it goes with --engine ray, not --engine local.")
    engine = engine or ("ray" if ray_address is not None else "local")
    kinds = tuple(kind.strip() for kind in (types or "").split(",") if kind.strip())
    if types is not None and not kinds:
        raise click.UsageError("--types names no type: give entity types, comma-separated (e.g. Disease,Chemical).")
    options = TagOptions(output=output, inputs=inputs, output_format=fmt, input_format=input_format, lines=lines,
                         model=model, batch_size=default_batch_size(device, batch_size), device=device, convention=convention,
                         rules=not network_only, types=kinds,
                         threads=threads, fail_fast=fail_fast, encoding=encoding, encoding_errors=encoding_errors,
                         quiet=quiet, pubmed=pubmed, workers=workers, overwrite=overwrite,
                         engine=engine, ray_address=ray_address)
    if not options.has_documents:
        raise click.UsageError("Give input files, directories, globs or - for stdin, or --pmid/--pmid-file/--query.")
    if is_directory_output(output):
        tag_corpus(options)
        return
    if overwrite or engine != "local":
        raise click.UsageError("--overwrite applies to a directory output (-o DIR/) only, as do --engine and "
                               "--ray-address.")
    console = stderr_console(quiet)
    with sigterm_raises(), ConsoleObserver(console, quiet) as observer:
        result = run_tag_job(options, observer)
        summary = result.summary
        if not quiet:
            rate = summary.sentences / max(summary.seconds, 1e-9)
            where = (f"nothing tagged, so {output} was left as it was" if result.output_kept
                     else f"→ {output}")
            console.print(f"{summary.documents} documents, {summary.sentences} sentences, {summary.mentions} "
                          f"mentions in {summary.seconds:.1f} s ({rate:.0f} sentences/s) {where}; model "
                          f"{result.model_label}", markup=False)
            if summary.warnings:  # each was printed as it came; they cost no document
                console.print(f"{len(summary.warnings)} warning(s) (no document lost)", markup=False)
            if result.problems:
                console.print(f"[red]{len(result.problems)} problem(s)[/red] in "
                              f"{len(summary.failed_sources)} input(s):")
                for problem in result.problems:
                    console.print(f"  {problem}", markup=False)
    if result.problems:
        sys.exit(1)


def tag_corpus(options: TagOptions) -> None:
    """`mambaner tag … -o DIR/`: one output per input (runtime/corpus.py), then a summary that covers every
    input, skipped ones included; exit status 1 when any input failed."""
    from mambaner_cli.runtime.corpus import run_corpus_job

    console = stderr_console(options.quiet)
    with sigterm_raises(), ConsoleObserver(console, options.quiet) as observer:
        result = run_corpus_job(options, observer)
        if not options.quiet:
            inputs = len(result.records)
            # skipped: done by an earlier run (the manifest's record matches); its counts are in the totals
            console.print(f"{inputs} input(s): {result.count('tagged')} tagged, {result.count('skipped')} skipped, "
                          f"{result.count('failed')} failed; "
                          f"{result.total('documents')} documents, {result.total('sentences')} sentences, "
                          f"{result.total('mentions')} mentions → {result.directory}/ (manifest.jsonl); model "
                          f"{result.model_label}", markup=False)
            if result.problems:
                console.print(f"[red]{len(result.problems)} problem(s)[/red] in {result.count('failed')} input(s):")
                for problem in result.problems:
                    console.print(f"  {problem}", markup=False)
    if result.problems:
        sys.exit(1)


@cli.command()
@click.option("-o", "--output", required=True, help="PubMed XML file to write (.xml or .xml.gz), or -.")
@pubmed_options
@click.option("-q", "--quiet", is_flag=True)
def fetch(output: str, quiet: bool, pubmed: PubmedOptions) -> None:
    """Fetch PubMed records (by PMID or query) into one PubMed XML file, for later `mambaner tag` runs."""
    import gzip

    from mambaner_cli.fetch import write_pubmed_xml
    from mambaner_cli.fetch.source import PubmedSource
    from mambaner_cli.writers import atomic_output

    if not pubmed.requested:
        raise click.UsageError("Give --pmid, --pmid-file or --query.")
    console = stderr_console(quiet)
    with sigterm_raises(), ConsoleObserver(console, quiet) as observer:
        source = PubmedSource(pubmed, warn=observer.warning)
        with observer.fetching(len(source.pmids)) as on_progress, atomic_output(output) as stream:
            batches = source.batches(on_progress=on_progress)
            if output.endswith(".gz"):
                with gzip.GzipFile(fileobj=stream, mode="wb", mtime=0) as compressed:
                    write_pubmed_xml(batches, compressed)
            else:
                write_pubmed_xml(batches, stream)
    failures = source.failures()
    if not quiet:
        console.print(f"{source.report.summary()} → {output}", markup=False)
    if failures:
        sys.exit(1)
