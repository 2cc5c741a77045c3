"""Safe, constant-memory streaming of XML records, shared by the PubMed and BioC readers.

A PubMed baseline file is ~1 GB of XML, so records are parsed as they complete and cleared right
after, with the tree pruned behind them. The parser never expands entities, loads a DTD or touches the
network: input files come from anywhere, and an external entity must not read local files.

The bytes are decoded here, not by libxml2, so that a bad byte costs one record instead of the rest of the
file (libxml2 stops at the first one) and so that ``errors="replace"`` can work at all. The encoding is the
byte-order mark's, else the XML declaration's, else (no declaration: XML's default, UTF-8) the caller's
``encoding``; the text goes to lxml as UTF-8 with the parser told so. With ``errors="strict"`` each
undecodable byte is fed as the noncharacter U+FDD0, which XML allows in text and attribute values but not in
names: a record whose text holds one is reported (:attr:`RecordReader.undecodable`), one in markup makes the
file malformed, and the message then says it is the encoding. A declared encoding that Python does not know
is left to libxml2.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO

from lxml import etree

from ..errors import InputError
from .text import (
    UNDECODABLE,
    UNDECODABLE_HANDLER,
    bom_encoding,
    choose_encoding,
    encoding_label,
    marks_made,
    undecodable_hint,
)

CHUNK_SIZE = 1 << 16
#: Stands in for each undecodable byte (``errors="strict"``); see the module's docstring.
MARK = "\ufdd0"
_DECLARED = re.compile(rb"<\?xml[^>]*?\sencoding\s*=\s*[\"']([A-Za-z][A-Za-z0-9._-]*)[\"']")


class RecordReader:
    """Iterates over each completed element named in ``tags``; it is cleared once the caller resumes.

    Raises InputError for an empty file, a root other than ``root_tag`` or malformed XML; records that
    completed before the error have been yielded by then. After each record, :attr:`undecodable` is None,
    or ``(line, message)`` for its first byte that did not decode (``errors="strict"`` only).
    """

    def __init__(self, stream: BinaryIO, source: str, tags: tuple[str, ...], root_tag: str, hint: str = "",
                 *, encoding: str = "utf-8", errors: str = "strict") -> None:
        self.stream, self.source, self.tags, self.root_tag, self.hint = stream, source, tags, root_tag, hint
        self.encoding, self.errors = encoding, errors
        self.undecodable: tuple[int, str] | None = None
        self._label = ""  # the encoding as messages name it, once known
        # (line, byte) of each undecodable byte decoded and not yet found in a record
        self._pending: deque[tuple[int, int]] = deque()
        self._outside: list[tuple[int, int]] = []  # … and those found before a record's start

    def __iter__(self) -> Iterator[etree._Element]:
        head = b""
        while not _decisive(head) and (chunk := self.stream.read(CHUNK_SIZE)):
            head += chunk  # a trickle (a pipe, the network) may give a few bytes a read
        encoding, skip = self._encoding(head)
        decoder = None
        if encoding is not None:
            decoder = codecs.getincrementaldecoder(encoding)(UNDECODABLE_HANDLER if self.errors == "strict"
                                                              else self.errors)
        parser = etree.XMLPullParser(events=("end",), tag=self.tags, resolve_entities=False, no_network=True,
                                     load_dtd=False, huge_tree=False,
                                     encoding="utf-8" if decoder else None)
        self._label = encoding_label(encoding) if encoding else "the declared encoding"
        root_checked = False

        def check_root(root: etree._Element) -> None:
            if root.tag != self.root_tag:
                raise InputError(self.source, f"the root element is <{root.tag}>, not <{self.root_tag}>{self.hint}",
                                 line=root.sourceline)

        def completed() -> Iterator[etree._Element]:
            nonlocal root_checked
            for _, elem in parser.read_events():
                if not root_checked:
                    check_root(elem.getroottree().getroot())
                    root_checked = True
                self.undecodable = self._claim(elem) if self._pending else None
                yield elem
                elem.clear(keep_tail=True)
                while elem.getprevious() is not None:
                    del elem.getparent()[0]

        empty = True
        line = 1
        chunk = head[skip:] or self.stream.read(CHUNK_SIZE)  # a trickle's first read may be the mark alone
        head = b""
        try:
            while True:
                final = not chunk
                if decoder is not None:
                    before = marks_made()
                    text = decoder.decode(chunk, final=final)
                    if marks_made() != before and UNDECODABLE.search(text):
                        text = self._mark(text, line)
                    line += text.count("\n")
                    empty = empty and not text.strip()
                    data = text.encode("utf-8")
                else:
                    empty = empty and not chunk.strip()
                    data = chunk
                if data:
                    parser.feed(data)
                    yield from completed()
                if final:
                    break
                chunk = self.stream.read(CHUNK_SIZE)
            if empty:
                raise InputError(self.source, "empty file")
            try:
                root = parser.close()
            except etree.XMLSyntaxError:
                # every record whose end tag arrived was reported as it was fed; what close() reports now is
                # libxml2 (2.14 through lxml 6.2) closing the elements that a truncated file left open, so a
                # cut-off record would pass for a whole one
                for _ in parser.read_events():
                    pass
                raise
        except etree.XMLSyntaxError as error:
            yield from completed()
            bad = next(iter(self._pending), None) or next(iter(self._outside), None)
            if bad is not None and (error.lineno or 0) >= bad[0]:  # an undecodable byte in the markup
                raise InputError(self.source, self._message(bad[1], "in the markup"), line=bad[0]) from None
            raise InputError(self.source, f"not well-formed XML: {error.msg}", line=error.lineno) from None
        yield from completed()
        check_root(root)
        bad = next(iter(self._outside), None) or next(iter(self._pending), None)
        if bad is not None:
            raise InputError(self.source, self._message(bad[1], "outside any record"), line=bad[0])

    def _encoding(self, head: bytes) -> tuple[str | None, int]:
        """The encoding to decode with (None: leave it to libxml2) and the length of a byte-order mark."""
        if bom_encoding(head):
            return choose_encoding(head, self.encoding)
        if head.startswith((b"<\x00", b"\x00<")):  # UTF-16 without a mark (XML 1.0, appendix F)
            return ("utf-16-le" if head[0] == 0x3C else "utf-16-be"), 0
        declared = _DECLARED.match(head.lstrip())
        if not declared:
            return choose_encoding(head, self.encoding)
        name = declared[1].decode("ascii")
        try:
            if "<".encode(name) != b"<":  # UTF-16 or UTF-32 declared in ASCII bytes: the declaration is wrong
                return "utf-8", 0  # (as libxml2 has it)
        except (LookupError, UnicodeError):
            return None, 0  # an encoding Python does not know (or cannot write "<" in): libxml2 may
        return name, 0

    def _mark(self, text: str, line: int) -> str:
        """Note each undecodable byte (its line and value) and put :data:`MARK` in its place."""
        def note(match: re.Match[str]) -> str:
            self._pending.append((line + text.count("\n", 0, match.start()), ord(match[0]) - 0xDC00))
            return MARK

        return UNDECODABLE.sub(note, text)

    def _claim(self, elem: etree._Element) -> tuple[int, str] | None:
        """The first undecodable byte inside ``elem`` (its marks, counted in its serialization), if any.

        Marks noted before the record's first line lie between records (or in a record not asked for).
        """
        start = elem.sourceline or 0
        while self._pending and self._pending[0][0] < start:
            self._outside.append(self._pending.popleft())
        count = etree.tostring(elem, encoding="unicode", with_tail=False).count(MARK)
        claimed = [self._pending.popleft() for _ in range(min(count, len(self._pending)))]
        if not claimed:
            return None
        line, byte = claimed[0]
        return line, self._message(byte, "")

    def _message(self, byte: int, where: str) -> str:
        where = f" {where}" if where else ""
        return f"not valid {self._label} (byte 0x{byte:02x}{where}); {undecodable_hint()}"


def _decisive(head: bytes) -> bool:
    """Whether ``head`` says the encoding: it holds a possible byte-order mark and all of an XML declaration
    if it starts with one (bytes are fed on as they come, not held back, so the tree stays small)."""
    if len(head) >= 1024:
        return True
    return len(head) >= 4 and (not head.lstrip().startswith(b"<?xml") or b"?>" in head)


def iter_records(stream: BinaryIO, source: str, tags: tuple[str, ...], root_tag: str, hint: str = "",
                 *, encoding: str = "utf-8", errors: str = "strict") -> RecordReader:
    """The records of ``stream`` (see :class:`RecordReader`), iterated as elements."""
    return RecordReader(stream, source, tags, root_tag, hint, encoding=encoding, errors=errors)


def text_of(elem: etree._Element) -> str:
    """All the text inside ``elem`` (inline markup included), entity references and comments left out.

    (``itertext(etree.Element)`` would also drop the text that follows an entity reference.)
    """
    parts = [elem.text or ""]
    for child in elem:
        if isinstance(child.tag, str):  # an element, not an entity reference, comment or PI
            parts.append(text_of(child))
        parts.append(child.tail or "")
    return "".join(parts)


def normalize_space(text: str) -> str:
    return " ".join(text.split())
