"""PubTator files: ``PMID|t|title``, ``PMID|a|abstract``, tab-separated annotation lines, blank lines
between documents.

Real PubTator files carry more than mentions, and not always cleanly, so a line costs as little as it can:

- a relation line (any tab-separated line whose second field is not an offset: BC5CDR's
  ``PMID<TAB>CID<TAB>D…<TAB>D…``, PubTator3's ``PMID<TAB>Association<TAB>…``) is accepted and ignored;
- a malformed annotation line (``PMID<TAB>start<TAB>…`` without a valid end, mention and type, or for another
  PMID) or a line that is not PubTator at all costs that line: a *warning* ReadError (``warning=True``)
  naming file:line, and the document is still read;
- a title or abstract line that cannot be read (a second ``|t|`` for the same PMID, undecodable bytes)
  costs its document: a ReadError, and the reader goes on with the next one.

Annotations are skipped unless ``keep_annotations=True`` (evaluation reads gold mentions this way); then
each becomes a Span in the passage it falls in, checked against the text (up to whitespace) so that a corrupt
file cannot silently shift the gold standard: one that does not match costs that annotation (a warning
naming file:line), not the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..document import Document, Span, make_document
from ..errors import InputError, ReadError
from ..formats import INPUT_FORMATS, sniffable
from .text import iter_lines

name = "pubtator"
extensions = INPUT_FORMATS[name].extensions  # the registry owns them; here for the reader interface

_TEXT_LINE = re.compile(r"([^|\t]+)\|([ta])\|(.*)")
_FIRST_TEXT_LINE = re.compile(rb"\s*[^\s|]+\|[ta]\|")
#: An offset: ASCII digits only (``str.isdigit`` takes "²", which ``int`` refuses), and few enough of them
#: that ``int`` stays cheap: anything longer cannot index a real document anyway.
_OFFSET = re.compile(r"[0-9]{1,18}")


def sniff(head: bytes) -> bool:
    """Whether a file's first bytes are PubTator (``PMID|t|title``): corpora ship PubTator as plain .txt
    (e.g. NCBItestset_corpus.txt), so for .txt the content, not the name, tells it from plain text."""
    return _FIRST_TEXT_LINE.match(sniffable(head)) is not None


@dataclass
class _Record:
    pmid: str
    title: str | None = None
    abstract: str | None = None
    # (line number, start, end, mention, type)
    annotations: list[tuple[int, int, int, str, str]] = field(default_factory=list)


class _LineProblem(Exception):
    """A line that costs only itself."""


class _DocumentProblem(Exception):
    """A line that spoils its whole document."""


def read(stream: BinaryIO, source: str, *, keep_annotations: bool = False, encoding: str = "utf-8",
         errors: str = "strict", **_options: object) -> Iterator[Document | ReadError]:
    """Stream the documents line by line; a bad line costs itself, a bad title or abstract its document.

    Raises InputError for a file with nothing but whitespace or without a single ``PMID|t|``/``PMID|a|`` line.
    """
    record: _Record | None = None
    skipping: str | None = None  # the PMID of a bad document whose remaining lines are skipped
    content = documents = False
    for number, line, undecodable in iter_lines(stream, encoding, errors):
        line = line.rstrip("\r")
        if not line.strip():
            if record:
                yield from _build(record, source, keep_annotations)
            record, skipping = None, None
            continue
        content = True
        match = _TEXT_LINE.fullmatch(line)
        if skipping is not None and not (match and match[2] == "t" and match[1] != skipping):
            continue
        skipping = None
        try:
            if match:
                documents = True
                pmid, kind, text = match.groups()
                if record and pmid != record.pmid:  # the next document, without a blank line before it
                    yield from _build(record, source, keep_annotations)
                    record = None
                record = record or _Record(pmid)
                if undecodable:
                    raise _DocumentProblem(undecodable)
                if (record.title if kind == "t" else record.abstract) is not None:
                    raise _DocumentProblem(f"second |{kind}| line for PMID {pmid}")
                setattr(record, "title" if kind == "t" else "abstract", text)
            else:
                if undecodable:
                    raise _LineProblem(undecodable)
                _add_annotation(record, line, number)
        except _LineProblem as problem:
            yield ReadError(source, f"{problem}; line ignored", line=number,
                            doc_id=record.pmid if record else None, warning=True)
        except _DocumentProblem as problem:
            doc_id = record.pmid if record else None
            yield ReadError(source, str(problem), line=number, doc_id=doc_id)
            record, skipping = None, doc_id or ""
    if record:
        yield from _build(record, source, keep_annotations)
    if not content:
        raise InputError(source, "empty file")
    if not documents:
        raise InputError(source, "no PubTator document in the file (no PMID|t|title or PMID|a|abstract line); "
                                 "is it PubTator? Pick the reader with --input-format")


def _add_annotation(record: _Record | None, line: str, number: int) -> None:
    fields = line.split("\t")
    if len(fields) < 2:
        raise _LineProblem("not a PubTator line (expected PMID|t|, PMID|a| or tab-separated fields)")
    if not _OFFSET.fullmatch(fields[1]):
        return  # a relation line (PMID, relation type, concepts…): not needed here
    if len(fields) < 5 or not _OFFSET.fullmatch(fields[2]):
        raise _LineProblem("annotation line needs PMID, start, end, mention, type")
    if record is None or fields[0] != record.pmid:
        raise _LineProblem(f"annotation line for PMID {fields[0]} outside its document")
    record.annotations.append((number, int(fields[1]), int(fields[2]), fields[3], fields[4]))


def _build(record: _Record, source: str, keep_annotations: bool) -> Iterator[Document | ReadError]:
    """The record's document, after a warning for each annotation that does not match its text."""
    document = make_document(record.pmid, record.title, record.abstract, source)
    if keep_annotations:
        text = document.text
        for number, start, end, mention, label in record.annotations:
            passage = next((p for p in document.passages if p.offset <= start < end <= p.end), None)
            if passage is None or text[start:end].split() != mention.split():  # NCBI has stray trailing spaces
                yield ReadError(source, f"annotation {start}-{end} {_short(mention)} does not match the text "
                                f"({_short(text[start:end])}); annotation ignored", line=number,
                                doc_id=record.pmid, warning=True)
                continue
            passage.annotations.append(Span(start, end, text[start:end], label))
    yield document


def _short(text: str, limit: int = 80) -> str:
    """``repr(text)``, cut short: a wild end offset would otherwise put the whole document in the message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"
