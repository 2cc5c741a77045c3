"""BioC XML (collection / document / passage): the format PubTator Central and most corpora ship.

Passage text is kept as it is (no whitespace normalization): BioC offsets index it. A passage given as
sentences gets its text rebuilt from them, at their offsets. With ``keep_annotations=True`` the
annotations come along as Spans (label = the ``type`` infon).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from lxml import etree

from ..document import Document, Passage, Span
from ..errors import ReadError
from ..formats import INPUT_FORMATS
from ._xml import iter_records, text_of

name = "bioc"
extensions = INPUT_FORMATS[name].extensions  # the registry owns them; here for the reader interface

_COLLECTION_ROOT = re.compile(rb"<collection[\s>]")


def sniff(head: bytes) -> bool:
    """Whether a file's first bytes hold a BioC ``<collection>`` root: PubTator Central and corpora ship
    BioC as plain .xml, the extension PubMed XML has too, so for .xml the root tells them apart."""
    return _COLLECTION_ROOT.search(head) is not None


class _Invalid(Exception):
    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def read(stream: BinaryIO, source: str, *, keep_annotations: bool = False, **_options: object
         ) -> Iterator[Document | ReadError]:
    """Stream the documents of a BioC collection in constant memory."""
    hint = "; is it BioC XML? Pick the reader with --input-format"
    for elem in iter_records(stream, source, ("document",), "collection", hint=hint):
        doc_id = (elem.findtext("id") or "").strip()
        try:
            if not doc_id:
                raise _Invalid("<document> without an <id>", elem.sourceline)
            result: Document | ReadError = _document(elem, doc_id, source, keep_annotations)
        except _Invalid as error:
            result = ReadError(source, str(error), line=error.line, doc_id=doc_id or None)
        yield result


def _infons(elem: etree._Element) -> dict[str, str]:
    return {infon.get("key", ""): infon.text or "" for infon in elem.iterfind("infon")}


def _int(value: str | None, elem: etree._Element, what: str) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Invalid(f"<{elem.tag}> without a valid {what}", elem.sourceline) from None


def _document(elem: etree._Element, doc_id: str, source: str, keep_annotations: bool) -> Document:
    document = Document(doc_id, [], source, _infons(elem))
    for node in elem.iterfind("passage"):
        infons = _infons(node)
        offset = _int(node.findtext("offset"), node, "<offset>")
        text_node = node.find("text")
        text = text_of(text_node) if text_node is not None else _sentence_text(node, offset)
        if document.passages and offset < document.passages[-1].end:
            raise _Invalid(f"passage at offset {offset} overlaps the previous passage", node.sourceline)
        document.passages.append(Passage(infons.pop("type", "text") or "text", offset, text, infons))
    if not document.passages:
        raise _Invalid("<document> without a passage", elem.sourceline)
    if keep_annotations:
        text = document.text
        for passage, node in zip(document.passages, elem.iterfind("passage")):
            for annotation in node.iter("annotation"):
                passage.annotations.append(_span(annotation, passage, text))
    return document


def _sentence_text(passage: etree._Element, offset: int) -> str:
    parts: list[str] = []
    position = offset
    for sentence in passage.iterfind("sentence"):
        start = _int(sentence.findtext("offset"), sentence, "<offset>")
        if start < position:
            raise _Invalid(f"sentence at offset {start} overlaps the previous text", sentence.sourceline)
        parts += [" " * (start - position), sentence.findtext("text") or ""]
        position = start + len(parts[-1])
    return "".join(parts)


def _span(annotation: etree._Element, passage: Passage, text: str) -> Span:
    locations = [(_int(loc.get("offset"), loc, "offset"), _int(loc.get("length"), loc, "length"))
                 for loc in annotation.iterfind("location")]
    if not locations:
        raise _Invalid("<annotation> without a <location>", annotation.sourceline)
    start = min(offset for offset, _ in locations)
    end = max(offset + length for offset, length in locations)
    mention = annotation.findtext("text") or ""
    inside = passage.offset <= start < end <= passage.end
    if not inside or (len(locations) == 1 and text[start:end].split() != mention.split()):
        raise _Invalid(f"annotation {start}-{end} {mention!r} does not match the passage text "
                       f"({text[start:end]!r})", annotation.sourceline)
    return Span(start, end, text[start:end], _infons(annotation).get("type", ""))
