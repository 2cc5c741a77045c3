"""Input readers: one module per format, each with ``read(stream, source, **options)``.

Which formats exist, which file names pick them and where each reader lives is the format registry's
(:mod:`mambaner_cli.formats`); a reader module adds ``name``, ``extensions`` (the registry's) and, where
the content decides between formats sharing an extension, ``sniff(head: bytes) -> bool``. This module
expands directories and globs, opens (and un-gzips) each input, and turns every file-level failure
(missing, unreadable, corrupt gzip, malformed) into a yielded ReadError so that one bad input never
stops a batch run.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from mambaner_cli import formats
from mambaner_cli.formats import detect_input_format as detect_format

from ..document import Document
from ..errors import InputError, MambanerError, ReadError
from .text import ENCODING_ERRORS, check_decoding, read_ahead

#: format name → reader module, imported when first used (reading text never loads lxml).
READERS: Mapping[str, ModuleType] = formats.Implementations(formats.INPUT_FORMATS)

__all__ = ["ENCODING_ERRORS", "READERS", "detect_format", "expand_inputs", "iter_documents"]


def expand_inputs(patterns: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """Input paths in order: directories (recursively) and globs expanded and sorted, "-" kept for stdin.

    A path or glob that matches nothing is kept as it is, so that it is reported as a missing file
    rather than silently dropped.

    Expansion never yields a file of ``exclude`` (the run's output: it may lie in an input directory, and
    the next run must not read it back as an input), however it is reached (symbolic links to it or to
    its folder), nor that file's hidden temporary files ``.NAME.<8 characters>.part`` (the pattern of
    :func:`mambaner_cli.writers.part_file_pattern`). A glob whose every match is excluded gives nothing
    (its files are there, so it is not a missing file). A path given as it is, not reached through a
    directory or glob, is kept even if excluded: the caller decides (``mambaner tag`` refuses it).
    """
    # file name → the real folders in which that name is excluded; both the output's own name and,
    # through a link, its target's (the temporary file is made beside the target)
    excluded_names: dict[str, set[str]] = {}
    for path in exclude:
        if path == "-":
            continue
        for spelling in {path, os.path.realpath(path)}:
            folder = os.path.realpath(os.path.dirname(spelling) or ".")
            excluded_names.setdefault(os.path.basename(spelling), set()).add(folder)
    part_file = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.part")

    def excluded(path: str) -> bool:
        name = os.path.basename(path)
        temporary = part_file.fullmatch(name)
        if temporary and temporary[1] in excluded_names:
            name = temporary[1]
        folders = excluded_names.get(name)
        return folders is not None and os.path.realpath(os.path.dirname(path) or ".") in folders

    paths: list[str] = []
    for pattern in patterns:
        matches = [pattern]
        if pattern != "-" and any(char in pattern for char in "*?["):
            found = sorted(glob.glob(pattern, recursive=True))
            matches = [path for path in found if not excluded(path)] if found else [pattern]
        for path in matches:
            if path != "-" and os.path.isdir(path):
                paths += sorted(str(file) for file in Path(path).rglob("*")
                                if file.is_file() and not file.name.startswith(".")
                                and formats.is_input_file(file.name) and not excluded(str(file)))
            else:
                paths.append(path)
    return list(dict.fromkeys(paths))


def iter_documents(inputs: Sequence[str], input_format: str | None = None, lines: bool = False,
                   stdin: BinaryIO | None = None, *, keep_annotations: bool = False, encoding: str = "utf-8",
                   errors: str = "strict", on_deleted: Callable[[str], None] | None = None
                   ) -> Iterator[Document | ReadError]:
    """Documents of every input in turn, a ReadError for each bad document or unreadable file.

    gzip is recognized by its magic bytes; stdin ("-") is read as ``input_format`` or, without one, as
    its first bytes show (:func:`formats.detect_stream_format`: PubMed XML, BioC, PubTator, else plain
    text). ``encoding`` and ``errors`` go to every reader (see :mod:`.text`): a byte-order mark, and for
    XML the XML declaration, say the encoding first; ``errors`` is one of :data:`ENCODING_ERRORS`.
    ``on_deleted`` gets the PMID of every PubMed ``DeleteCitation`` (the other readers ignore it).
    Raises MambanerError for an unknown input format, encoding or ``errors`` before reading anything.
    """
    if input_format is not None and input_format not in READERS:
        raise MambanerError(f"unknown input format {input_format!r}; choose one of {', '.join(READERS)}")
    check_decoding(encoding, errors)
    for path in inputs:
        source = "<stdin>" if path == "-" else path
        try:
            with _open(path, stdin) as stream:
                head = b""
                if path == "-" and input_format is None:  # stdin has no name to go by: sniff its first bytes
                    head, stream = read_ahead(stream, formats.SNIFF_BYTES)
                if not stream.peek(1):
                    yield ReadError(source, "empty file")
                    continue
                fmt = input_format or (formats.detect_stream_format(head) if path == "-" else detect_format(path))
                yield from READERS[fmt].read(stream, source, lines=lines, keep_annotations=keep_annotations,
                                             encoding=encoding, errors=errors, on_deleted=on_deleted)
        except InputError as error:
            yield error.error
        except MambanerError as error:
            yield ReadError(source, str(error).removeprefix(f"{path}: "))
        except FileNotFoundError:
            yield ReadError(source, "no such file")
        except PermissionError:
            yield ReadError(source, "permission denied")
        except IsADirectoryError:
            yield ReadError(source, "is a directory")
        except gzip.BadGzipFile as error:
            yield ReadError(source, f"not a valid gzip file ({error})")
        except (EOFError, zlib.error):
            yield ReadError(source, "truncated or corrupt gzip file")
        except UnicodeError as error:  # the readers report bad bytes themselves; this is a safety net
            yield ReadError(source, f"cannot decode the file ({error}); give its encoding with --encoding")
        except OSError as error:
            yield ReadError(source, error.strerror or str(error))


@contextlib.contextmanager
def _open(path: str, stdin: BinaryIO | None) -> Iterator[io.BufferedIOBase]:
    """A peekable binary stream of the (decompressed) input; stdin is not closed."""
    with contextlib.ExitStack() as stack:
        if path == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            if not hasattr(stream, "peek"):
                stream = io.BufferedReader(stream)  # type: ignore[arg-type]
        else:
            stream = stack.enter_context(open(path, "rb"))
        if stream.peek(len(formats.GZIP_MAGIC))[:len(formats.GZIP_MAGIC)] == formats.GZIP_MAGIC:
            stream = stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
        yield stream
