"""`mambaner train scratch|finetune|pretrain`: the training recipes. Their options are derived from the recipes'
argument dataclasses (training/args.py, standard library only), where every default and help text lives."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import click

from mambaner_cli.cli.common import MambanerGroup, cli, stderr_console
from mambaner_cli.cli.options import args_from, options_from
from mambaner_cli.training.args import FinetuneArgs, PretrainArgs, ScratchArgs


def training_progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), console=console,
                    transient=True)


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar (the per-epoch log still shows).")


@cli.group(cls=MambanerGroup)
def train() -> None:
    """Train a tagger: `scratch` (the small default model's recipe), `finetune` (LoRA on a pretrained Mamba),
    or pretrain an encoder for `scratch --init-from` (`pretrain`)."""


def run_recipe(train_recipe: Callable[..., dict], args: object, quiet: bool) -> None:
    """Run a recipe's training function (each command imports it: torch loads only when a command trains)
    with the command line for its model card, the per-epoch log on stderr and, unless ``quiet``, a
    progress bar."""
    from mambaner_cli.invocation import command_line

    console = stderr_console()  # --quiet hides the progress bar; the per-epoch log always shows
    with training_progress(console) as progress:
        train_recipe(args, command=command_line(), log=lambda message: console.print(message, markup=False),
                     progress=None if quiet else progress)


@train.command()
@options_from(ScratchArgs)
@quiet_option
def scratch(quiet: bool, **options) -> None:
    """Train the small bidirectional Mamba tagger from a fresh config or a pretrained encoder (--init-from).
    The shipped default's options are in its model card (mambaner_cli/shipped_models/default/README.md)."""
    from mambaner_cli.training.scratch import train_scratch

    run_recipe(train_scratch, args_from(ScratchArgs, options), quiet)


@train.command()
@options_from(FinetuneArgs)
@quiet_option
def finetune(quiet: bool, **options) -> None:
    """Fine-tune a pretrained Mamba with LoRA (the paper's recipe: 10 epochs, lr 1e-4, batch 4)."""
    from mambaner_cli.training.finetune import train_finetune

    run_recipe(train_finetune, args_from(FinetuneArgs, options), quiet)


@train.command()
@options_from(PretrainArgs)
@quiet_option
def pretrain(quiet: bool, **options) -> None:
    """Pretrain the tagger's encoder as a bidirectional language model on unlabeled text (never a test split);
    `train scratch --init-from OUTPUT` starts a tagger from it."""
    from mambaner_cli.training.pretrain import train_pretrain

    run_recipe(train_pretrain, args_from(PretrainArgs, options), quiet)


@train.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path())
def pack(source: str, output: str) -> None:
    """Copy a scratch model or a pretrained encoder from SOURCE to a new OUTPUT for shipping: weights stored
    as float16 (half the size; read back as float32), an encoder without its language-model heads."""
    from pathlib import Path

    from mambaner_cli.runtime.model_dir import pack as pack_directory

    sizes = pack_directory(Path(source), Path(output))
    stderr_console().print(f"{output}: weights {sizes['before'] / 2**20:.1f} MB → {sizes['after'] / 2**20:.1f} MB",
                           markup=False)


@train.command("pseudo-label")
@click.option("--model", "models", multiple=True, required=True, metavar="NAME|DIR",
              help="A teacher: a shipped tagger or a model directory of the scratch recipe (repeat: the "
                   "ensemble averages their CRF marginals; the models must share their labels).")
@click.option("--text", "text_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Tokenized text, one sentence a line, tokens separated by spaces (repeat for several files). "
                   "Default: the data folder's unlabeled sentences. Sentences of the corpora's devel and test "
                   "splits (those in the data folder) are left out.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Corpus folder (default: $MAMBANER_DATA, else ~/.cache/mambaner/data).")
@click.option("--max-sentences", type=click.IntRange(1), default=20000, show_default=True,
              help="Tag at most this many sentences (the first of 5-100 tokens, in file order, that are in no "
                   "devel or test split).")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=0.9, show_default=True,
              help="Keep a sentence only if every token's averaged marginal of its tag reaches this.")
