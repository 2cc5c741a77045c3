"""Corpus runs: many inputs → one output file each in a directory, with a manifest that makes reruns resume.

`mambaner tag pubmed/*.xml.gz -o tagged/` tags each input file into ``tagged/<stem>.<ext>`` through the
single-run path (:func:`~mambaner_cli.runtime.run._tag_into`: the same pipeline, atomic writers and error
accounting as a one-output run) and appends one JSON record per input to ``tagged/manifest.jsonl``,
flushed to disk before the next input starts, so a kill loses at most the input in progress. A rerun
skips every input whose record still matches (see :func:`can_skip`).

The unit of work is :func:`tag_input`: one :class:`InputTask` and a loaded tagger in, one
:class:`TaggedInput` out. It is all an engine needs: :func:`run_corpus_job` runs it in this process
(``workers=1``) or in a pool of spawned processes, each loading the model once; the Ray engine
(:mod:`mambaner_cli.runtime.ray_engine`, ``--engine ray``) calls the same function on a cluster's actors.
Only the parent process (the driver) writes the manifest. Inputs and the output directory may be URIs of
an object store (``s3://bucket/pubmed/``): see :mod:`mambaner_cli.runtime.object_store`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mambaner_cli import __version__, formats
from mambaner_cli.document import Document
from mambaner_cli.errors import MambanerUsageError, ReadError
from mambaner_cli.readers import iter_documents
from mambaner_cli.runtime import object_store
from mambaner_cli.runtime.pipeline import RunSummary, SentenceTagger
from mambaner_cli.runtime.run import (  # the single-run path, reused
    SilentObserver,
    TagObserver,
    TagOptions,
    _load_tagger,
    _same_file,
    _tag_into,
    check_encoding,
    input_paths,
    parent_options,
    run_kernels,
    run_workers,
    with_workers_resolved,
)
from mambaner_cli.runtime.workers import result_of, sigterm_unwinds, worker_state, worker_tagger
from mambaner_cli.writers import WRITERS, atomic_output, check_output

#: The manifest's file name inside the output directory; no output file is ever given this name.
MANIFEST_NAME = "manifest.jsonl"
#: The output format of a directory output without ``--format``: one columnar file per input.
DEFAULT_DIRECTORY_FORMAT = "parquet"

#: The engines that run a corpus's inputs: this machine's processes, or a Ray cluster's actors.
ENGINES = ("local", "ray")

# what a record's status says: the output holds every document of the input, or something failed
TAGGED, FAILED = "tagged", "failed"


def is_directory_output(path: str) -> bool:
    """Whether ``-o path`` asks for one output per input: an existing directory, or a path ending in ``/``."""
    return path != "-" and (path.endswith(("/", os.sep)) or os.path.isdir(path))


def _absolute(path: str) -> str:
    """An input's key in the manifest: its absolute path, or its URI as given (a store has no working
    directory to resolve against)."""
    return path if object_store.is_remote(path) else os.path.abspath(path)


@dataclass(frozen=True)
class InputTask:
    """One input file and where its output goes, with everything that decides how it is read and written:
    picklable, so that it can be sent to a worker process (or a remote one)."""

    input: str  # the path as the user gave it (it names the input in messages and in the output's source)
    output: str  # the output file, inside the output directory
    fmt: str  # the output format
    input_format: str | None = None
    lines: bool = False
    encoding: str = "utf-8"
    encoding_errors: str = "strict"
    batch_size: int = 32
    fail_fast: bool = False


@dataclass
class InputRecord:
    """One line of the manifest: what became of one input, and what a rerun compares to decide to skip it."""

    input: str  # absolute path: the key of the record, whatever directory the run is started from
    size: int | None  # bytes, None when the file could not be read at all
    mtime_ns: int | None
    md5: str | None  # of the file's bytes as read; comparable with the .md5 files that NLM publishes
    output: str | None  # the output file's name inside the directory; None when nothing was written
    status: str  # TAGGED or FAILED
    documents: int = 0
    sentences: int = 0
    mentions: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deleted_pmids: list[str] = field(default_factory=list)  # PubMed DeleteCitation PMIDs met in the input
    settings: dict[str, Any] = field(default_factory=dict)  # model, convention and options (see settings_of)
    mambaner: str = __version__
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_json(cls, line: str) -> InputRecord:
        data = json.loads(line)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class TaggedInput:
    """What :func:`tag_input` gives back: the manifest record, and the problems as objects for the observer."""

    record: InputRecord
    errors: list[ReadError]
    warnings: list[ReadError]


@dataclass
class CorpusResult:
    """What a corpus run did, input by input (in input order): ``states[i]`` is "tagged", "skipped" or
    "failed" for ``records[i]``."""

    directory: str
    records: list[InputRecord]
    states: list[str]
    model_label: str
    problems: list[str]  # every error of this run's inputs; any makes the run a failure (exit status 1)

    def count(self, state: str) -> int:
        return self.states.count(state)

    def total(self, name: str) -> int:
        return sum(getattr(record, name) for record in self.records)


# ----------------------------------------------------------------------------------------------------
# the unit of work


def tag_input(task: InputTask, tagger: SentenceTagger, settings: dict[str, Any], *,
              on_error: Callable[[ReadError], None] | None = None,
              on_warning: Callable[[ReadError], None] | None = None,
              on_progress: Callable[[RunSummary], None] | None = None,
              source: str | None = None) -> TaggedInput:
    """Tag one input file into its own output, written atomically, and describe it as a manifest record.

    An input that gives no document and fails (missing, corrupt) gets no output file (an earlier one is
    left untouched, but the record no longer names it). The input is stat'ed before it is read, so a file
    that changes while it is tagged does not match its record on the next run. ``source`` names the input
    in the output and the messages instead of its path (a local copy names the stored original).
    """
    if object_store.is_remote(task.input) or object_store.is_remote(task.output):
        return _tag_staged(task, tagger, settings, on_error=on_error, on_warning=on_warning,
                           on_progress=on_progress)
    started = time.perf_counter()
    size, mtime_ns, regular = _stat(task.input)
    deleted: list[str] = []
    items = iter_documents([task.input], input_format=task.input_format, lines=task.lines,
                           encoding=task.encoding, errors=task.encoding_errors, on_deleted=deleted.append)
    if source is not None:
        items = _named(items, task.input, source)
    summary, written = _tag_into(items, tagger, task.output, task.fmt, batch_size=task.batch_size,
                                 fail_fast=task.fail_fast, on_error=on_error,
                                 on_progress=on_progress, on_warning=on_warning,
                                 replace_output=lambda summary: summary.documents > 0 or not summary.errors,
                                 empty_if_new=False)
    record = InputRecord(
        input=os.path.abspath(task.input), size=size, mtime_ns=mtime_ns,
        md5=_md5(task.input) if regular else None,
        output=_basename(task.output) if written else None,
        status=FAILED if summary.errors else TAGGED, documents=summary.documents, sentences=summary.sentences,
        mentions=summary.mentions, errors=[str(error) for error in summary.errors],
        warnings=[str(warning) for warning in summary.warnings], deleted_pmids=deleted, settings=settings,
        seconds=round(time.perf_counter() - started, 3))
    return TaggedInput(record, list(summary.errors), list(summary.warnings))


def _tag_staged(task: InputTask, tagger: SentenceTagger, settings: dict[str, Any], **report: Any) -> TaggedInput:
    """:func:`tag_input` for an input or output on a store: through local copies in a temporary folder
    (see :mod:`.object_store`), the record and messages naming the input as given, not its copy."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mambaner-") as folder:
        local = dataclasses.replace(task)
        found: tuple[int, int] | None = None
        if object_store.is_remote(task.input):
            found = object_store.stat(task.input)  # before it is read, as for a local input
            # the input's own name, for its format and its --lines document ids (stem:line)
            local = dataclasses.replace(local, input=os.path.join(folder, object_store.basename(task.input)))
            if found is not None:
                object_store.download(task.input, local.input)
        if object_store.is_remote(task.output):
            local = dataclasses.replace(local, output=os.path.join(folder, "out", object_store.basename(task.output)))
            os.mkdir(os.path.dirname(local.output))
        done = tag_input(local, tagger, settings, source=task.input, **report)
        if done.record.output is not None and local.output != task.output:
            try:
                object_store.upload(local.output, task.output)
            except OSError as failure:  # this input failed, not the run: a rerun tags it again
                error = ReadError(task.input, f"cannot write its output {task.output}: {failure}")
                done.errors.append(error)
                done.record.errors.append(str(error))
                done.record.status, done.record.output = FAILED, None
    record = done.record
    record.input = _absolute(task.input)
    if object_store.is_remote(task.input):
        record.size, record.mtime_ns = found if found is not None else (None, None)
    record.seconds = round(time.perf_counter() - started, 3)
    return done


