"""The records every reader yields and every writer consumes.

Offsets follow BioC and PubTator: every offset is a *document* offset, i.e. an index into
``Document.text``, the passages laid end to end at their own offsets (the title at 0, the abstract at
``len(title) + 1``; any gap is filled with spaces). ``Span.text == Document.text[span.start:span.end]``
always holds: that is the invariant the tests check for every writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Token:
    start: int  # document offset of the first character
    end: int  # document offset one past the last character
    text: str


@dataclass
class Span:
    """A mention: a labelled character range of a document."""

    start: int
    end: int
    text: str
    label: str
    score: float = 1.0
    sentence_index: int = -1  # index of the sentence in the whole document; -1 when unknown


@dataclass
class Sentence:
    start: int
    end: int
    text: str
    tokens: list[Token] = field(default_factory=list)
    index: int = 0  # position of the sentence in the whole document (0-based)
    # one IOB2 tag per token once tagged ("B-Disease", "I-Disease", "O")
    tags: list[str] = field(default_factory=list)


@dataclass
class Passage:
    type: str  # "title", "abstract" or "text"
    offset: int  # document offset of the passage's first character
    text: str
    infons: dict[str, str] = field(default_factory=dict)
    sentences: list[Sentence] = field(default_factory=list)
    annotations: list[Span] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.offset + len(self.text)


@dataclass
class Document:
    id: str
    passages: list[Passage]
    source: str = ""  # the file (or "<stdin>", or "pubmed") the document came from
    infons: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The passages at their offsets, gaps filled with spaces."""
        parts: list[str] = []
        position = 0
        for passage in self.passages:
            if passage.offset > position:
                parts.append(" " * (passage.offset - position))
                position = passage.offset
            parts.append(passage.text)
            position += len(passage.text)
        return "".join(parts)

    @property
    def annotations(self) -> list[Span]:
        return [span for passage in self.passages for span in passage.annotations]

    @property
    def sentences(self) -> list[Sentence]:
        return [sentence for passage in self.passages for sentence in passage.sentences]


def make_document(doc_id: str, title: str | None, abstract: str | None, source: str = "",
                  abstract_infons: dict[str, str] | None = None) -> Document:
    """A PubMed-style document: a title passage at 0 and an abstract passage after one space.

    Either part may be missing or empty; an empty abstract is left out. A document with neither is
    still a document (it appears in every output, with no mention).
    """
    passages: list[Passage] = []
    title = title or ""
    passages.append(Passage("title", 0, title))
    if abstract:
        passages.append(Passage("abstract", len(title) + 1, abstract, dict(abstract_infons or {})))
    return Document(doc_id, passages, source)
