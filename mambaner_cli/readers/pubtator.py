"""PubTator files: ``PMID|t|title``, ``PMID|a|abstract``, tab-separated annotation lines, blank lines
between documents.

Annotations are skipped unless ``keep_annotations=True`` (evaluation reads gold mentions this way);
then each becomes a Span in the passage it falls in, checked against the text (up to whitespace) so that
a corrupt file cannot silently shift the gold standard. Relation lines (``PMID<TAB>CID<TAB>…``) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..document import Document, Span, make_document
from ..errors import ReadError
from ..formats import INPUT_FORMATS
from .text import decode

name = "pubtator"
extensions = INPUT_FORMATS[name].extensions  # the registry owns them; here for the reader interface

_TEXT_LINE = re.compile(r"([^|\t]+)\|([ta])\|(.*)")
_FIRST_TEXT_LINE = re.compile(rb"\s*[^\s|]+\|[ta]\|")


def sniff(head: bytes) -> bool:
    """Whether a file's first bytes are PubTator (``PMID|t|title``): corpora ship PubTator as plain .txt
    (e.g. NCBItestset_corpus.txt), so for .txt the content, not the name, tells it from plain text."""
    return _FIRST_TEXT_LINE.match(head) is not None


@dataclass
class _Record:
    pmid: str
    title: str | None = None
    abstract: str | None = None
    # (line number, start, end, mention, type)
    annotations: list[tuple[int, int, int, str, str]] = field(default_factory=list)


class _Malformed(Exception):
    pass


def read(stream: BinaryIO, source: str, *, keep_annotations: bool = False, **_options: object
         ) -> Iterator[Document | ReadError]:
    """Stream the documents line by line; a malformed line spoils only its own document."""
    record: _Record | None = None
    skipping: str | None = None  # the PMID of a bad document whose remaining lines are skipped
    for number, raw in enumerate(stream, 1):
        line = decode(raw, source, number).rstrip("\r\n")
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            if record:
                yield _build(record, source, keep_annotations)
            record, skipping = None, None
            continue
        match = _TEXT_LINE.fullmatch(line)
        if skipping is not None and not (match and match[2] == "t" and match[1] != skipping):
            continue
        skipping = None
        try:
            if match:
                pmid, kind, text = match.groups()
                if record and pmid != record.pmid and kind == "t":  # no blank line between documents
                    yield _build(record, source, keep_annotations)
                    record = None
                record = record or _Record(pmid)
                if pmid != record.pmid:
                    raise _Malformed(f"line for PMID {pmid} inside the document of PMID {record.pmid}")
                if (record.title if kind == "t" else record.abstract) is not None:
                    raise _Malformed(f"second |{kind}| line")
                setattr(record, "title" if kind == "t" else "abstract", text)
            else:
                _add_annotation(record, line, number)
        except _Malformed as error:
            doc_id = record.pmid if record else None
            yield ReadError(source, str(error), line=number, doc_id=doc_id)
            record, skipping = None, doc_id or ""
    if record:
        yield _build(record, source, keep_annotations)


def _add_annotation(record: _Record | None, line: str, number: int) -> None:
    fields = line.split("\t")
    if len(fields) < 4:
        raise _Malformed("not a PubTator line (expected PMID|t|, PMID|a| or a tab-separated annotation)")
    if record is None or fields[0] != record.pmid:
        raise _Malformed(f"annotation line for PMID {fields[0]} outside its document")
    if len(fields) >= 5 and fields[1].isdigit() and fields[2].isdigit():
        record.annotations.append((number, int(fields[1]), int(fields[2]), fields[3], fields[4]))
    elif fields[1].isdigit() or fields[2].isdigit():
        raise _Malformed("annotation line needs PMID, start, end, mention, type")
    # otherwise a relation line (PMID, relation type, concept, concept): not needed here


def _build(record: _Record, source: str, keep_annotations: bool) -> Document | ReadError:
    document = make_document(record.pmid, record.title, record.abstract, source)
    if not keep_annotations:
        return document
    text = document.text
    for number, start, end, mention, label in record.annotations:
        passage = next((p for p in document.passages if p.offset <= start < end <= p.end), None)
        if passage is None or text[start:end].split() != mention.split():  # NCBI has stray trailing spaces
            return ReadError(source, f"annotation {start}-{end} {mention!r} does not match the text "
                             f"({text[start:end]!r})", line=number, doc_id=record.pmid)
        passage.annotations.append(Span(start, end, text[start:end], label))
    return document
