"""Output writers and crash-safe output files.

Which formats exist, which extensions pick them and where each writer class lives is the format
registry's (:mod:`mambaner_cli.formats`). Here, ``WRITERS`` maps a format name to its writer class
(imported on first use: writing JSONL never loads pyarrow); :func:`atomic_output` makes sure that an
interrupted run never leaves a truncated file behind (or clobbers the previous output); :func:`open_writer`
combines a writer with it; :func:`check_output` refuses an output that cannot be written before a run
reads anything.

What an output path may be, and what happens to it:

- ``-``: standard output, written as the run goes;
- a regular file, or a path where nothing is yet: written to a hidden temporary file beside it,
  ``.NAME.<8 random characters>.part``, and renamed onto it once complete;
- a symbolic link: followed; the temporary file is made beside the file it leads to and renamed onto
  that file, so the link stays a link;
- a character or block device, a FIFO, or a path that names an open descriptor (``/dev/stdout``,
  ``/dev/fd/N``, ``/proc/self/fd/N``): written directly, as a shell redirection would, never replaced
  (replacing ``/dev/null`` with a regular file would break it for the whole machine).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from mambaner_cli import formats
from mambaner_cli.formats import detect_output_format

from ..errors import MambanerError, MambanerUsageError
from .base import Writer

try:  # advisory locks tell a live run's temporary file from a stale one (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: format name → writer class, each imported when first used.
WRITERS: Mapping[str, type[Writer]] = formats.Implementations(formats.OUTPUT_FORMATS)

# Written to standard output when no --format is given.
DEFAULT_STDOUT_FORMAT = formats.STDOUT_FORMAT

# The writer classes by their class names (ParquetWriter…), for `from mambaner_cli.writers import …`.
_CLASS_NAMES = {fmt.attribute: fmt for fmt in formats.OUTPUT_FORMATS.values() if fmt.attribute}

__all__ = [
    "DEFAULT_STDOUT_FORMAT",
    "WRITERS",
    "BiocWriter",
    "ConllWriter",
    "JsonlWriter",
    "OutputError",
    "OutputTarget",
    "ParquetWriter",
    "PubtatorWriter",
    "Writer",
    "atomic_output",
    "check_output",
    "detect_output_format",
    "open_writer",
    "output_format",
    "output_target",
    "part_file_pattern",
]


def __getattr__(name: str) -> Any:
    """``ParquetWriter`` and the other classes, imported when asked for (PEP 562), so that importing
    this package stays cheap."""
    if name in _CLASS_NAMES:
        return _CLASS_NAMES[name].load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class OutputError(MambanerError):
    """The operating system would not let the output be written (permission, read-only file system, a
    full disk, an I/O error): not the user's request but the machine's state, so exit status 1."""


def output_format(path: str, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format that ``path``'s extension names; JSONL for ``-`` and for what is
    written like it, a device, FIFO or descriptor without an extension (``/dev/stdout``, ``/dev/null``).

    Both an unknown ``fmt`` and an extension that no format claims are usage errors: what was asked for
    cannot be written.
    """
    if fmt is None:
        try:
            fmt = detect_output_format(path)
        except MambanerError as error:
            if output_target(path).direct:
                return DEFAULT_STDOUT_FORMAT
            raise MambanerUsageError(str(error)) from None
    if fmt not in WRITERS:
        raise MambanerUsageError(f"unknown output format '{fmt}'; choose one of: {', '.join(WRITERS)}")
    return fmt


# ----------------------------------------------------------------------------------------------------
# where the data goes

#: The characters and length of the random part that :mod:`tempfile` puts in a temporary file's name.
_RANDOM_PART = r"[a-z0-9_]{8}"
#: A directory whose entries are a process's open file descriptors (``/dev/fd`` links to one).
_DESCRIPTOR_DIR = re.compile(r"/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/fd")
_MAX_LINKS = 40  # the kernel's own limit on a chain of symbolic links


def part_file_pattern(name: str) -> re.Pattern[str]:
    """The names of the temporary files of an output called ``name``: ``.NAME.<random>.part``.

    Only these are ever cleaned up as stale, and directory or glob expansion of inputs leaves them out
    (:func:`mambaner_cli.readers.expand_inputs` matches the same pattern).
    """
    return re.compile(re.escape(f".{name}.") + _RANDOM_PART + re.escape(".part"))


@dataclass(frozen=True)
class OutputTarget:
    """Where an output path's data lands, decided before anything is written."""

    path: str  # as given
    target: str  # the file written: ``path``, or the file a symbolic link at ``path`` leads to
    direct: bool  # written in place as the run goes (stdout, a device, a FIFO, a descriptor)
    exists: bool  # a regular file is there now: the one a failed or empty run leaves untouched


