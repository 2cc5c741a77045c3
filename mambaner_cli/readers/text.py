"""Plain UTF-8 text: the whole file as one document, or (``lines=True``) one document per line.

The text is kept exactly as decoded (only a leading BOM is dropped) so that mention offsets index the
original file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..document import Document, Passage
from ..errors import InputError, ReadError
from ..formats import INPUT_FORMATS

name = "text"
extensions = INPUT_FORMATS[name].extensions  # the registry owns them; here for the reader interface


def read(stream: BinaryIO, source: str, *, lines: bool = False, **_options: object
         ) -> Iterator[Document | ReadError]:
    stem = document_stem(source)
    if lines:
        yield from _read_lines(stream, source, stem)
        return
    data = stream.read()
    if not data.strip():
        raise InputError(source, "empty file")
    text = decode(data, source).removeprefix("\ufeff")
    yield Document(stem, [Passage("text", 0, text)], source)


def _read_lines(stream: BinaryIO, source: str, stem: str) -> Iterator[Document]:
    found = False
    for number, raw in enumerate(stream, 1):
        line = decode(raw, source, number)
        if number == 1:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\n").removesuffix("\r")
        if line.strip():
            found = True
            yield Document(f"{stem}:{number}", [Passage("text", 0, line)], source)
    if not found:
        raise InputError(source, "empty file")


def document_stem(source: str) -> str:
    """The document id a file gives: its name without extension (and without .gz); "stdin" for stdin."""
    if source == "<stdin>":
        return "stdin"
    return Path(Path(source).name.removesuffix(".gz")).stem


def decode(data: bytes, source: str, first_line: int = 1) -> str:
    """UTF-8 text, or an InputError that says on which line the first undecodable byte is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + data.count(b"\n", 0, error.start)
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise InputError(source, f"not valid UTF-8 (byte 0x{data[error.start]:02x} at column {column})",
                         line=line) from None
