"""What every command shares: the `mambaner` group, error handling and exit statuses, signals, the
stderr console, model options."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import click

from mambaner_cli import __version__
from mambaner_cli.errors import InputError, MambanerError, MambanerUsageError
from mambaner_cli.runtime.model_dir import shipped_models  # no torch: reads the package's folder names

#: The exit status of a command stopped by Ctrl-C (SIGINT) or SIGTERM: 128 + the signal's number, as a
#: shell reports a process that the signal killed.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so that ``finally`` blocks
    and :func:`~mambaner_cli.writers.atomic_output` clean up (no ``.part`` file is left behind). A
    BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` instead of killing the process outright.

    A second SIGTERM during the clean-up is ignored (the clean-up is short; SIGKILL still works). Outside
    the main thread, where Python cannot set handlers, nothing changes.
    """

    def raise_terminated(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stderr_console(quiet: bool = False):
    from rich.console import Console

    return Console(stderr=True, quiet=quiet, highlight=False)


def model_options(function: Callable) -> Callable:
    """Options shared by every command that runs a model."""
    function = click.option("--convention", default=None, metavar="CORPUS",
                            help="For a model trained with annotation conventions (the shipped disease model is; the "
                                 "default is not): tag by this corpus's rules (e.g. ncbi, bc5cdr-disease). Default: "
                                 "the model's own default; `evaluate` uses the evaluated corpus's.")(function)
    function = click.option("--network-only", is_flag=True,
                            help="Tag with the network alone, without the rules beside it: variants written in "
                                 "standard notation (c.671G>A, p.V600E, rs2297882) or in set phrases (13-bp deletion, "
                                 "C to T) found by patterns, mentions cut "
                                 "at an unmatched bracket, short forms defined in a document (\"nitroglycerin "
                                 "(NTG)\") given their long form's type.")(function)
    function = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                            show_default=True, help="Where the model runs; auto picks CUDA when there is a GPU.")(function)
    function = click.option("--batch-size", type=click.IntRange(1), default=None,
                            help="Sentences per model batch (sentences are bucketed by length). Default: 32 on a "
                                 "CPU, 512 on a GPU.")(function)
    function = click.option("--model", "model", default=None, metavar="NAME|DIR",
                            help=f"A shipped model ({', '.join(shipped_models()) or 'none installed'}) or a "
                                 "model directory. Default: the embedded default model.")(function)
    return function


class MambanerGroup(click.Group):
    """Turns library errors into Click errors, whose message already says how to fix the problem, and
    signals into their exit statuses (Click's own handling of Ctrl-C says "Aborted!" and exits 1)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MambanerUsageError as error:  # what the user asked for cannot be: exit status 2
            raise click.UsageError(str(error)) from error
        except (MambanerError, InputError) as error:  # InputError: e.g. a bad PMID in --pmid
            raise click.ClickException(str(error)) from error
        except KeyboardInterrupt:
            click.echo("\nInterrupted (Ctrl-C).", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            click.echo("Terminated (SIGTERM).", err=True)
            raise click.exceptions.Exit(EXIT_TERMINATED) from None


@click.group(cls=MambanerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mambaner")
def cli() -> None:
    """Tag disease mentions in PubMed and other biomedical text with a Mamba tagger."""


