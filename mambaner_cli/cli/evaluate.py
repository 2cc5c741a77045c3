"""`mambaner evaluate`: the benchmark of a model on a corpus split."""

from __future__ import annotations

import click

from mambaner_cli.cli.common import cli, model_options, stderr_console
from mambaner_cli.corpora import CORPORA


@cli.command()
@click.option("--dataset", default="ncbi", show_default=True, metavar="NAME",
              help=f"Benchmark corpus: {', '.join(CORPORA)}.")
@click.option("--split", type=click.Choice(["test", "devel", "train"]), default="test", show_default=True)
@click.option("--conll", type=click.Path(exists=True, dir_okay=False),
              help="Evaluate on this gold CoNLL file instead of a benchmark split.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Corpus folder. Default: $MAMBANER_DATA if set, else ~/.cache/mambaner/data "
                   "($XDG_CACHE_HOME/mambaner/data), where `python -m mambaner_cli.corpora download` puts them.")
@model_options
@click.option("--no-documents", is_flag=True, help="Skip the document-level (full pipeline) evaluation.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every number to this file.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a Markdown report to this file.")
@click.option("--threads", type=click.IntRange(0), default=0, help="CPU threads for the model (0: one per physical core).")
@click.option("-q", "--quiet", is_flag=True)
def evaluate(dataset: str, split: str, conll: str | None, data_dir: str | None, model: str | None,
             batch_size: int | None, device: str, network_only: bool, convention: str | None, no_documents: bool, json_path: str | None, report: str | None,
             threads: int, quiet: bool) -> None:
    """Benchmark a model: strict entity-level F1 on a standard split, and the full pipeline on documents."""
    from mambaner_cli.runtime.device import default_batch_size, use_threads

    use_threads(threads)  # before torch is imported
    batch_size = default_batch_size(device, batch_size)
    from mambaner_cli.evaluate import EvalArgs, markdown_report, write_json
    from mambaner_cli.evaluate import evaluate as run_evaluation
    from mambaner_cli.invocation import command_line

    console = stderr_console(quiet)
    args = EvalArgs(dataset=dataset, split=split, model=model, conll=conll, data_dir=data_dir, device=device,
                    batch_size=batch_size, document_level=not no_documents, convention=convention,
                    rules=not network_only)
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
    for kind, d in ((k, result["document"][k]) for k in ("exact", "overlap") if "document" in result):
        for label, m in sorted(d.get("per_type", {}).items()):
            table.add_row("document", f"{kind} {label}", f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}")
        table.add_row("document", f"{kind} micro", f"{d['precision']:.2f}", f"{d['recall']:.2f}", f"{d['f1']:.2f}")
    console.print(table)
    if result.get("convention"):
        console.print(f"convention {result['convention']}: {result['convention_source']}", markup=False)
    if result.get("network_only"):
        console.print("network only: no run-time rules (variant patterns, bracket cuts, short forms)", markup=False)
    if result.get("not_scored_types"):
        console.print(f"not scored ({result['dataset']} does not annotate them): predictions of "
                      f"{', '.join(result['not_scored_types'])}", markup=False)
    if result.get("document_skipped"):
        console.print(f"document level not run: {result['document_skipped']}", markup=False)
    if result.get("published"):
        from mambaner_cli.evaluate import Published

        console.print(f"published strict F1 on {result['dataset']} (test): "
                      + ", ".join(f"{Published(**p).shown} {p['system']}" for p in result["published"]), markup=False)
    e = result["efficiency"]
    console.print(f"{e['parameters']:,} parameters; peak RSS {e['peak_rss_mb']:.0f} MB; "
                  f"{b['sentences_per_s']:.0f} sentences/s, {b['tokens_per_s']:.0f} tokens/s; "
                  f"{e['wall_seconds']:.1f} s on {e['machine']['cpu']} ({e['machine']['cores']} cores)")
    from mambaner_cli.evaluate import PAPER_TABLE_1

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


