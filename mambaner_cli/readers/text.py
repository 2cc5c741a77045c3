"""Plain text: the whole file as one document, or (``lines=True``) one document per line; and the decoding
that every line-based reader (text, PubTator) and the XML readers share.

The text is kept exactly as decoded (only a byte-order mark is dropped) so that mention offsets index the
decoded text, in code points.

Decoding: a UTF-8, UTF-16 or UTF-32 byte-order mark decides the encoding whatever ``encoding`` says (the
mark cannot be anything else); otherwise ``encoding`` does (UTF-8 unless told). With ``errors="strict"``
an undecodable byte costs as little as the format allows: the line with ``lines=True``, the whole file for a
single-document text file (named by byte offset, line and column); with ``"replace"``, ``"ignore"`` or
``"backslashreplace"`` every document is kept and offsets count the decoded code points.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..document import Document, Passage
from ..errors import InputError, MambanerError, ReadError
from ..formats import INPUT_FORMATS

name = "text"
extensions = INPUT_FORMATS[name].extensions  # the registry owns them; here for the reader interface

#: The ``errors`` a reader accepts. Python's other decoding handlers (``surrogateescape``,
#: ``surrogatepass``) would put lone surrogates into documents, which no writer can encode.
ENCODING_ERRORS = ("strict", "replace", "ignore", "backslashreplace")

#: Byte-order marks, UTF-32 before UTF-16 (whose little-endian mark UTF-32's begins with).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))

CHUNK_SIZE = 1 << 16
#: The decoding error handler that marks undecodable bytes (:func:`_mark_undecodable`) and the marks' pattern.
UNDECODABLE_HANDLER = "mambaner-mark"
UNDECODABLE = re.compile("[\udc00-\udcff]")
#: How many times the handler has run (in any thread): a decode after which it has not changed made no
#: mark, which spares searching every decoded chunk for one (a regex search costs more than the decoding).
_MARKS_MADE = [0]


def marks_made() -> int:
    """How many undecodable byte runs the handler has marked so far (compare before and after a decode)."""
    return _MARKS_MADE[0]


def _mark_undecodable(error: UnicodeError) -> tuple[str, int]:
    """Each undecodable byte becomes the lone surrogate U+DC00 + byte (``surrogateescape``'s mapping, but for
    every byte value, which ``surrogateescape`` refuses below 0x80). A strict decode of valid input never
    yields a lone surrogate, so they say exactly where, and which, bytes failed; the readers then decide
    what that costs (a line, a record, a file) instead of the first bad byte costing the whole file."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    _MARKS_MADE[0] += 1
    return "".join(chr(0xDC00 + byte) for byte in error.object[error.start:error.end]), error.end


codecs.register_error(UNDECODABLE_HANDLER, _mark_undecodable)


def read(stream: BinaryIO, source: str, *, lines: bool = False, encoding: str = "utf-8",
         errors: str = "strict", **_options: object) -> Iterator[Document | ReadError]:
    stem = document_stem(source)
    if lines:
        yield from _read_lines(stream, source, stem, encoding, errors)
        return
    text = decode(stream.read(), source, encoding=encoding, errors=errors)
    if not text.strip():
        raise InputError(source, "empty file")
    yield Document(stem, [Passage("text", 0, text)], source)


def _read_lines(stream: BinaryIO, source: str, stem: str, encoding: str, errors: str
                ) -> Iterator[Document | ReadError]:
    content = False
    for number, line, problem in iter_lines(stream, encoding, errors):
        line = line.removesuffix("\r")
        if line.strip():
            content = True
            if problem:  # only this line is lost: the next line decodes on its own
                yield ReadError(source, problem, line=number)
            else:
                yield Document(f"{stem}:{number}", [Passage("text", 0, line)], source)
    if not content:
        raise InputError(source, "empty file")


def document_stem(source: str) -> str:
    """The document id a file gives: its name without extension (and without .gz); "stdin" for stdin."""
    if source == "<stdin>":
        return "stdin"
    return Path(Path(source).name.removesuffix(".gz")).stem


# --- decoding, shared by the readers ------------------------------------------------------------------

def check_decoding(encoding: str, errors: str) -> None:
    """Raise MambanerError unless ``encoding`` is a text encoding Python knows and ``errors`` is one of
    :data:`ENCODING_ERRORS`: a typo should stop the run before any input is read, not fail every file."""
    try:  # not b"": decoding nothing skips the codec lookup
        b"\n".decode(encoding)  # LookupError for unknown names and for bytes-to-bytes codecs (base64, zlib)
    except LookupError:
        raise MambanerError(f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252, utf-16)") from None
    except UnicodeError:
        pass  # a real text encoding (UTF-16) that one byte is too short for
    if errors not in ENCODING_ERRORS:
        raise MambanerError(f"unknown encoding error handling {errors!r}; choose one of {', '.join(ENCODING_ERRORS)}")


def bom_encoding(head: bytes) -> tuple[str, int] | None:
    """The encoding a byte-order mark at the start of ``head`` gives, and the mark's length; None without one."""
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    return None