@click.option("--partial", type=click.FloatRange(0.0, 1.0, min_open=True), default=None, metavar="P",
              help="Also write, per token, every tag whose averaged marginal reaches P (a middle column, "
                   "`B-Gene|O`): `train scratch --pseudo` learns such a token as any of them (partial labels), "
                   "so a lower --min-confidence can keep sentences the ensemble is unsure of in places.")
@click.option("--threads", type=click.IntRange(0), default=0, help="Torch CPU threads (0: one per physical core).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="CoNLL file to write (token<TAB>tag, or token<TAB>tags<TAB>tag with --partial; for `train "
                   "scratch --pseudo`).")
def pseudo_label(models: tuple[str, ...], text_files: tuple[str, ...], data_dir: str | None, max_sentences: int,
                 min_confidence: float, partial: float | None, threads: int, output: str) -> None:
    """Tag unlabeled sentences with an ensemble of models and keep those it is sure of: the training data of
    a distilled student (`train scratch --pseudo OUTPUT`)."""
    from mambaner_cli.corpora import UNLABELED_FILE, resolve_data_dir, sha256
    from mambaner_cli.errors import MambanerUsageError
    from mambaner_cli.runtime.device import set_threads
    from mambaner_cli.runtime.load import load_tagger
    from mambaner_cli.runtime.model_dir import WEIGHTS_FILE, resolve_model
    from mambaner_cli.runtime.tagger import Tagger
    from mambaner_cli.training.pseudo import conll_text, held_out_keys, partial_pseudo_label, read_unlabeled
    from mambaner_cli.writers import atomic_output, check_output

    check_output(output)
    set_threads(threads)
    taggers = [load_tagger(model, device="cpu", rules=False) for model in models]  # the networks: what a student copies
    for model, tagger in zip(models, taggers):
        if not isinstance(tagger, Tagger):
            raise MambanerUsageError(f"--model {model}: pseudo-labels come from the scratch recipe's models")
    held_out = held_out_keys(data_dir)  # the corpora's devel and test sentences, never pseudo-labelled
    sentences = read_unlabeled(text_files or [resolve_data_dir(data_dir) / UNLABELED_FILE], max_sentences,
                               exclude=held_out)
    labelled = partial_pseudo_label(taggers, sentences, min_confidence, partial if partial is not None else 1.0)
    kept = [(tokens, tags) for tokens, tags, _ in labelled]
    mentions = sum(tag.startswith("B-") for _, tags in kept for tag in tags)
    uncertain = sum(len(options) > 1 for _, _, choices in labelled for options in choices)
    command = shlex.join(["mambaner", "train", "pseudo-label", *(f"--model={m}" for m in models),
                          *(f"--text={t}" for t in text_files),
                          *([f"--data-dir={data_dir}"] if data_dir else []), f"--max-sentences={max_sentences}",
                          f"--min-confidence={min_confidence}",
                          *([f"--partial={partial}"] if partial is not None else []), f"--output={output}"])
    # a shipped name names other weights in another release: the weights' digest says which teacher it was
    provenance = (f"`{command}`: {len(kept):,} of {len(sentences):,} sentences kept, {mentions:,} mentions"
                  + (f", {uncertain:,} tokens with alternatives" if partial is not None else "") + "; "
                  "teachers' weights (SHA-256): " + "; ".join(f"{m} {sha256(resolve_model(m) / WEIGHTS_FILE)[:16]}"
                                                              for m in models))
    with atomic_output(output) as stream:
        alternatives = [choices for _, _, choices in labelled] if partial is not None else None
        stream.write(conll_text(kept, provenance=provenance, alternatives=alternatives).encode("utf-8"))
    stderr_console().print(f"{output}: {len(kept):,} of {len(sentences):,} sentences kept (min confidence "
                           f"{min_confidence}), {mentions:,} mentions"
                           + (f", {uncertain:,} tokens with alternatives (--partial {partial})"
                              if partial is not None else ""), markup=False)
