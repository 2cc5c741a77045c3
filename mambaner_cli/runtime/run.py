"""One tagging run: document sources → pipeline → one output file, written atomically.

:func:`run_tag_job` is `mambaner tag` as a library call: the command line builds one :class:`TagOptions`
and passes it here with a :class:`TagObserver` that draws progress; files and a PubMed fetch are document
sources chained into the same run, so there is one path whatever the documents come from.
:func:`tag_to_file` is the core of it, for callers that already have documents and a model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mambaner_cli import formats
from mambaner_cli.document import Document, Sentence
from mambaner_cli.errors import MambanerError, MambanerUsageError, ReadError
from mambaner_cli.fetch.source import PubmedOptions, PubmedSource
from mambaner_cli.metrics import only_types
from mambaner_cli.readers import expand_inputs, iter_documents
from mambaner_cli.readers.text import check_decoding
from mambaner_cli.runtime.pipeline import (
    RunSummary,
    SentenceTagger,
    document_step,
    tag_documents,
    tagger_types,
)
from mambaner_cli.runtime.sentence_tagger import TaggedSentence
from mambaner_cli.runtime.workers import SentenceWorkers, worker_pool
from mambaner_cli.writers import check_output, open_writer, output_format, output_target


class FailFast(MambanerError):
    """Raised on the first read error when the user asked to stop there."""


class _KeepPrevious(Exception):
    """Raised inside the writer when nothing was tagged and every input failed: the temporary file is
    dropped, so the previous output stays as it was instead of being replaced by an empty one."""


#: What ``--encoding-errors`` offers: stop at an undecodable byte, or decode it as U+FFFD.
ENCODING_ERRORS = ("strict", "replace")


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
    # the run-time rules beside the network (runtime/tagger.py: variant patterns, bracket cuts, short forms); False: --network-only
    rules: bool = True
    # only mentions of these entity types, each one the model tags (checked when the model loads); (): all
    types: tuple[str, ...] = ()
    threads: int = 0  # 0: one per physical core but one (device.tagging_threads)
    fail_fast: bool = False  # stop at the first bad input, writing nothing
    encoding: str = "utf-8"  # of text inputs without a byte-order mark (XML: its declaration first)
    encoding_errors: str = "strict"  # strict: an undecodable input (or line, with lines) is an error
    quiet: bool = False  # for the caller's observer: no progress or summary (the job itself prints nothing)
    pubmed: PubmedOptions = field(default_factory=PubmedOptions)  # records to fetch after the files
    # processes that tag (runtime/workers.py); 0: one per physical core on a CPU (device.tagging_workers)
    workers: int = 0
    # directory outputs only (runtime/corpus.py): re-tag inputs already done
    overwrite: bool = False
    # directory outputs only: "local" (this machine's processes) or "ray" (runtime/ray_engine.py), and the
    # Ray cluster to join (None: an embedded local Ray, started and stopped by the run)
    engine: str = "local"
    ray_address: str | None = None

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
    output_kept: bool = False  # nothing could be tagged, so the output file already there was left as it was


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

    Everything that would stop the run is checked before any input is read, in this order, raising
    :class:`MambanerUsageError` (the command line's exit status 2) or :class:`MambanerError`: the output
    format, the encoding, the output path (see :func:`~mambaner_cli.writers.check_output`), the inputs
    (the output among them, or no input file at all), the PMID list or query, the model and ``types``
    (each one a type the model tags; see :func:`select_types`). Fail-fast
    raises :class:`FailFast`. When no document could be tagged and something failed, an output file
    already there is left untouched (``output_kept``).
    """
    observer = observer or SilentObserver()
    fmt = output_format(options.output, options.output_format)
    check_encoding(options.encoding, options.encoding_errors)
    check_output(options.output)
    sources: list[Iterable[Document | ReadError]] = []
    inputs = input_paths(options, observer)
    if inputs:
        sources.append(iter_documents(inputs, input_format=options.input_format, lines=options.lines,
                                      encoding=options.encoding, errors=options.encoding_errors))
    pubmed = PubmedSource(options.pubmed, warn=observer.warning) if options.pubmed.requested else None
    problems: list[str] = []

    def replace_output(summary: RunSummary) -> bool:
        """Called once every document is written: gathers the problems and says whether the output
        replaces what is there (not when nothing was tagged because everything failed)."""
        problems.extend(str(error) for error in summary.errors)
        problems.extend(pubmed.failures() if pubmed else [])
        return summary.documents > 0 or not problems

    with contextlib.ExitStack() as stack:
        options = with_workers_resolved(options)
        tagger = _load_tagger(options if options.workers == 1 else parent_options(options))
        stack.enter_context(run_kernels(options, inputs))  # before workers start: they read it
        # before the progress display's and the reader's threads start (workers may be forked from here)
        workers = stack.enter_context(sentence_workers(options, tagger))
        if pubmed is not None:
            on_fetch_progress = stack.enter_context(observer.fetching(len(pubmed.pmids)))
            sources.append(pubmed.documents(on_progress=on_fetch_progress))
        with observer.tagging() as on_progress:
            summary, replaced = _tag_into(itertools.chain.from_iterable(sources), tagger, options.output, fmt,
                                          batch_size=options.batch_size, fail_fast=options.fail_fast,
                                          on_error=observer.error, on_progress=on_progress,
                                          on_warning=lambda warning: observer.warning(str(warning)),
                                          replace_output=replace_output, workers=workers)
    return TagResult(summary, tagger.label, problems, output_kept=not replaced)


