"""The tagging pipeline: documents in, tagged documents out, errors accounted for.

    documents (readers) → sentences and tokens (text) → length-bucketed batches (Tagger) → spans

Documents are taken in chunks of a few hundred sentences so that batches can be sorted by length
across documents while memory stays constant however large the input; tagged documents come out in
input order. Read errors pass through to the summary; they never stop the other documents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from mambaner_cli.document import Document
from mambaner_cli.errors import ReadError
from mambaner_cli.runtime.spans import spans_from_tags
from mambaner_cli.text.sentences import segment_document


class SentenceTagger(Protocol):
    name: str

    def tag(self, sentences: list[list[str]], batch_size: int = 32) -> list[tuple[list[str], list[float]]]: ...


@dataclass
class RunSummary:
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    mentions: int = 0
    errors: list[ReadError] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def failed_sources(self) -> list[str]:
        return sorted({error.source for error in self.errors})


def tag_chunk(documents: list[Document], tagger: SentenceTagger, batch_size: int) -> None:
    """Segment and tag documents in place: fills sentences, their tags and passage annotations."""
    sentences = []
    for doc in documents:
        segment_document(doc)
        sentences.extend(sentence for sentence in doc.sentences if sentence.tokens)
    tagged = tagger.tag([[token.text for token in s.tokens] for s in sentences], batch_size=batch_size)
    for sentence, (tags, _) in zip(sentences, tagged):
        sentence.tags = tags
    scores = {id(s): sc for s, (_, sc) in zip(sentences, tagged)}
    for doc in documents:
        text = doc.text
        for passage in doc.passages:
            passage.annotations = []
            for sentence in passage.sentences:
                if not sentence.tokens:
                    sentence.tags = []
                    continue
                passage.annotations.extend(spans_from_tags(text, sentence.tokens, sentence.tags,
                                                           scores[id(sentence)], sentence.index))


def tag_documents(items: Iterable[Document | ReadError], tagger: SentenceTagger, summary: RunSummary,
                  batch_size: int = 32, chunk_sentences: int = 512,
                  on_error: Callable[[ReadError], None] | None = None,
                  on_progress: Callable[[RunSummary], None] | None = None) -> Iterator[Document]:
    """Tag a stream of documents; read errors go to ``summary.errors`` (and ``on_error``) as they come."""
    chunk: list[Document] = []
    pending_sentences = 0

    def flush() -> Iterator[Document]:
        tag_chunk(chunk, tagger, batch_size)
        for doc in chunk:
            summary.documents += 1
            summary.sentences += len(doc.sentences)
            summary.tokens += sum(len(s.tokens) for s in doc.sentences)
            summary.mentions += len(doc.annotations)
            yield doc
        chunk.clear()
        if on_progress:
            on_progress(summary)

    for item in items:
        if isinstance(item, ReadError):
            summary.errors.append(item)
            if on_error:
                on_error(item)
            continue
        chunk.append(item)
        # A cheap estimate of the sentences a document holds, without splitting it twice.
        pending_sentences += 1 + sum(p.text.count(". ") for p in item.passages)
        if pending_sentences >= chunk_sentences:
            yield from flush()
            pending_sentences = 0
    if chunk:
        yield from flush()
