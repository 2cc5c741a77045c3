"""The command line that started this process, for model cards and reports."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_line() -> str:
    """``mambaner …`` as the user typed it (quoted so it can be pasted back into a shell)."""
    program = Path(sys.argv[0]).name
    if program in ("mambaner", "__main__.py") or program.startswith("mambaner"):
        return "mambaner " + shlex.join(sys.argv[1:])
    return shlex.join(sys.argv)
