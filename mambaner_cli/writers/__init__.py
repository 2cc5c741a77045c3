"""Output writers and crash-safe output files.

Which formats exist, which extensions pick them and where each writer class lives is the format
registry's (:mod:`mambaner_cli.formats`). Here, ``WRITERS`` maps a format name to its writer class
(imported on first use: writing JSONL never loads pyarrow); :func:`atomic_output` makes sure that an
interrupted run never leaves a truncated file behind (or clobbers the previous output); :func:`open_writer`
combines a writer with it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from mambaner_cli import formats
from mambaner_cli.formats import detect_output_format

from ..errors import MambanerError
from .base import Writer

#: format name → writer class, each imported when first used.
WRITERS: Mapping[str, type[Writer]] = formats.Implementations(formats.OUTPUT_FORMATS)

# Written to standard output when no --format is given.
DEFAULT_STDOUT_FORMAT = formats.STDOUT_FORMAT

# The writer classes by their class names (ParquetWriter…), for `from mambaner_cli.writers import …`.
_CLASS_NAMES = {fmt.attribute: fmt for fmt in formats.OUTPUT_FORMATS.values() if fmt.attribute}

__all__ = [
    "DEFAULT_STDOUT_FORMAT",
    "WRITERS",
    "BiocWriter",
    "ConllWriter",
    "JsonlWriter",
    "ParquetWriter",
    "PubtatorWriter",
    "Writer",
    "atomic_output",
    "detect_output_format",
    "open_writer",
]


def __getattr__(name: str) -> Any:
    """``ParquetWriter`` and the other classes, imported when asked for (PEP 562), so that importing
    this package stays cheap."""
    if name in _CLASS_NAMES:
        return _CLASS_NAMES[name].load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _new_file_mode() -> int:
    """The permissions a plain open() would give a new file (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces ``path`` only if the block finishes.

    The data goes to a hidden ``.<name>.<random>.part`` file next to ``path`` and is renamed onto it
    (atomically, on the same file system) when the block exits normally. If the block raises, including
    KeyboardInterrupt, the part file is deleted and any existing ``path`` is left untouched. ``-`` yields
    standard output (no temporary file; what was written stays written).
    """
    if path == "-":
        stream = sys.stdout.buffer
        yield stream
        stream.flush()
        return
    directory = os.path.dirname(path) or "."
    name = os.path.basename(path)
    if not name or os.path.isdir(path):
        raise MambanerError(f"output path '{path}' is a directory; give a file name")
    try:
        # Closed by the `with handle` below; it must outlive this statement to be renamed afterwards.
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=directory, delete=False, prefix=f".{name}.", suffix=".part")
    except FileNotFoundError:
        raise MambanerError(
            f"cannot write '{path}': directory '{directory}' does not exist; create it first") from None
    except PermissionError:
        raise MambanerError(
            f"cannot write '{path}': no permission to create files in '{directory}'") from None
    try:
        with handle:
            yield handle  # type: ignore[misc]
            handle.flush()
            os.fsync(handle.fileno())
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = _new_file_mode()
        os.chmod(handle.name, mode)  # NamedTemporaryFile creates 0600; keep the usual permissions
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise


@contextlib.contextmanager
def open_writer(path: str, fmt: str | None = None, **kwargs: Any) -> Iterator[Writer]:
    """A writer of format ``fmt`` (detected from ``path`` when None) on :func:`atomic_output`.

    The writer is closed, and the file put in place, when the block exits normally; on an exception
    the partial output is discarded. ``kwargs`` go to the writer (``model``, ``source``, ``date``…).
    """
    fmt = fmt or detect_output_format(path)
    if fmt not in WRITERS:
        raise MambanerError(f"unknown output format '{fmt}'; choose one of: {', '.join(WRITERS)}")
    writer_class = WRITERS[fmt]  # imported before the output file is created
    with atomic_output(path) as stream:
        writer = writer_class(stream, **kwargs)
        yield writer
        writer.close()
