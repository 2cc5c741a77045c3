"""Output writers, the format registry, and crash-safe output files.

``WRITERS`` maps a format name to its writer class; :func:`detect_output_format` picks the format from
the output path's extension; :func:`atomic_output` makes sure that an interrupted run never leaves a
truncated file behind (or clobbers the previous output); :func:`open_writer` combines the three.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..errors import MambanerError
from .base import Writer
from .bioc import BiocWriter
from .conll import ConllWriter
from .jsonl import JsonlWriter
from .parquet import ParquetWriter
from .pubtator import PubtatorWriter

WRITERS: dict[str, type[Writer]] = {
    cls.name: cls for cls in (ParquetWriter, ConllWriter, BiocWriter, JsonlWriter, PubtatorWriter)
}

# Written to standard output when no --format is given.
DEFAULT_STDOUT_FORMAT = "jsonl"

__all__ = [
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


def detect_output_format(path: str) -> str:
    """The format name for an output path, from its extension (``-``, standard output, gives jsonl).

    Raises :class:`MambanerError` when the extension is not one a writer claims.
    """
    if path == "-":
        return DEFAULT_STDOUT_FORMAT
    name = os.path.basename(path).lower()
    # Longest extension first, so that ".bioc.xml" wins over ".xml".
    claims = sorted(((ext, fmt) for fmt, cls in WRITERS.items() for ext in cls.extensions),
                    key=lambda item: -len(item[0]))
    for ext, fmt in claims:
        if name.endswith(ext) and len(name) > len(ext):
            return fmt
    known = ", ".join(f"{fmt} ({' '.join(cls.extensions)})" for fmt, cls in WRITERS.items())
    raise MambanerError(
        f"cannot tell the output format of '{path}' from its extension; pass --format with one of: {known}")


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
    cls = WRITERS.get(fmt)
    if cls is None:
        raise MambanerError(f"unknown output format '{fmt}'; choose one of: {', '.join(WRITERS)}")
    with atomic_output(path) as stream:
        writer = cls(stream, **kwargs)
        yield writer
        writer.close()
