"""BioC XML (collection / document / passage): the format PubTator Central and most corpora ship.

Passage text is kept as it is (no whitespace normalization): BioC offsets index it. A passage given as
sentences gets its text rebuilt from them, at their offsets. With ``keep_annotations=True`` the
annotations come along as Spans (label = the ``type`` infon).

Offsets come from the file, so they are checked before any gap is filled: ASCII digits from 0 to 2**31 - 1,
passages (and sentences) in order without overlap, and the gaps of a document adding up to no more than
its text plus :data:`GAP_ALLOWANCE` characters. A document that breaks one of these is a ReadError naming
the file, line and document id; the other documents are still read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from lxml import etree

from ..document import Document, Passage, Span
from ..errors import ReadError
from ..formats import INPUT_FORMATS, sniffable
from ._xml import iter_records, text_of

name = "bioc"
extensions = INPUT_FORMATS[name].extensions  # the registry owns them; here for the reader interface

_COLLECTION_ROOT = re.compile(rb"<collection[\s>]")


def sniff(head: bytes) -> bool:
    """Whether a file's first bytes hold a BioC ``<collection>`` root: PubTator Central and corpora ship
    BioC as plain .xml, the extension PubMed XML has too, so for .xml the root tells them apart."""
    return _COLLECTION_ROOT.search(sniffable(head)) is not None


#: A document's passages sit at their BioC offsets, the gaps between them filled with spaces (that is what
#: makes every offset an index into ``Document.text``). Gaps are real (a separator, a passage left out), but
#: an offset far beyond the text a file holds would fill memory and every output with spaces (10**15: the
#: run dies; 10**8: 100 MB of output from a 1 kB input), so the spaces of a document may add up to at
#: most the characters of text it holds plus this many; offsets must also fit the writers' int32.
GAP_ALLOWANCE = 1024
MAX_OFFSET = 2**31 - 1
_OFFSET = re.compile(r"[0-9]{1,10}")  # ASCII digits: int() also takes "+1", "1_0" and other scripts' digits


class _Invalid(Exception):
    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def read(stream: BinaryIO, source: str, *, keep_annotations: bool = False, encoding: str = "utf-8",
         errors: str = "strict", **_options: object) -> Iterator[Document | ReadError]:
    """Stream the documents of a BioC collection in constant memory; a document with bad offsets or
    undecodable bytes is a ReadError naming the file and the document id, and the others are still read."""
    hint = "; is it BioC XML? Pick the reader with --input-format"
    records = iter_records(stream, source, ("document",), "collection", hint=hint, encoding=encoding,
                           errors=errors)
    for elem in records:
        doc_id = (elem.findtext("id") or "").strip()
        try:
            if records.undecodable:
                raise _Invalid(records.undecodable[1], records.undecodable[0])
            if not doc_id:
                raise _Invalid("<document> without an <id>", elem.sourceline)
            result: Document | ReadError = _document(elem, doc_id, source, keep_annotations)
        except _Invalid as error:
            result = ReadError(source, str(error), line=error.line, doc_id=doc_id or None)
        yield result


def _infons(elem: etree._Element) -> dict[str, str]:
    return {infon.get("key", ""): infon.text or "" for infon in elem.iterfind("infon")}


def _offset(value: str | None, elem: etree._Element, what: str) -> int:
    """A non-negative integer offset or length within the int32 range the writers store."""
    value = (value or "").strip()
    if not _OFFSET.fullmatch(value) or int(value) > MAX_OFFSET:
        shown = repr(value) if len(value) <= 20 else repr(value[:20]) + "…"
        raise _Invalid(f"<{elem.tag}> has no valid {what}: {shown} is not an integer from 0 to {MAX_OFFSET}",
                       elem.sourceline)
    return int(value)


def _document(elem: etree._Element, doc_id: str, source: str, keep_annotations: bool) -> Document:
    # First the offsets and the text present, checked; only then the gaps are filled with spaces.
    layout: list[tuple[etree._Element, int, list[tuple[int, str, etree._Element]]]] = []
    end = present = 0
    for node in elem.iterfind("passage"):
        offset = _offset(node.findtext("offset"), node, "<offset>")
        if offset < end:
            raise _Invalid(f"passage at offset {offset} overlaps the previous passage", node.sourceline)
        text_node = node.find("text")
        if text_node is not None:
            pieces = [(offset, text_of(text_node), node)]
        else:  # a passage given as sentences: its text is rebuilt from them, at their offsets
            pieces = [(_offset(sentence.findtext("offset"), sentence, "<offset>"), sentence.findtext("text") or "",
                       sentence) for sentence in node.iterfind("sentence")]
        end = offset
        for start, text, piece in pieces:
            if start < end:
                raise _Invalid(f"sentence at offset {start} overlaps the previous text", piece.sourceline)
            end = start + len(text)
            present += len(text)
        layout.append((node, offset, pieces))
    if not layout:
        raise _Invalid("<document> without a passage", elem.sourceline)
    if end - present > present + GAP_ALLOWANCE or end > MAX_OFFSET:
        raise _Invalid(f"offsets out of proportion to the text: the passages end at {end} but hold {present} "
                       f"characters (gaps may add up to the text's length plus {GAP_ALLOWANCE})", elem.sourceline)
    document = Document(doc_id, [], source, _infons(elem))
    for node, offset, pieces in layout:
        infons = _infons(node)
        parts: list[str] = []
        position = offset
        for start, text, _ in pieces:
            parts += [" " * (start - position), text]
            position = start + len(text)
        document.passages.append(Passage(infons.pop("type", "text") or "text", offset, "".join(parts), infons))
    if keep_annotations:
        text = document.text
        for passage, (node, _, _) in zip(document.passages, layout):
            for annotation in node.iter("annotation"):
                passage.annotations.append(_span(annotation, passage, text))
    return document


def _span(annotation: etree._Element, passage: Passage, text: str) -> Span:
    locations = [(_offset(loc.get("offset"), loc, "offset"), _offset(loc.get("length"), loc, "length"))
                 for loc in annotation.iterfind("location")]
    if not locations:
        raise _Invalid("<annotation> without a <location>", annotation.sourceline)
    start = min(offset for offset, _ in locations)
    end = max(offset + length for offset, length in locations)
    mention = annotation.findtext("text") or ""
    inside = passage.offset <= start < end <= passage.end
    if not inside or (len(locations) == 1 and text[start:end].split() != mention.split()):
        raise _Invalid(f"annotation {start}-{end} {mention[:80]!r} does not match the passage text "
                       f"({text[start:end][:80]!r})", annotation.sourceline)
    return Span(start, end, text[start:end], _infons(annotation).get("type", ""))