def _named(items: Iterator[Document | ReadError], path: str, source: str) -> Iterator[Document | ReadError]:
    """Documents and errors read from ``path``, naming ``source`` instead."""
    for item in items:
        yield dataclasses.replace(item, source=source) if item.source == path else item


def gave_up(task: InputTask, settings: dict[str, Any], message: str) -> TaggedInput:
    """An input that an engine stopped trying to tag (it kept killing the process tagging it): recorded
    as failed with ``message``, no output, so that the run goes on and a rerun tries it again."""
    size, mtime_ns, _ = _stat(task.input)
    error = ReadError(task.input, message)
    record = InputRecord(input=_absolute(task.input), size=size, mtime_ns=mtime_ns, md5=None, output=None,
                         status=FAILED, errors=[str(error)], settings=settings)
    return TaggedInput(record, [error], [])


def _stat(path: str) -> tuple[int | None, int | None, bool]:
    """An input's size, modification time and whether it is a regular file (a FIFO cannot be read twice,
    to be hashed); None, None, False when it cannot be stat'ed."""
    if object_store.is_remote(path):
        found = object_store.stat(path)
        return (*found, True) if found is not None else (None, None, False)
    try:
        status = os.stat(path)
    except OSError:
        return None, None, False
    return status.st_size, status.st_mtime_ns, stat.S_ISREG(status.st_mode)