def choose_encoding(head: bytes, encoding: str) -> tuple[str, int]:
    """The encoding to decode an input that starts with ``head`` (its byte-order mark's, else ``encoding``)
    and how many bytes of mark to skip.

    Without a mark, ``utf-16`` and ``utf-32`` mean little-endian (as ``bytes.decode`` has it on every common
    machine): their incremental decoders would otherwise insist on a mark.
    """
    bom = bom_encoding(head)
    if bom:
        return bom
    name = codecs.lookup(encoding).name
    return (f"{name}-le" if name in ("utf-16", "utf-32") else encoding), 0


def encoding_label(encoding: str) -> str:
    """How messages name an encoding: ``UTF-8``, ``UTF-16-LE``, ``cp1252``, ``iso8859-1``."""
    name = codecs.lookup(encoding).name
    return name.upper() if name.startswith("utf") else name


def undecodable_hint() -> str:
    """What every message about an undecodable byte suggests (the command line's options)."""
    return "give the file's encoding with --encoding, or keep going with --encoding-errors replace"


def decode(data: bytes, source: str, first_line: int = 1, *, encoding: str = "utf-8",
           errors: str = "strict") -> str:
    """``data`` decoded (a byte-order mark decides the encoding and is dropped), or an InputError that names
    the first undecodable byte by byte offset, line and column."""
    encoding, skip = choose_encoding(data[:4], encoding)
    before = marks_made()
    text = (data[skip:] if skip else data).decode(encoding, UNDECODABLE_HANDLER if errors == "strict" else errors)
    if marks_made() == before or not (marked := UNDECODABLE.search(text)):
        return text
    position = marked.start()
    offset = skip + len(text[:position].encode(encoding))
    line = first_line + text.count("\n", 0, position)
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    raise InputError(source, f"not valid {encoding_label(encoding)} (byte 0x{ord(text[position]) - 0xDC00:02x} "
                             f"at byte offset {offset}, column {column}); {undecodable_hint()}", line=line)


def iter_lines(stream: BinaryIO, encoding: str = "utf-8", errors: str = "strict"
               ) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, line without its "\\n", problem)`` for every line of ``stream``.

    ``problem`` is None unless ``errors="strict"`` and the line holds undecodable bytes; such a line comes
    with U+FFFD in their place (so that a reader can still tell what kind of line it was) and a message
    naming the byte and column. A byte-order mark decides the encoding and is dropped. Lines are split on
    ``\\n`` in the decoded text, so UTF-16 and UTF-32 work too.
    """
    head, stream = read_ahead(stream, 4)
    encoding, skip = choose_encoding(head, encoding)
    stream.read(skip)
    handler = UNDECODABLE_HANDLER if errors == "strict" else errors
    label = encoding_label(encoding)
    if "\n".encode(encoding) == b"\n":
        # ASCII-compatible for line ends (UTF-8, the ISO-8859 and Windows code pages, Shift-JIS…): each
        # line decodes on its own, so a bad byte cannot spoil the lines after it
        lines = _split_lines(stream, encoding, handler)
    else:
        lines = ((line, handler == UNDECODABLE_HANDLER) for line in _decoded_lines(stream, encoding, handler))
    for number, (line, maybe_marked) in enumerate(lines, 1):
        marked = UNDECODABLE.search(line) if maybe_marked else None
        if marked is None:
            yield number, line, None
            continue
        problem = (f"not valid {label} (byte 0x{ord(line[marked.start()]) - 0xDC00:02x} at column "
                   f"{marked.start() + 1}); {undecodable_hint()}")
        yield number, UNDECODABLE.sub("\ufffd", line), problem


def _split_lines(stream: BinaryIO, encoding: str, handler: str) -> Iterator[tuple[str, bool]]:
    """Each line decoded on its own, and whether the undecodable-byte handler marked anything in it."""
    for raw in stream:
        before = marks_made()
        line = raw.removesuffix(b"\n").decode(encoding, handler)
        yield line, marks_made() != before


def _decoded_lines(stream: BinaryIO, encoding: str, handler: str) -> Iterator[str]:
    """Lines of an encoding whose line ends are not the byte 0x0A (UTF-16, UTF-32), decoded in chunks."""
    decoder = codecs.getincrementaldecoder(encoding)(handler)
    parts: list[str] = []
    final = False
    while not final:
        chunk = stream.read(CHUNK_SIZE)
        final = not chunk
        text = decoder.decode(chunk, final=final)
        start = 0
        while (end := text.find("\n", start)) >= 0:
            parts.append(text[start:end])
            yield "".join(parts)
            parts, start = [], end + 1
        parts.append(text[start:])
    if any(parts):
        yield "".join(parts)


def read_ahead(stream: BinaryIO, size: int) -> tuple[bytes, io.BufferedReader]:
    """The first ``size`` bytes of ``stream`` (fewer only at its end) and a stream that reads them again.

    ``peek`` is not enough: it may return fewer bytes than asked (a pipe, a trickling network), and
    ``io.BytesIO`` has none.
    """
    head = b""
    while len(head) < size and (chunk := stream.read(size - len(head))):
        head += chunk
    return head, io.BufferedReader(_Replay(head, stream), buffer_size=CHUNK_SIZE)


class _Replay(io.RawIOBase):
    """``head`` again, then the rest of ``stream`` (which is not closed: it may be stdin)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