def check_encoding(encoding: str, errors: str) -> None:
    """A usage error unless ``encoding`` is a text encoding and ``errors`` one of :data:`ENCODING_ERRORS`."""
    if errors not in ENCODING_ERRORS:
        raise MambanerUsageError(f"unknown encoding error handling '{errors}'; choose one of "
                                 f"{', '.join(ENCODING_ERRORS)}")
    try:
        check_decoding(encoding, errors)
    except MambanerError as error:
        raise MambanerUsageError(str(error)) from None


def input_paths(options: TagOptions, observer: TagObserver) -> list[str]:
    """The input files of a run, its directories and globs expanded, refused before anything is read
    when one of them is the output (writing it would destroy the input).

    The output is left out of directory and glob expansion (and so are its temporary files), so a run
    whose output lies in its input folder does not read the previous run's output back. A directory or
    glob that gives no input file is a usage error when nothing else gives documents ("no inputs"), a
    warning otherwise. A named input that cannot be read is not refused here: the reader reports it.
    """
    exclude = () if options.output == "-" else (options.output,)
    paths: list[str] = []
    empty: list[str] = []
    for pattern in options.inputs:
        found = expand_inputs([pattern], exclude=exclude)
        if found:
            paths.extend(found)
        else:
            empty.append(pattern)
    paths = list(dict.fromkeys(paths))
    for path in paths:
        if _same_file(path, options.output):
            same = "" if path == options.output else f" ('{path}')"
            raise MambanerUsageError(f"the output '{options.output}' is also an input{same}: writing it would "
                                     "destroy the input; choose another output file")
    if empty:
        extensions = ", ".join(formats.INPUT_EXTENSIONS)
        message = (f"no input file in {', '.join(repr(pattern) for pattern in empty)} (directories and globs give "
                   f"files ending in {extensions}, gzipped or not, and leave out hidden files and the output)")
        if not paths and not options.pubmed.requested:
            raise MambanerUsageError(f"no inputs: {message}")
        observer.warning(message)
    return paths


def _same_file(path: str, output: str) -> bool:
    """Whether input ``path`` and ``output`` are one file, however each is spelled (links, ``./``,
    hard links); when either is not there yet, by their resolved paths."""
    if path == "-" or output == "-":
        return False
    try:
        return os.path.samefile(path, output)
    except OSError:
        return os.path.realpath(path) == os.path.realpath(output)


def with_workers_resolved(options: TagOptions, per_file: bool = False) -> TagOptions:
    """``options`` with ``workers`` 0 replaced by the number it means here (device.tagging_workers; ``per_file``:
    a corpus run, whose workers take whole files), so that a run decides it once."""
    from mambaner_cli.runtime.device import tagging_workers

    return dataclasses.replace(options, workers=tagging_workers(options.workers, options.device, per_file))