def _md5(path: str) -> str | None:
    """The MD5 of a file's bytes (compressed, as stored): what NLM's ``pubmed25nNNNN.xml.gz.md5`` gives, so
    a manifest can be checked against the files that were downloaded. Read once more after tagging, from
    the page cache: a small cost beside tagging."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# naming, settings and the skip rule


def output_names(inputs: Sequence[str], fmt: str) -> dict[str, str]:
    """Each input's output file name: its name without ``.gz`` and its input extension, plus the output
    format's extension (``pubmed25n0001.xml.gz`` → ``pubmed25n0001.parquet``).

    Names that two inputs would share (``a/x.xml`` and ``b/x.xml``, ``x.txt`` and ``x.xml``; compared
    without case, for case-insensitive file systems), and a name equal to the manifest's, get the first 8
    hex digits of the SHA-1 of the input's absolute path: ``x-1a2b3c4d.parquet``. Deterministic (the same
    inputs always give the same names, whatever their order), and unique without renaming anything else.
    """
    extension = formats.OUTPUT_FORMATS[fmt].extensions[0]
    plain = {path: _stem(path) + extension for path in inputs}
    users: dict[str, int] = {}
    for name in plain.values():
        users[name.lower()] = users.get(name.lower(), 0) + 1
    names = {}
    for path, name in plain.items():
        if users[name.lower()] > 1 or name.lower() == MANIFEST_NAME:
            tag = hashlib.sha1(_absolute(path).encode("utf-8", "surrogateescape")).hexdigest()[:8]
            name = f"{_stem(path)}-{tag}{extension}"
        names[path] = name
    return names


def _stem(path: str) -> str:
    """The file name without ``.gz`` and without the longest input-format extension it ends with."""
    name = _basename(path)
    if name.lower().endswith(formats.COMPRESSED_SUFFIX):
        name = name[:-len(formats.COMPRESSED_SUFFIX)]
    matches = [extension for extension in formats.INPUT_EXTENSIONS if name.lower().endswith(extension)]
    if matches:
        name = name[:-len(max(matches, key=len))]
    else:
        name = os.path.splitext(name)[0] or name
    return name or "input"


def settings_of(options: TagOptions, fmt: str, model_label: str) -> dict[str, Any]:
    """What decides an input's output besides the input itself: the model (its label, which names the
    convention, and where it came from) and every option that changes what is written. Not the mambaner
    version (an upgrade does not force re-tagging a corpus; ``--overwrite`` does it) nor the batch size,
    threads or device (they change the speed, not the output)."""
    model = options.model
    if model is not None and os.path.isdir(model):
        model = os.path.abspath(model)
    settings = {"model": model_label, "model_source": model, "format": fmt, "input_format": options.input_format,
                "lines": options.lines, "encoding": options.encoding, "encoding_errors": options.encoding_errors}
    if options.types:  # only when given, so that the manifests of runs without --types still match
        settings["types"] = sorted(options.types)
    if not options.rules:  # likewise only when off (--network-only)
        settings["network_only"] = True
    return settings


def can_skip(record: InputRecord | None, path: str, output: str, settings: dict[str, Any]) -> bool:
    """Whether an input needs no tagging: its record says it was tagged without error into the same output
    name with the same settings, the file still has the size and modification time it had then, and the
    output is still there. Size and mtime, as make and rsync use them, rather than a checksum: checking the
    1,200 files of a PubMed baseline would mean reading all 40 GB again just to skip them."""
    if record is None or record.status != TAGGED or record.settings != settings:
        return False
    if record.output != _basename(output) or not _is_file(output):
        return False
    size, mtime_ns, _ = _stat(path)
    return size is not None and (record.size, record.mtime_ns) == (size, mtime_ns)


def _basename(path: str) -> str:
    return object_store.basename(path) if object_store.is_remote(path) else os.path.basename(path)


def _is_file(path: str) -> bool:
    return object_store.stat(path) is not None if object_store.is_remote(path) else os.path.isfile(path)


# ----------------------------------------------------------------------------------------------------
# the manifest


def read_manifest(path: str) -> dict[str, InputRecord]:
    """The manifest's records by input (absolute path), the last record of an input winning. A line that
    does not parse is dropped: a run killed while appending leaves at most its last line torn."""
    records: dict[str, InputRecord] = {}
    if object_store.is_remote(path):
        data = object_store.read_bytes(path)
        lines = [] if data is None else data.decode("utf-8").splitlines()
    else:
        try:
            with open(path, encoding="utf-8") as manifest:
                lines = manifest.readlines()
        except FileNotFoundError:
            lines = []
    for line in lines:
        try:
            record = InputRecord.from_json(line)
        except (ValueError, TypeError):
            continue
        records[record.input] = record
    return records


def write_manifest(path: str, records: Sequence[InputRecord]) -> None:
    """Replace the manifest atomically with ``records``, one line each (on a store: in one upload)."""
    if object_store.is_remote(path):
        object_store.write_bytes(path, b"".join(record.to_json().encode("utf-8") + b"\n" for record in records))
        return
    with atomic_output(path) as stream:
        for record in records:
            stream.write(record.to_json().encode("utf-8") + b"\n")


class ManifestAppender:
    """Appends records, each on disk (fsync) before the next input starts."""

    def __init__(self, path: str) -> None:
        self._stream = open(path, "ab")  # noqa: SIM115 (closed by close())

    def append(self, record: InputRecord) -> None:
        self._stream.write(record.to_json().encode("utf-8") + b"\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        self._stream.close()


class StoredManifestWriter:
    """The manifest on a store, where nothing can be appended to: rewritten whole (one upload) as each
    input finishes. About a kilobyte a record: rewriting the 1,300 records of a baseline run after each
    input uploads under a gigabyte in all, small beside the outputs."""

    def __init__(self, path: str, records: Iterable[InputRecord]) -> None:
        self._path = path
        self._records = {record.input: record for record in records}

    def append(self, record: InputRecord) -> None:
        self._records[record.input] = record
        write_manifest(self._path, list(self._records.values()))

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------------
# the run


def run_corpus_job(options: TagOptions, observer: TagObserver | None = None) -> CorpusResult:
    """Tag every input file of ``options`` into its own file in the directory ``options.output``, skipping
    inputs already done (unless ``options.overwrite``), with ``options.workers`` processes.

    Refused before anything is read (:class:`MambanerUsageError`): standard input or PubMed records (they
    have no file to name an output after, nor a size and time to resume by), an unknown format, a path
    that is not a directory, no input, and a manifest whose records were made with other settings (a
    different model, convention or option) unless ``overwrite``.
    """
    observer = observer or SilentObserver()
    if "-" in options.inputs:
        raise MambanerUsageError("standard input (-) cannot be tagged into a directory: there is no file name "
                                 "to name its output after; give -o a file, or - for standard output")
    if options.pubmed.requested:
        raise MambanerUsageError("PubMed records (--pmid, --pmid-file, --query) cannot be tagged into a "
                                 "directory; give -o a file (or run `mambaner fetch` and tag its file)")
    fmt = options.output_format or DEFAULT_DIRECTORY_FORMAT
    if fmt not in WRITERS:
        raise MambanerUsageError(f"unknown output format '{fmt}'; choose one of: {', '.join(WRITERS)}")
    check_encoding(options.encoding, options.encoding_errors)
    if options.engine not in ENGINES:
        raise MambanerUsageError(f"unknown engine '{options.engine}'; choose one of: {', '.join(ENGINES)}")
    if options.engine == "ray":
        from mambaner_cli.runtime.ray_engine import check_ray

        check_ray()
    if object_store.is_remote(options.output):  # a store has no directories to make or check
        directory = options.output.rstrip("/")
        manifest_path = object_store.join(directory, MANIFEST_NAME)
    else:
        directory = _make_directory(options.output)
        manifest_path = os.path.join(directory, MANIFEST_NAME)
        check_output(manifest_path)
    inputs = _corpus_inputs(options, directory, manifest_path, observer)
    names = output_names(inputs, fmt)
    outputs = {path: _join(directory, name) for path, name in names.items()}
    if options.engine == "local":  # Ray sizes its own actor pool when --workers is 0
        options = with_workers_resolved(options, per_file=True)
    # the driver's own tagger tags nothing under --workers or Ray, but its label makes the settings
    tagger = _load_tagger(parent_options(options) if options.workers > 1 or options.engine != "local" else options)
    settings = settings_of(options, fmt, tagger.label)
    previous = read_manifest(manifest_path)
    _check_settings(previous.values(), settings, directory, options.overwrite)

    records: dict[str, InputRecord] = dict(previous)
    states: dict[str, str] = {}
    tasks: list[InputTask] = []
    for path in inputs:
        record = previous.get(_absolute(path))
        if not options.overwrite and can_skip(record, path, outputs[path], settings):
            states[path] = "skipped"
        else:
            tasks.append(InputTask(path, outputs[path], fmt, input_format=options.input_format,
                                   lines=options.lines, encoding=options.encoding,
                                   encoding_errors=options.encoding_errors, batch_size=options.batch_size,
                                   fail_fast=options.fail_fast))
    try:
        write_manifest(manifest_path, list(previous.values()))  # compacted: no torn line to append after
    except OSError as error:
        if not object_store.is_remote(manifest_path):
            raise
        # the first write to a store: no bucket, no permission; before any input is read
        raise MambanerUsageError(f"cannot write the manifest '{manifest_path}': {error}") from None
    problems: list[str] = []
    appender = (StoredManifestWriter(manifest_path, previous.values()) if object_store.is_remote(manifest_path)
                else ManifestAppender(manifest_path))
    kernels = contextlib.ExitStack()
    try:
        if options.engine == "ray":
            from mambaner_cli.runtime.ray_engine import tag_with_ray

            results = tag_with_ray(tasks, settings, options, observer)
        else:
            engine = _tag_in_pool if options.workers > 1 and len(tasks) > 1 else _tag_in_process
            kernels.enter_context(run_kernels(options, [task.input for task in tasks]))  # before workers start
            results = engine(tasks, tagger, settings, options, observer)
        with contextlib.closing(results):  # on any exception, the engine stops its workers at once
            for path, done in results:
                appender.append(done.record)
                records[done.record.input] = done.record
                states[path] = FAILED if done.record.status == FAILED else TAGGED
                problems.extend(done.record.errors)
    finally:
        kernels.close()
        appender.close()
    ordered = sorted(records.values(), key=lambda record: record.input)
    write_manifest(manifest_path, ordered)
    run_records = [records[_absolute(path)] for path in inputs]
    return CorpusResult(directory, run_records, [states[path] for path in inputs], tagger.label, problems)


def _join(directory: str, name: str) -> str:
    return object_store.join(directory, name) if object_store.is_remote(directory) else os.path.join(directory, name)


def _make_directory(path: str) -> str:
    """The output directory, created (with its parents) if missing; a usage error if it cannot be one."""
    directory = path.rstrip("/" + os.sep) or path
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise MambanerUsageError(f"output '{path}' is not a directory (a path ending in / names one)")
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MambanerUsageError(f"cannot create the output directory '{path}': a part of it is a file") from None
    except OSError as error:
        raise MambanerUsageError(f"cannot create the output directory '{path}': {error.strerror}") from None
    return directory


def _corpus_inputs(options: TagOptions, directory: str, manifest_path: str, observer: TagObserver) -> list[str]:
    """The input files, expanded as for a single output, less every file inside the output directory (its
    BioC outputs are input files too, and a rerun must not tag them). URIs are listed on their store."""
    local = tuple(path for path in options.inputs if not object_store.is_remote(path))
    found = input_paths(dataclasses.replace(options, inputs=local, output=manifest_path), observer) if local else []
    exclude = directory if object_store.is_remote(directory) else None
    empty = []
    for pattern in options.inputs:
        if object_store.is_remote(pattern):
            listed = object_store.list_inputs(pattern, exclude_under=exclude)
            found += listed
            empty += [] if listed else [pattern]
    if empty:
        message = f"no input file under {', '.join(repr(pattern) for pattern in empty)}"
        if not found:
            raise MambanerUsageError(f"no inputs: {message}")
        observer.warning(message)
    inside = os.path.realpath(directory) + os.sep
    by_absolute = {_absolute(path): path for path in reversed(found)}  # ./a.txt and a.txt: one input
    inputs = [path for path in found if by_absolute[_absolute(path)] == path
              and (object_store.is_remote(path) or not os.path.realpath(path).startswith(inside))]
    if not inputs:
        raise MambanerUsageError(f"no inputs: every input file is inside the output directory '{options.output}'")
    for path in inputs:
        if not object_store.is_remote(path) and _same_file(path, manifest_path):
            raise MambanerUsageError(f"the manifest '{manifest_path}' is also an input ('{path}')")
    return inputs


def _check_settings(records: Iterable[InputRecord], settings: dict[str, Any], directory: str,
                    overwrite: bool) -> None:
    """Refuse (without ``overwrite``) a directory whose manifest has records made with other settings:
    silently mixing two models' outputs in one corpus is worse than asking for one more word."""
    if overwrite:
        return
    for record in records:
        if record.settings != settings:
            differences = ", ".join(f"{key} {record.settings.get(key)!r} → {value!r}"
                                    for key, value in settings.items() if record.settings.get(key) != value)
            raise MambanerUsageError(
                f"'{directory}' holds outputs tagged with other settings ({differences}; e.g. "
                f"{record.input}); add --overwrite to re-tag every input, or choose another directory")


