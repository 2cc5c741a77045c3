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
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from mambaner_cli import formats
from mambaner_cli.formats import detect_input_format as detect_format

from ..document import Document
from ..errors import InputError, MambanerError, ReadError

#: format name → reader module, imported when first used (reading text never loads lxml).
READERS: Mapping[str, ModuleType] = formats.Implementations(formats.INPUT_FORMATS)

__all__ = ["READERS", "detect_format", "expand_inputs", "iter_documents"]


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Input paths in order: directories (recursively) and globs expanded and sorted, "-" kept for stdin.

    A path or glob that matches nothing is kept as it is, so that it is reported as a missing file
    rather than silently dropped.
    """
    paths: list[str] = []
    for pattern in patterns:
        matches = [pattern]
        if pattern != "-" and any(char in pattern for char in "*?["):
            matches = sorted(glob.glob(pattern, recursive=True)) or [pattern]
        for path in matches:
            if path != "-" and os.path.isdir(path):
                paths += sorted(str(file) for file in Path(path).rglob("*")
                                if file.is_file() and not file.name.startswith(".")
                                and formats.is_input_file(file.name))
            else:
                paths.append(path)
    return list(dict.fromkeys(paths))


def iter_documents(inputs: Sequence[str], input_format: str | None = None, lines: bool = False,
                   stdin: BinaryIO | None = None, *, keep_annotations: bool = False
                   ) -> Iterator[Document | ReadError]:
    """Documents of every input in turn, a ReadError for each bad document or unreadable file.

    gzip is recognized by its magic bytes; stdin ("-") is read as ``input_format`` or plain text.
    """
    if input_format is not None and input_format not in READERS:
        raise MambanerError(f"unknown input format {input_format!r}; choose one of {', '.join(READERS)}")
    for path in inputs:
        source = "<stdin>" if path == "-" else path
        try:
            with _open(path, stdin) as stream:
                if not stream.peek(1):
                    yield ReadError(source, "empty file")
                    continue
                reader = READERS[input_format or (formats.STDIN_FORMAT if path == "-" else detect_format(path))]
                yield from reader.read(stream, source, lines=lines, keep_annotations=keep_annotations)
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
        except UnicodeDecodeError as error:
            yield ReadError(source, f"not valid UTF-8 ({error.reason})")
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