def output_target(path: str) -> OutputTarget:
    """How :func:`atomic_output` will write ``path`` (see the module's documentation).

    Raises :class:`MambanerUsageError` for a path that cannot be a file (a directory, a path through a
    regular file) and :class:`OutputError` for one the system will not resolve (a loop of links).
    """
    if path == "-" or _names_a_descriptor(path):
        return OutputTarget(path, path, direct=True, exists=False)
    try:
        status = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        status = None
    except NotADirectoryError as error:
        raise _directory_problem(path, os.path.dirname(path) or ".", error) from None
    except OSError as error:  # e.g. ELOOP, a cycle of links
        raise OutputError(f"cannot write '{path}': {error.strerror}") from None
    if (status is not None and stat.S_ISDIR(status.st_mode)) or not os.path.basename(path):
        raise MambanerUsageError(f"output path '{path}' is a directory; give a file name")
    if status is not None and not stat.S_ISREG(status.st_mode):
        return OutputTarget(path, path, direct=True, exists=False)  # a device or a FIFO
    target = os.path.realpath(path) if os.path.islink(path) else path
    return OutputTarget(path, target, direct=False, exists=status is not None)


def check_output(path: str) -> OutputTarget:
    """Refuse now, before a run reads or loads anything, an output that could not be written at the end:
    a directory, a missing or non-directory parent, a folder where files cannot be created.

    Creates and removes one temporary file beside the target (the only reliable test: access() says
    yes to root on a read-only mount point's contents and nothing about /proc). Devices, FIFOs and
    standard output are not opened here: opening a FIFO waits for its reader.
    """
    where = output_target(path)
    if where.direct:
        return where
    directory = os.path.dirname(where.target) or "."
    try:
        probe = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed right below)
            dir=directory, delete=False, prefix=f".{os.path.basename(where.target)}.", suffix=".part")
    except OSError as error:
        raise _directory_problem(path, directory, error) from None
    probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(probe.name)
    return where


def _names_a_descriptor(path: str) -> bool:
    """Whether ``path`` is, or leads by symbolic links to, an entry of ``/proc/PID/fd``: ``/dev/stdout``,
    ``/dev/fd/3``… Such a path means "this open file" (often a pipe or a terminal, which resolves to no
    real path); replacing it would write somewhere else, so it is written directly."""
    current = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        if _DESCRIPTOR_DIR.fullmatch(os.path.realpath(os.path.dirname(current))):
            return True
        try:
            link = os.readlink(current)
        except OSError:  # not a link, or nothing there: the chain ends here
            return False
        current = os.path.normpath(os.path.join(os.path.dirname(current), link))
    return False


def _directory_problem(path: str, directory: str, error: OSError) -> MambanerError:
    """One line saying why no file can be created in ``directory`` (the folder of output ``path``),
    naming the folder that is actually missing or not a folder."""
    if isinstance(error, PermissionError):
        return OutputError(f"cannot write '{path}': permission denied creating files in '{directory}'")
    if error.errno == errno.EROFS:
        return OutputError(f"cannot write '{path}': '{directory}' is on a read-only file system")
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        existing, missing = directory, None
        while existing and not os.path.lexists(existing):  # up to the first folder that is there
            missing, parent = existing, os.path.dirname(existing)
            existing = "" if parent == existing else parent
        if existing and not os.path.isdir(existing):
            return MambanerUsageError(f"cannot write '{path}': '{existing}' is not a directory")
        if missing is None:  # the folder is there but takes no new files (/proc, /sys)
            return OutputError(f"cannot write '{path}': cannot create files in '{directory}' "
                               f"({error.strerror})")
        also = "" if missing == directory else f" (nor does '{missing}')"
        return MambanerUsageError(
            f"cannot write '{path}': directory '{directory}' does not exist{also}; create it first")
    return OutputError(f"cannot write '{path}': {error.strerror or error} (creating a file in '{directory}')")


def _write_failure(path: str, previous: bool | None, error: OSError) -> OutputError:
    """The one-line error for a write that the system refused halfway; ``previous`` says what became of
    the earlier file: True it is untouched, False there was none, None the output is written in place."""
    if previous is None:
        outcome = "the output is incomplete"
    else:
        outcome = "the previous file is untouched" if previous else "nothing was written"
    if error.errno == errno.ENOSPC:
        return OutputError(f"no space left on device writing '{path}'; {outcome}")
    if error.errno == errno.EDQUOT:
        return OutputError(f"disk quota exceeded writing '{path}'; {outcome}")
    return OutputError(f"cannot write '{path}': {error.strerror or error}; {outcome}")


