"""What every command shares: the `mambaner` group, error handling, the stderr console, model options."""

from __future__ import annotations

from collections.abc import Callable

import click

from mambaner_cli import __version__
from mambaner_cli.errors import InputError, MambanerError, MambanerUsageError


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
        except MambanerUsageError as error:  # what the user asked for cannot be: exit status 2
            raise click.UsageError(str(error)) from error
        except (MambanerError, InputError) as error:  # InputError: e.g. a bad PMID in --pmid
            raise click.ClickException(str(error)) from error


@click.group(cls=MambanerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mambaner")
def cli() -> None:
    """Tag disease mentions in PubMed and other biomedical text with a Mamba tagger."""


