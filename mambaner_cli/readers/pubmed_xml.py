"""PubMed XML as efetch and the annual baseline/update files give it.

Every ``PubmedArticle`` and ``PubmedBookArticle`` becomes a title + abstract document keyed by PMID;
``DeleteCitation`` blocks yield no document; their PMIDs go to the caller's ``on_deleted`` callback, if any
(a corpus run records them, so that earlier outputs can drop those records). Structured abstracts keep their section labels ("LABEL: text"),
as PubMed shows them, so that the tagged text reads like the abstract on the website.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import BinaryIO

from lxml import etree

from ..document import Document, make_document
from ..errors import ReadError
from ..formats import INPUT_FORMATS
from ._xml import iter_records, normalize_space, text_of

name = "pubmed"
extensions = INPUT_FORMATS[name].extensions  # the registry owns them; here for the reader interface

_ROOT_HINT = "; is it PubMed XML? Pick the reader with --input-format"
RECORDS = ("PubmedArticle", "PubmedBookArticle", "DeleteCitation")

# per record kind: where the PMID, the title candidates (first non-empty wins) and the abstract are
_PATHS = {
    "PubmedArticle": ("MedlineCitation/PMID",
                      ("MedlineCitation/Article/ArticleTitle", "MedlineCitation/Article/VernacularTitle"),
                      "MedlineCitation/Article/Abstract/AbstractText"),
    "PubmedBookArticle": ("BookDocument/PMID",
                          ("BookDocument/ArticleTitle", "BookDocument/Book/BookTitle",
                           "BookDocument/VernacularTitle"),
                          "BookDocument/Abstract/AbstractText"),
}


def read(stream: BinaryIO, source: str, *, encoding: str = "utf-8", errors: str = "strict",
         on_deleted: Callable[[str], None] | None = None, **_options: object) -> Iterator[Document | ReadError]:
    """Stream the articles of a PubmedArticleSet file in constant memory; an article with bytes that do
    not decode (``errors="strict"``) is a ReadError, the others are still read. Each PMID that a
    ``DeleteCitation`` lists is passed to ``on_deleted`` as it is met (update files withdraw records that
    earlier files gave)."""
    records = iter_records(stream, source, RECORDS, "PubmedArticleSet", hint=_ROOT_HINT, encoding=encoding,
                           errors=errors)
    for elem in records:
        if elem.tag == "DeleteCitation":
            if on_deleted is not None:
                for pmid in elem.iterfind("PMID"):
                    if text := normalize_space(text_of(pmid)):
                        on_deleted(text)
            continue
        if records.undecodable:
            line, message = records.undecodable
            pmid = normalize_space(elem.findtext(_PATHS[elem.tag][0]) or "")
            yield ReadError(source, message, line=line, doc_id=pmid or None)
        else:
            yield _document(elem, source)


def read_bytes(data: bytes, source: str) -> Iterator[Document | ReadError]:
    """Articles from XML already in memory (an E-utilities response)."""
    return read(io.BytesIO(data), source)


def _document(elem: etree._Element, source: str) -> Document | ReadError:
    pmid_path, title_paths, abstract_path = _PATHS[elem.tag]
    pmid = normalize_space(elem.findtext(pmid_path) or "")
    if not pmid:
        return ReadError(source, f"<{elem.tag}> without a PMID", line=elem.sourceline)
    title = next((text for path in title_paths for node in elem.iterfind(path)
                  if (text := normalize_space(text_of(node)))), "")
    abstract_offset = len(title) + 1
    parts: list[str] = []
    sections: list[list[object]] = []
    position = 0
    for node in elem.iterfind(abstract_path):
        text = normalize_space(text_of(node))
        if not text:
            continue
        label = normalize_space(node.get("Label") or "")
        part = f"{label}: {text}" if label else text
        if parts:
            position += 1
        sections.append([label, abstract_offset + position, abstract_offset + position + len(part)])
        parts.append(part)
        position += len(part)
    infons = {"sections": json.dumps(sections)} if any(label for label, _, _ in sections) else None
    return make_document(pmid, title, " ".join(parts), source, infons)
