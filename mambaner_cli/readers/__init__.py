"""Input readers: one module per format, each with ``read(stream, source, **options)``.

This module maps format names to readers, guesses a file's format, expands directories and globs,
and turns every file-level failure (missing, unreadable, corrupt gzip, malformed) into a yielded
ReadError so that one bad input never stops a batch run.
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from ..document import Document
from ..errors import InputError, MambanerError, ReadError
from . import bioc, pubmed_xml, pubtator, text

READERS: dict[str, ModuleType] = {"pubmed": pubmed_xml, "text": text, "pubtator": pubtator, "bioc": bioc}

_GZIP_MAGIC = b"\x1f\x8b"
_KNOWN_SUFFIXES = (".xml", ".txt", ".pubtator")
_SNIFF_BYTES = 2048


def detect_format(path: str) -> str:
    """The format a file's name (and, for .xml and .txt, its first 2 kB) says it has."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(".bioc.xml"):
        return "bioc"
    if name.endswith(".xml"):
        return "bioc" if re.search(rb"<collection[\s>]", _head(path)) else "pubmed"
    if name.endswith((".pubtator.txt", ".pubtator")):
        return "pubtator"
    if name.endswith(".txt"):  # corpora ship PubTator as plain .txt (e.g. NCBItestset_corpus.txt)
        return "pubtator" if re.match(rb"\s*[^\s|]+\|[ta]\|", _head(path)) else "text"
    raise MambanerError(f"{path}: cannot tell the input format from the file name; "
                        f"use --input-format ({'|'.join(READERS)})")


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
                                if file.is_file() and not file.name.startswith(".") and _known(file.name))
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
                reader = READERS[input_format or ("text" if path == "-" else detect_format(path))]
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
        if stream.peek(2)[:2] == _GZIP_MAGIC:
            stream = stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
        yield stream


def _head(path: str) -> bytes:
    """The first bytes of a file, decompressed if gzipped; nothing if it cannot be read."""
    try:
        with _open(path, None) as stream:
            return stream.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return b""


def _known(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith(_KNOWN_SUFFIXES)