def run_kernels(options: TagOptions, paths: Sequence[str]) -> contextlib.AbstractContextManager[str]:
    """$MAMBANER_KERNELS ``auto`` resolved for a run that reads the files ``paths``, for its length and its
    workers' (:func:`~mambaner_cli.model.ops.numba_infer.kernels_for_run`): the compiled kernels from
    ``AUTO_NUMBA_BYTES`` of input on. Call after :func:`_load_tagger`, which checks the variable."""
    from mambaner_cli.model.ops.numba_infer import kernels_for_run
    from mambaner_cli.runtime.device import pick_device

    return kernels_for_run(sum(_file_size(path) for path in paths), pick_device(options.device).type == "cpu")


def _file_size(path: str) -> int:
    """Bytes of an input file; 0 for standard input, a remote object or a file that cannot be read (its
    reader reports that)."""
    try:
        return os.path.getsize(path) if path != "-" else 0
    except OSError:
        return 0


def parent_options(options: TagOptions) -> TagOptions:
    """The options of a process whose workers tag: one torch thread, since it runs no batch, and because a
    process whose OpenMP has started a thread team must not fork workers that use OpenMP."""
    return dataclasses.replace(options, threads=1)


def run_workers(options: TagOptions, count: int, *, tagger: SentenceTagger | None = None,
                state: dict | None = None) -> contextlib.AbstractContextManager:
    """:func:`~mambaner_cli.runtime.workers.worker_pool` for a run of ``options``: ``count`` workers, each
    with its share of the cores (or ``--threads``), forked with ``tagger`` where that is safe, else each
    loading the same model with the same options."""
    from mambaner_cli.runtime.device import worker_threads

    threads = worker_threads(options.threads, count)
    load = functools.partial(_load_tagger, dataclasses.replace(options, threads=threads, workers=1))
    return worker_pool(count, threads, load, tagger=tagger, device=options.device, state=state)


@contextlib.contextmanager
def sentence_workers(options: TagOptions, tagger: SentenceTagger) -> Iterator[SentenceWorkers | None]:
    """The worker processes of a one-output run (``options.workers``, resolved; see :mod:`.workers`) for
    the length of a block; None when one process tags."""
    if options.workers <= 1:
        yield None
        return
    with run_workers(options, options.workers, tagger=tagger) as pool:
        yield SentenceWorkers(pool, options.workers)


def _load_tagger(options: TagOptions) -> SentenceTagger:
    """The model, with the thread policy set first (OMP_WAIT_POLICY is read when torch loads); with
    ``options.types``, wrapped so that it tags only those types. Every run loads its model here, before it
    reads any input, so a wrong type is a usage error before anything is read or written."""
    from mambaner_cli.runtime.device import tagging_threads, use_threads

    use_threads(tagging_threads(options.threads))
    from mambaner_cli.runtime.load import load_tagger

    check_inference_settings()
    tagger = load_tagger(options.model, device=options.device, convention=options.convention,
                         rules=options.rules)
    if options.types:
        tagger = TypeFilter(tagger, select_types(options.types, tagger))
    return tagger


def check_inference_settings() -> None:
    """$MAMBANER_KERNELS and $MAMBANER_MATMUL (model/ops: read at every batch), checked before any input is
    read: an unknown value, or numba asked for but not installed, is a usage error here instead of a
    traceback at the first batch."""
    import torch

    from mambaner_cli.model.ops.matmul import use_bfloat16
    from mambaner_cli.model.ops.numba_infer import use_numba

    probe = torch.zeros(1, 1, 1)
    try:
        use_numba(probe)
        use_bfloat16(probe)
    except RuntimeError as error:
        raise MambanerUsageError(str(error)) from None


def select_types(requested: Sequence[str], tagger: SentenceTagger) -> tuple[str, ...]:
    """``requested`` as the tagger spells its types (``disease`` → ``Disease``), or a usage error that names
    the type and the types the model tags: a type the model never emits would silently give no mention."""
    known = tagger_types(tagger)
    by_lower = {kind.lower(): kind for kind in known}
    selected = []
    for kind in requested:
        if kind.lower() not in by_lower:
            # only for the message: tagging itself does not need the corpus registry
            from mambaner_cli.corpora import ENTITY_TYPES

            tags = ", ".join(known) or "no type it names"
            if kind.lower() in {t.lower() for t in ENTITY_TYPES}:
                raise MambanerUsageError(f"--types: the model {tagger.label} does not tag {kind}; it tags {tags}")
            raise MambanerUsageError(f"--types: unknown entity type {kind!r} (the entity types are "
                                     f"{', '.join(ENTITY_TYPES)}); the model {tagger.label} tags {tags}")
        selected.append(by_lower[kind.lower()])
    if not selected:
        raise MambanerUsageError(f"--types names no type; the model {tagger.label} tags {', '.join(known)}")
    return tuple(dict.fromkeys(selected))


