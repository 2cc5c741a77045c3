"""One tagging run: document sources → pipeline → one output file, written atomically.

:func:`run_tag_job` is `mambaner tag` as a library call: the command line builds one :class:`TagOptions`
and passes it here with a :class:`TagObserver` that draws progress; files and a PubMed fetch are document
sources chained into the same run, so there is one path whatever the documents come from.
:func:`tag_to_file` is the core of it, for callers that already have documents and a model.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from mambaner_cli.document import Document
from mambaner_cli.errors import MambanerError, ReadError
from mambaner_cli.fetch.source import PubmedOptions, PubmedSource
from mambaner_cli.readers import expand_inputs, iter_documents
from mambaner_cli.runtime.pipeline import RunSummary, SentenceTagger, tag_documents
from mambaner_cli.writers import detect_output_format, open_writer


class FailFast(MambanerError):
    """Raised on the first read error when the user asked to stop there."""


@dataclass(frozen=True)
class TagOptions:
    """Everything a `mambaner tag` run was asked, as one value: built once by the command line (or by a
    library caller) and handed to :func:`run_tag_job`."""

    output: str  # a file, or "-" for standard output
    inputs: tuple[str, ...] = ()  # files, directories, globs, "-" for standard input
    output_format: str | None = None  # None: from the output's extension (jsonl for "-")
    input_format: str | None = None  # None: from each file's name and content (text for "-")
    lines: bool = False  # plain text: one document per line
    model: str | None = None  # a shipped model's name or a model directory; None: the embedded default
    batch_size: int = 32
    device: str = "auto"
    convention: str | None = None  # None: the model's default annotation convention
    threads: int = 0  # 0: one per physical core
    fail_fast: bool = False  # stop at the first bad input, writing nothing
    quiet: bool = False  # for the caller's observer: no progress or summary (the job itself prints nothing)
    pubmed: PubmedOptions = field(default_factory=PubmedOptions)  # records to fetch after the files

    @property
    def has_documents(self) -> bool:
        """Whether any document source was given (input paths or PubMed records)."""
        return bool(self.inputs) or self.pubmed.requested


@dataclass
class TagResult:
    """What a run did: its counts and read errors, the model that tagged, and every problem to report."""

    summary: RunSummary
    model_label: str
    problems: list[str]  # read errors, then PMID problems; any makes the run a failure (exit status 1)


class TagObserver(Protocol):
    """What :func:`run_tag_job` tells whoever runs it, as it happens. :class:`SilentObserver` says nothing;
    the command line's observer draws progress bars and error lines on stderr."""

    def warning(self, message: str) -> None:
        """A note that does not fail the run (e.g. a PubMed query phrase that matched nothing)."""

    def fetching(self, total: int) -> contextlib.AbstractContextManager[Callable[[int, int], None]]:
        """Open for as long as ``total`` PubMed records may be fetched; gives the ``(done, total)`` callback."""

    def tagging(self) -> contextlib.AbstractContextManager[Callable[[RunSummary], None]]:
        """Open while documents are tagged; gives the callback that gets the running summary."""

    def error(self, error: ReadError) -> None:
        """A bad input, document or record, as soon as it is met (the run goes on unless fail-fast)."""


class SilentObserver:
    """A :class:`TagObserver` for library callers who read the :class:`TagResult` afterwards."""

    def warning(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def fetching(self, total: int) -> Iterator[Callable[[int, int], None]]:
        yield lambda done, total: None

    @contextlib.contextmanager
    def tagging(self) -> Iterator[Callable[[RunSummary], None]]:
        yield lambda summary: None

    def error(self, error: ReadError) -> None:
        pass


def run_tag_job(options: TagOptions, observer: TagObserver | None = None) -> TagResult:
    """Tag every document of ``options``' sources (the input files, then the PubMed records) with one
    model into one output, and say what went wrong.

    Errors that stop the run before anything is tagged (unknown output extension, bad PMID list or query,
    bad model) raise :class:`MambanerError` in that order; fail-fast raises :class:`FailFast`.
    """
    observer = observer or SilentObserver()
    output_format = options.output_format or detect_output_format(options.output)
    sources: list[Iterable[Document | ReadError]] = []
    if options.inputs:
        sources.append(iter_documents(expand_inputs(options.inputs), input_format=options.input_format,
                                      lines=options.lines))
    pubmed = PubmedSource(options.pubmed, warn=observer.warning) if options.pubmed.requested else None
    with contextlib.ExitStack() as stack:
        if pubmed is not None:
            on_fetch_progress = stack.enter_context(observer.fetching(len(pubmed.pmids)))
            sources.append(pubmed.documents(on_progress=on_fetch_progress))
        tagger = _load_tagger(options)
        with observer.tagging() as on_progress:
            summary = tag_to_file(itertools.chain.from_iterable(sources), tagger, options.output, output_format,
                                  batch_size=options.batch_size, fail_fast=options.fail_fast,
                                  on_error=observer.error, on_progress=on_progress)
        problems = [str(error) for error in summary.errors] + (pubmed.failures() if pubmed else [])
    return TagResult(summary, tagger.label, problems)


def _load_tagger(options: TagOptions) -> SentenceTagger:
    """The model, with the thread policy set first: OMP_WAIT_POLICY is read when torch loads."""
    from mambaner_cli.runtime.device import use_threads

    use_threads(options.threads)
    from mambaner_cli.runtime.load import load_tagger

    return load_tagger(options.model, device=options.device, convention=options.convention)


def tag_to_file(items: Iterable[Document | ReadError], tagger: SentenceTagger, output: str, fmt: str,
                batch_size: int = 32, fail_fast: bool = False,
                on_error: Callable[[ReadError], None] | None = None,
                on_progress: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Tag every document of ``items`` and write them to ``output`` ("-" for stdout) as ``fmt``.

    The output appears only once complete (a crash, Ctrl-C or ``fail_fast`` leaves any earlier file
    untouched). Read errors are collected in the summary; the caller decides the exit status.
    """
    summary = RunSummary()

    def handle_error(error: ReadError) -> None:
        if on_error:
            on_error(error)
        if fail_fast:
            raise FailFast(f"stopped at the first error (--fail-fast): {error}")

    with open_writer(output, fmt, model=tagger.label) as writer:
        for doc in tag_documents(items, tagger, summary, batch_size=batch_size, on_error=handle_error,
                                 on_progress=on_progress):
            writer.write(doc)
    return summary