class _GuardedStream:
    """The output stream, with the system's write failures (a full disk, an I/O error, a closed pipe)
    turned into one :class:`OutputError` that names the output: a writer sees an ordinary stream."""

    def __init__(self, raw: BinaryIO, failure: Callable[[OSError], OutputError]) -> None:
        self._raw = raw
        self._failure = failure

    def write(self, data: bytes) -> int:
        try:
            return self._raw.write(data)
        except OSError as error:
            raise self._failure(error) from None

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError as error:
            raise self._failure(error) from None

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # name, fileno, tell…: the stream's own
        return getattr(self._raw, name)


# ----------------------------------------------------------------------------------------------------
# writing


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces ``path`` only if the block finishes.

    The data goes to a hidden ``.<name>.<random>.part`` file next to ``path`` (next to the file a
    symbolic link leads to) and is renamed onto it (atomically, on the same file system) when the
    block exits normally. If the block raises, including KeyboardInterrupt, the part file is deleted
    and any existing ``path`` is left untouched; part files of this output's name left by runs that
    were killed outright are deleted first. ``-`` yields standard output, and a device, a FIFO or an
    open descriptor's path is written directly (no temporary file; what was written stays written).
    A write the system refuses raises :class:`OutputError`.
    """
    if path == "-":
        stream = sys.stdout.buffer
        yield stream
        stream.flush()
        return
    where = output_target(path)
    if where.direct:
        with _direct_output(where) as stream:
            yield stream
        return
    started = time.time()
    directory = os.path.dirname(where.target) or "."
    name = os.path.basename(where.target)
    _remove_stale_parts(directory, name, started)
    try:
        # Closed below by hand; it must outlive this statement to be renamed afterwards.
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=directory, delete=False, prefix=f".{name}.", suffix=".part")
    except OSError as error:
        raise _directory_problem(path, directory, error) from None

    def failure(error: OSError) -> OutputError:
        return _write_failure(path, where.exists, error)

    try:
        _lock(handle.fileno())
        yield _GuardedStream(handle, failure)  # type: ignore[misc]
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            try:
                mode = os.stat(where.target).st_mode & 0o7777
            except FileNotFoundError:
                mode = _new_file_mode()
            os.chmod(handle.name, mode)  # NamedTemporaryFile creates 0600; keep the usual permissions
            os.replace(handle.name, where.target)
        except OSError as error:
            raise failure(error) from None
    except BaseException:
        with contextlib.suppress(OSError):  # flushing what is left may fail again (a full disk)
            handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        raise


@contextlib.contextmanager
def _direct_output(where: OutputTarget) -> Iterator[BinaryIO]:
    """A device, FIFO or descriptor, opened as a shell's ``>>`` would (appending: for a descriptor of a
    regular file, ``mambaner … -o /dev/stdout >> log`` keeps the log). Opening a FIFO waits for a reader."""
    try:
        raw = open(where.path, "ab")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise OutputError(f"cannot write '{where.path}': {error.strerror or error}") from None

    def failure(error: OSError) -> OutputError:
        return _write_failure(where.path, None, error)

    try:
        yield _GuardedStream(raw, failure)  # type: ignore[misc]
        try:
            raw.flush()
        except OSError as error:
            raise failure(error) from None
    finally:
        with contextlib.suppress(OSError):
            raw.close()


def _new_file_mode() -> int:
    """The permissions a plain open() would give a new file (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _lock(fd: int) -> None:
    """Hold an advisory lock on a temporary file while it is written: the mark of a live run that
    :func:`_remove_stale_parts` respects. The lock goes with the process, however it ends."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks: nothing is ever called stale
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove_stale_parts(directory: str, name: str, before: float) -> None:
    """Delete temporary files of output ``name`` that a killed run left in ``directory``: only names of
    exactly our pattern, older than ``before`` (this run's start), and locked by no live run."""
    if fcntl is None:
        return
    pattern = part_file_pattern(name)
    try:
        entries = os.scandir(directory)
    except OSError:
        return  # creating the temporary file will say what is wrong
    with entries:
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= before:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a run is still writing it (or locks do not work here): leave it
                continue
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            finally:
                os.close(fd)


@contextlib.contextmanager
def open_writer(path: str, fmt: str | None = None, **kwargs: Any) -> Iterator[Writer]:
    """A writer of format ``fmt`` (detected from ``path`` when None) on :func:`atomic_output`.

    The writer is closed, and the file put in place, when the block exits normally; on an exception
    the partial output is discarded (and the writer told so: a Parquet writer must not write its footer
    into the closed file later). ``kwargs`` go to the writer (``model``, ``source``, ``date``…).
    """
    writer_class = WRITERS[output_format(path, fmt)]  # imported before the output file is created
    with atomic_output(path) as stream:
        writer = writer_class(stream, **kwargs)
        try:
            yield writer
            writer.close()
        except BaseException:
            discard = getattr(writer, "discard", None)
            if discard is not None:
                discard()
            raise