class TypeFilter:
    """A :class:`SentenceTagger` that passes on only the mentions of some types: tags of the others read
    as ``O`` before spans are built, so every output format (and every count) sees the same mentions.

    The filter runs on whole documents (:meth:`finish_document`, after the model's own document rule), not
    on sentences: a short form takes the type of its long form even where that type is filtered out, so the
    mentions kept are those of an unfiltered run."""

    def __init__(self, tagger: SentenceTagger, types: Sequence[str]) -> None:
        self.tagger = tagger
        self.types = frozenset(types)
        self.name = tagger.name
        self.convention = tagger.convention
        self.labels = [label for label in getattr(tagger, "labels", []) if label == "O" or label[2:] in self.types]

    @property
    def label(self) -> str:
        return self.tagger.label

    @property
    def num_parameters(self) -> int:
        return self.tagger.num_parameters

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[TaggedSentence]:
        return self.tagger.tag(sentences, batch_size)  # every type: finish_document filters

    def finish_document(self, text: str, sentences: list[Sentence], scores: list[list[float]]) -> None:
        inner = document_step(self.tagger)
        if inner is not None:
            inner(text, sentences, scores)
        for sentence in sentences:
            sentence.tags = only_types(sentence.tags, self.types)


def tag_to_file(items: Iterable[Document | ReadError], tagger: SentenceTagger, output: str, fmt: str,
                batch_size: int = 32, fail_fast: bool = False,
                on_error: Callable[[ReadError], None] | None = None,
                on_progress: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Tag every document of ``items`` and write them to ``output`` ("-" for stdout) as ``fmt``.

    The output appears only once complete (a crash, Ctrl-C or ``fail_fast`` leaves any earlier file
    untouched), and an earlier file is also left as it was when every item was a read error (nothing
    could be tagged). Read errors are collected in the summary; the caller decides the exit status.
    """
    summary, _ = _tag_into(items, tagger, output, fmt, batch_size=batch_size, fail_fast=fail_fast,
                           on_error=on_error, on_progress=on_progress,
                           replace_output=lambda summary: summary.documents > 0 or not summary.errors)
    return summary


def _tag_into(items: Iterable[Document | ReadError], tagger: SentenceTagger, output: str, fmt: str, *,
              batch_size: int, fail_fast: bool, on_error: Callable[[ReadError], None] | None,
              on_progress: Callable[[RunSummary], None] | None,
              on_warning: Callable[[ReadError], None] | None = None,
              replace_output: Callable[[RunSummary], bool],
              empty_if_new: bool = True, workers: SentenceWorkers | None = None) -> tuple[RunSummary, bool]:
    """:func:`tag_to_file`, which also says whether the output was put in place: ``replace_output`` gets
    the final summary and may refuse it, which keeps an existing regular file untouched (a new path
    still gets its valid, empty output unless ``empty_if_new`` is False, as a corpus run wants for an input
    that failed; standard output, devices and FIFOs are written as it goes)."""
    summary = RunSummary()
    previous = output_target(output).exists

    def handle_error(error: ReadError) -> None:
        if on_error:
            on_error(error)
        if fail_fast:
            raise FailFast(f"stopped at the first error (--fail-fast): {error}")

    try:
        with open_writer(output, fmt, model=tagger.label) as writer:
            for doc in tag_documents(items, tagger, summary, batch_size=batch_size, on_error=handle_error,
                                     on_progress=on_progress, on_warning=on_warning, workers=workers):
                writer.write(doc)
            if not replace_output(summary) and (previous or not empty_if_new):
                raise _KeepPrevious
    except _KeepPrevious:
        return summary, False
    return summary, True
