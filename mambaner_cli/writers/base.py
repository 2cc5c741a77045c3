"""The interface every output writer implements.

A writer is handed an already-open binary stream (a temporary file from
:func:`mambaner_cli.writers.atomic_output`, or ``sys.stdout.buffer``) and receives tagged documents one
at a time, so that a run over all of PubMed holds one document in memory, not the whole output. The
stream belongs to the caller: :meth:`Writer.close` finishes the *format* (closing tags, Parquet footer)
and flushes, but never closes the stream, so the caller can still rename or sync the file.
"""

from __future__ import annotations

from typing import BinaryIO, ClassVar

from ..document import Document
from ..formats import OUTPUT_FORMATS


class _RegisteredExtensions:
    """``Writer.extensions``, read from the format registry: a writer declares only its ``name``, so that
    which file names pick which format is written down once (:mod:`mambaner_cli.formats`)."""

    def __get__(self, instance: Writer | None, owner: type[Writer]) -> tuple[str, ...]:
        registered = OUTPUT_FORMATS.get(owner.name)
        return registered.extensions if registered else ()


class Writer:
    """Base class: subclasses set :attr:`name` (their registry entry) and implement
    :meth:`_write_document` and, if the format has a footer, :meth:`_finish`."""

    name: ClassVar[str] = ""
    extensions: ClassVar[tuple[str, ...]] = _RegisteredExtensions()  # type: ignore[assignment]

    def __init__(self, stream: BinaryIO, *, model: str = "", source: str = "mambaner") -> None:
        self.stream = stream
        self.model = model  # name of the model that produced the tags, recorded in the output
        self.source = source  # producer name where the format has a place for it (BioC <source>)
        self.documents_written = 0
        self._closed = False

    def write(self, doc: Document) -> None:
        """Append one document. Every document appears in the output, with or without mentions."""
        if self._closed:
            raise ValueError(f"{type(self).__name__} is closed; cannot write document {doc.id}")
        self._write_document(doc)
        self.documents_written += 1

    def close(self) -> None:
        """Finish the file (footer, closing tags) and flush. Idempotent; leaves the stream open."""
        if self._closed:
            return
        self._closed = True
        self._finish()
        self.stream.flush()

    def _write_document(self, doc: Document) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Write whatever the format needs after the last document; nothing by default."""
