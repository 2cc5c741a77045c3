"""The `mambaner` command line: a thin Click layer over the library, one module per command group.

Heavy modules (torch, transformers) are imported inside the commands that need them, so that
`mambaner --help` answers at once.
"""

from __future__ import annotations

from mambaner_cli.cli import evaluate, pubmed, tag, train  # noqa: F401 (each module registers its commands)
from mambaner_cli.cli.common import cli


def main() -> None:
    cli(prog_name="mambaner")


__all__ = ["cli", "main"]
