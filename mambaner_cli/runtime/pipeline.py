"""The tagging pipeline: documents in, tagged documents out, errors accounted for.

    documents (readers) → sentences and tokens (text) → length-bucketed batches (Tagger) → spans

Documents are taken in chunks of a few hundred sentences so that batches can be sorted by length
across documents while memory stays constant however large the input; tagged documents come out in
input order. Reading and splitting run a chunk or two ahead in a thread of their own, beside the
model. Read errors pass through to the summary; they never stop the other documents.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Full, Queue
from typing import TypeVar

from mambaner_cli.document import Document, Sentence
from mambaner_cli.errors import ReadError
from mambaner_cli.runtime.sentence_tagger import SentenceTagger, TaggedSentence
from mambaner_cli.runtime.spans import spans_from_tags
from mambaner_cli.runtime.workers import SentenceWorkers, result_of
from mambaner_cli.text.sentences import segment_document

T = TypeVar("T")
__all__ = ["RunSummary", "SentenceTagger", "tag_chunk", "tag_documents", "tag_segmented", "tagger_types"]


@dataclass
class RunSummary:
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    mentions: int = 0
    errors: list[ReadError] = field(default_factory=list)
    # problems that cost no document (e.g. a malformed PubTator annotation line): reported, not failures
    warnings: list[ReadError] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def failed_sources(self) -> list[str]:
        return sorted({error.source for error in self.errors})


def tagger_types(tagger: SentenceTagger) -> list[str]:
    """The entity types a tagger can emit, in the order of its labels (``B-Disease`` → ``Disease``)."""
    labels = getattr(tagger, "labels", None) or []  # both taggers have labels; the Protocol does not ask it
    return list(dict.fromkeys(label[2:] for label in labels if label != "O"))


def tag_chunk(documents: list[Document], tagger: SentenceTagger, batch_size: int) -> None:
    """Segment and tag documents in place: fills sentences, their tags and passage annotations."""
    for doc in documents:
        segment_document(doc)
    tag_segmented(documents, tagger, batch_size)


def tag_segmented(documents: list[Document], tagger: SentenceTagger, batch_size: int) -> None:
    """Tag documents already cut into sentences (:func:`segment_document`), in place."""
    tokens = sentence_tokens(documents)
    apply_tags(documents, tagger.tag(tokens, batch_size=batch_size), document_step(tagger))


DocumentStep = Callable[[str, list[Sentence], list[list[float]]], None]


def document_step(tagger: SentenceTagger) -> DocumentStep | None:
    """What a tagger does to a whole document once its sentences are tagged (``finish_document``: the
    scratch recipe's document-level rule, a type filter), or None: a step the pipeline runs, since only it
    sees whole documents, where a tagger sees sentences from many at once."""
    return getattr(tagger, "finish_document", None)


def sentence_tokens(documents: list[Document]) -> list[list[str]]:
    """The token texts of every sentence with tokens, in document order: what a tagger reads."""
    return [[token.text for token in s.tokens] for doc in documents for s in doc.sentences if s.tokens]


def apply_tags(documents: list[Document], tagged: list[TaggedSentence], finish: DocumentStep | None = None
               ) -> None:
    """Put the tags of :func:`sentence_tokens`' sentences (in its order) on them, run ``finish`` on each
    document (:func:`document_step`: it may change tags and confidences in place) and build each passage's
    annotations, in place."""
    sentences = [sentence for doc in documents for sentence in doc.sentences if sentence.tokens]
    for sentence, (tags, _) in zip(sentences, tagged, strict=True):
        sentence.tags = list(tags)
    scores = {id(s): list(sc) for s, (_, sc) in zip(sentences, tagged)}
    for doc in documents:
        text = doc.text
        if finish is not None:
            with_tokens = [sentence for sentence in doc.sentences if sentence.tokens]
            finish(text, with_tokens, [scores[id(sentence)] for sentence in with_tokens])
        for passage in doc.passages:
            passage.annotations = []
            for sentence in passage.sentences:
                if not sentence.tokens:
                    sentence.tags = []
                    continue
                passage.annotations.extend(spans_from_tags(text, sentence.tokens, sentence.tags,
                                                           scores[id(sentence)], sentence.index))


def segmented_chunks(items: Iterable[Document | ReadError], chunk_sentences: int
                     ) -> Iterator[list[Document] | ReadError]:
    """Documents cut into sentences and gathered into chunks of about ``chunk_sentences`` sentences;
    read errors pass through at once, in input order."""
    chunk: list[Document] = []
    pending = 0
    for item in items:
        if isinstance(item, ReadError):
            yield item
            continue
        segment_document(item)
        chunk.append(item)
        pending += len(item.sentences)
        if pending >= chunk_sentences:
            yield chunk
            chunk, pending = [], 0
    if chunk:
        yield chunk


_DONE = object()


def in_background(iterator: Iterator[T], depth: int) -> Iterator[T]:
    """The items of ``iterator``, produced by a thread of their own up to ``depth`` items ahead.

    Reading XML and splitting sentences is Python work, the model's is torch kernels that release the
    GIL: with one in each thread, the two overlap on a multi-core CPU. An exception in the producer is
    raised here, in the consumer; when the consumer stops early (an error, --fail-fast, Ctrl-C), the
    producer stops at its next item.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterator:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:  # noqa: BLE001 — handed over to the consumer, which raises it
            put((None, error))

    thread = threading.Thread(target=produce, name="mambaner-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()


def tag_documents(items: Iterable[Document | ReadError], tagger: SentenceTagger, summary: RunSummary,
                  batch_size: int = 32, chunk_sentences: int = 512,
                  on_error: Callable[[ReadError], None] | None = None,
                  on_warning: Callable[[ReadError], None] | None = None,
                  on_progress: Callable[[RunSummary], None] | None = None,
                  prefetch: int = 2, workers: SentenceWorkers | None = None) -> Iterator[Document]:
    """Tag a stream of documents; read errors go to ``summary.errors`` (and ``on_error``) as they come,
    warnings (``ReadError.warning``: a problem that cost no document) to ``summary.warnings`` (``on_warning``).

    With ``prefetch`` > 0, reading and sentence splitting run in a background thread up to that many
    chunks ahead of the model; 0 does everything in the calling thread. With ``workers`` (processes that
    hold the same tagger: :mod:`.workers`), chunks are tagged there, two per worker in flight, while
    this process reads, splits, builds spans and writes; documents still come out in input order. The
    output is the same either way: the chunks, and so the batches, are the same.
    """
    chunks = segmented_chunks(items, chunk_sentences)
    if prefetch:
        chunks = in_background(chunks, prefetch)
    in_flight: deque[tuple[list[Document], Future]] = deque()

    finish_document = document_step(tagger)

    def finish(documents: list[Document], tagged: list[TaggedSentence]) -> Iterator[Document]:
        apply_tags(documents, tagged, finish_document)
        for doc in documents:
            summary.documents += 1
            summary.sentences += len(doc.sentences)
            summary.tokens += sum(len(s.tokens) for s in doc.sentences)
            summary.mentions += len(doc.annotations)
            yield doc
        if on_progress:
            on_progress(summary)

    for item in chunks:
        if isinstance(item, ReadError):
            if item.warning:  # the document itself comes through: nothing is lost
                summary.warnings.append(item)
                if on_warning:
                    on_warning(item)
                continue
            summary.errors.append(item)
            if on_error:
                on_error(item)
            continue
        if workers is None:
            yield from finish(item, tagger.tag(sentence_tokens(item), batch_size=batch_size))
            continue
        in_flight.append((item, workers.submit(sentence_tokens(item), batch_size)))
        while in_flight and (len(in_flight) > workers.depth or in_flight[0][1].done()):
            documents, result = in_flight.popleft()
            yield from finish(documents, result_of(result))
    while in_flight:
        documents, result = in_flight.popleft()
        yield from finish(documents, result_of(result))