def _tag_in_process(tasks: Sequence[InputTask], tagger: SentenceTagger, settings: dict[str, Any],
                    options: TagOptions, observer: TagObserver) -> Iterator[tuple[str, TaggedInput]]:
    """The local engine, one process: each input in turn, progress drawn as documents are tagged."""
    totals = RunSummary()
    with observer.tagging() as on_progress:
        for task in tasks:
            def running_totals(summary: RunSummary) -> None:
                on_progress(RunSummary(documents=totals.documents + summary.documents,
                                       sentences=totals.sentences + summary.sentences,
                                       mentions=totals.mentions + summary.mentions, started=totals.started))

            done = tag_input(task, tagger, settings, on_error=observer.error,
                             on_warning=lambda warning: observer.warning(str(warning)),
                             on_progress=running_totals)
            totals.documents += done.record.documents
            totals.sentences += done.record.sentences
            totals.mentions += done.record.mentions
            yield task.input, done


def report_finished_inputs(results: Iterable[TaggedInput], tasks: Sequence[InputTask], observer: TagObserver
                           ) -> Iterator[tuple[str, TaggedInput]]:
    """Inputs tagged elsewhere (worker processes, Ray actors), as they come back: their errors and warnings
    go to the observer, the running totals to its progress display; yields (the input as given, result)."""
    input_of = {_absolute(task.input): task.input for task in tasks}
    totals = RunSummary()
    with observer.tagging() as on_progress:
        for done in results:
            for error in done.errors:
                observer.error(error)
            for warning in done.warnings:
                observer.warning(str(warning))
            totals.documents += done.record.documents
            totals.sentences += done.record.sentences
            totals.mentions += done.record.mentions
            on_progress(totals)
            yield input_of[done.record.input], done


def _tag_in_pool(tasks: Sequence[InputTask], tagger: SentenceTagger, settings: dict[str, Any],
                 options: TagOptions, observer: TagObserver) -> Iterator[tuple[str, TaggedInput]]:
    """The local engine, worker processes (:mod:`.workers`, started from the fork server: an object
    store's client threads must not be forked), one whole input per task; each worker loads the model once
    and gets its share of the cores. Errors and warnings are reported when an input is done. On any
    exception here (Ctrl-C, SIGTERM, fail-fast) the workers get SIGTERM, which unwinds the input each is
    tagging (its temporary output file is removed)."""
    with run_workers(options, min(options.workers, len(tasks)), state=settings) as pool:
        futures = [pool.submit(_work, task) for task in tasks]
        finished = (result_of(future) for future in concurrent.futures.as_completed(futures))
        yield from report_finished_inputs(finished, tasks, observer)


def _work(task: InputTask) -> TaggedInput:
    """A pool worker's task: one input with the worker's tagger; SIGTERM unwinds it."""
    with sigterm_unwinds():
        return tag_input(task, worker_tagger(), worker_state())
