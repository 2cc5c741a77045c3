"""`mambaner tag` and `mambaner fetch`: documents from files or PubMed, through the tagger, into one output."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from mambaner_cli.cli.common import INPUT_FORMATS, OUTPUT_FORMATS, cli, model_options, stderr_console


def pubmed_options(function: Callable) -> Callable:
    """Options that take documents from PubMed (NCBI E-utilities) instead of files."""
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
        function = option(function)
    return function


def fetch_settings(email: str | None, api_key: str | None, eutils_url: str | None, cache_dir: str | None,
                   retries: int):
    from pathlib import Path

    from mambaner_cli.fetch import FetchSettings

    return FetchSettings.from_env(email=email, api_key=api_key, base_url=eutils_url,
                                  cache_dir=Path(cache_dir) if cache_dir else None, max_retries=retries)


def fetch_progress(console, quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]fetching"), BarColumn(), MofNCompleteColumn(), TextColumn("PMIDs"),
                    TimeElapsedColumn(), console=console, transient=True, disable=quiet)


@cli.command()
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output", required=True, help="Output file, or - for standard output.")
@click.option("-f", "--format", "fmt", type=click.Choice(OUTPUT_FORMATS),
              help="Output format; default: from the output file's extension (jsonl for -).")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS),
              help="Input format; default: from each file's extension (text for -).")
@click.option("--lines", is_flag=True, help="Plain text: one document per line instead of per file.")
@model_options
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for the model (0: one per physical core).")
@pubmed_options
@click.option("--fail-fast", is_flag=True, help="Stop at the first bad input (no output is written).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
def tag(inputs: tuple[str, ...], output: str, fmt: str | None, input_format: str | None, lines: bool,
        model: str | None, batch_size: int, device: str, convention: str | None, threads: int, fail_fast: bool,
        quiet: bool,
        pmids: tuple[str, ...], pmid_file: str | None, query: str | None, max_results: int, email: str | None,
        api_key: str | None, eutils_url: str | None, cache_dir: str | None, missing_file: str | None,
        retries: int) -> None:
    """Tag INPUTS (files, directories, globs, or - for stdin) and write the mentions to OUTPUT.

    \b
    Inputs: PubMed XML (.xml, .xml.gz), plain text (.txt), PubTator (.pubtator, .PubTator.txt), BioC.
    Outputs: Parquet (.parquet), CoNLL (.conll), BioC XML (.bioc.xml), JSONL (.jsonl), PubTator.

    Or tag PubMed records fetched by PMID or query (NCBI E-utilities): --pmid, --pmid-file, --query.

    \b
    Examples:
      mambaner tag examples/*.xml -o out.parquet
      cat doc.txt | mambaner tag - -o - --format jsonl
      mambaner tag --pmid 9949209,10023456 -o out.bioc.xml --email you@example.org
    """
    import itertools

    from mambaner_cli.readers import expand_inputs, iter_documents
    from mambaner_cli.writers import detect_output_format

    from_pubmed = bool(pmids or pmid_file or query)
    if not inputs and not from_pubmed:
        raise click.UsageError("Give input files, directories, globs or - for stdin, or --pmid/--pmid-file/--query.")
    fmt = fmt or detect_output_format(output)
    items = iter_documents(expand_inputs(inputs), input_format=input_format, lines=lines) if inputs else iter(())
    if not from_pubmed:
        run_tagging(items, output, fmt, model, batch_size, device, fail_fast, quiet, threads=threads,
                    convention=convention)
        return
    from mambaner_cli.fetch import FetchReport
    from mambaner_cli.fetch.source import collect_pmids, pubmed_documents, report_failures

    console = stderr_console(quiet)
    settings = fetch_settings(email, api_key, eutils_url, cache_dir, retries)
    wanted = collect_pmids(pmids, pmid_file, query, max_results, settings, warn=lambda w: console.print(f"warning: {w}"))
    report = FetchReport()
    with fetch_progress(console, quiet) as progress:
        task = progress.add_task("fetch", total=len(wanted))
        fetched = pubmed_documents(wanted, settings, report,
                                   on_progress=lambda done, total: progress.update(task, completed=done, total=total))
        run_tagging(itertools.chain(items, fetched), output, fmt, model, batch_size, device, fail_fast, quiet,
                    extra_failures=lambda: report_failures(report, missing_file), threads=threads,
                    convention=convention)


def run_tagging(items, output: str, fmt: str, model: str | None, batch_size: int, device: str,
                fail_fast: bool, quiet: bool, extra_failures: Callable[[], list[str]] | None = None,
                threads: int = 0, convention: str | None = None) -> None:
    """Shared by `tag` for files and for PubMed fetches: progress, summary, exit status."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mambaner_cli.runtime.device import use_threads

    use_threads(threads)
    from mambaner_cli.runtime.run import tag_to_file
    from mambaner_cli.runtime.load import load_tagger

    console = stderr_console(quiet)
    tagger = load_tagger(model, device=device, convention=convention)
    progress = Progress(TextColumn("[bold]tagging"), BarColumn(bar_width=None),
                        TextColumn("{task.fields[docs]} documents, {task.fields[sents]} sentences, "
                                   "{task.fields[rate]:.0f} sentences/s"),
                        TimeElapsedColumn(), console=console, transient=True, disable=quiet)
    with progress:
        task = progress.add_task("tag", total=None, docs=0, sents=0, rate=0.0)

        def on_progress(summary) -> None:
            progress.update(task, docs=summary.documents, sents=summary.sentences,
                            rate=summary.sentences / max(summary.seconds, 1e-9))

        def on_error(error) -> None:
            progress.console.print(f"[red]error:[/red] {error}", markup=True, highlight=False) if not quiet \
                else click.echo(f"error: {error}", err=True)

        summary = tag_to_file(items, tagger, output, fmt, batch_size=batch_size, fail_fast=fail_fast,
                              on_error=on_error, on_progress=on_progress)
    failures = [str(e) for e in summary.errors] + (extra_failures() if extra_failures else [])
    if not quiet:
        rate = summary.sentences / max(summary.seconds, 1e-9)
        console.print(f"{summary.documents} documents, {summary.sentences} sentences, {summary.mentions} "
                      f"mentions in {summary.seconds:.1f} s ({rate:.0f} sentences/s) → {output}; model "
                      f"{tagger.label}", markup=False)
        if failures:
            console.print(f"[red]{len(failures)} problem(s)[/red] in {len(summary.failed_sources)} input(s):")
            for failure in failures:
                console.print(f"  {failure}", markup=False)
    if failures:
        sys.exit(1)


@cli.command()
@click.option("-o", "--output", required=True, help="PubMed XML file to write (.xml or .xml.gz), or -.")
@pubmed_options
@click.option("-q", "--quiet", is_flag=True)
def fetch(output: str, pmids: tuple[str, ...], pmid_file: str | None, query: str | None, max_results: int,
          email: str | None, api_key: str | None, eutils_url: str | None, cache_dir: str | None,
          missing_file: str | None, retries: int, quiet: bool) -> None:
    """Fetch PubMed records (by PMID or query) into one PubMed XML file, for later `mambaner tag` runs."""
    import gzip

    from mambaner_cli.fetch import FetchReport, fetch_batches, write_pubmed_xml
    from mambaner_cli.fetch.source import collect_pmids, report_failures
    from mambaner_cli.writers import atomic_output

    if not (pmids or pmid_file or query):
        raise click.UsageError("Give --pmid, --pmid-file or --query.")
    console = stderr_console(quiet)
    settings = fetch_settings(email, api_key, eutils_url, cache_dir, retries)
    wanted = collect_pmids(pmids, pmid_file, query, max_results, settings, warn=lambda w: console.print(f"warning: {w}"))
    report = FetchReport()
    with fetch_progress(console, quiet) as progress, atomic_output(output) as stream:
        task = progress.add_task("fetch", total=len(wanted))
        batches = fetch_batches(wanted, settings, report,
                                on_progress=lambda done, total: progress.update(task, completed=done, total=total))
        if output.endswith(".gz"):
            with gzip.GzipFile(fileobj=stream, mode="wb", mtime=0) as compressed:
                write_pubmed_xml(batches, compressed)
        else:
            write_pubmed_xml(batches, stream)
    failures = report_failures(report, missing_file)
    if not quiet:
        console.print(f"{report.summary()} → {output}", markup=False)
    if failures:
        sys.exit(1)


