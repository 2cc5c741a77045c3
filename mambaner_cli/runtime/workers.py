"""Worker processes that tag for one run, each holding the run's tagger: `mambaner tag --workers N`.

One mechanism for both kinds of run. A one-output run (:mod:`.run`) hands the workers chunks of sentences
(:func:`tag_sentences`): the parent reads, splits, builds spans and writes, in input order, while the
workers run the model; a corpus run (:mod:`.corpus`) hands them whole input files. Each worker has
``threads`` torch threads (one, by default, on a machine where every core has a worker): on this project's
2-core machine two single-threaded processes tagged 1,500 abstracts 1.6-1.7x as fast as one process, where
two threads in one process were slower than one (README, Performance: benchmarks/bench_layouts.py).

How workers start. Where it is safe, a one-output run forks them from the parent once its tagger is
loaded: the model, its vocabulary and lexicon are inherited, so two workers are ready in 33-40 ms (measured
on the 2-core machine) instead of importing torch and loading the model again (seconds each). Safe means: a POSIX
fork, the model on the CPU (a CUDA context does not survive a fork), and no thread but the main one (the
run forks before it starts its reading thread or progress display; a copied thread's locks could be held
forever in the child). Otherwise, and always for corpus runs (whose object-store clients run native
threads that ``threading`` cannot see), workers come from a fork server that has imported torch and the
tagger's modules once, and each loads the model itself (:func:`_load_in_worker`).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import FrameType
from typing import Any

from mambaner_cli.errors import MambanerError
from mambaner_cli.runtime.sentence_tagger import SentenceTagger, TaggedSentence

#: What a worker holds: its tagger, and whatever else the run handed every worker (corpus: the settings).
_worker: dict[str, Any] = {}


def can_fork(device: str) -> bool:
    """Whether workers may be forked from this process, its tagger on ``device`` (see the module docstring)."""
    from mambaner_cli.runtime.device import pick_device

    return (sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1 and pick_device(device).type == "cpu")


def start_workers(count: int, threads: int, load: Callable[[], SentenceTagger], *,
                  tagger: SentenceTagger | None = None, device: str = "auto", state: dict[str, Any] | None = None
                  ) -> ProcessPoolExecutor:
    """``count`` worker processes with ``threads`` torch threads each, started before this returns.

    With ``tagger`` (already loaded here, on ``device``) and :func:`can_fork`, the workers are forked and
    inherit it; otherwise each calls ``load`` (picklable: a module-level function or a partial of one).
    ``state`` is kept beside the tagger in every worker (``worker_state()``).

    concurrent.futures' pool rather than multiprocessing's: when a worker dies (the kernel's OOM killer,
    a stray SIGKILL), every task not yet done fails with BrokenProcessPool instead of waiting forever
    (multiprocessing.Pool replaces the dead worker and loses its task: measured, the run hung).
    """
    if tagger is not None and can_fork(device):
        _worker.update(tagger=tagger, state=state or {})  # what fork copies into every worker
        executor = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_adopt_in_worker, initargs=(threads,))
    else:
        # ``load`` sets the worker's threads itself: it must, before torch's first operation
        executor = ProcessPoolExecutor(count, mp_context=_server_context(), initializer=_load_in_worker,
                                       initargs=(load, state or {}, dict(os.environ)))
    # The pool forks its workers at its first task, not when it is made: make them now, while this process
    # has no other thread (a fork copies none of them, and their locks could be held forever in a worker).
    executor.submit(_started).result()
    return executor


@contextlib.contextmanager
def worker_pool(count: int, threads: int, load: Callable[[], SentenceTagger], *,
                tagger: SentenceTagger | None = None, device: str = "auto", state: dict[str, Any] | None = None
                ) -> Iterator[ProcessPoolExecutor]:
    """:func:`start_workers` for the length of a block. When the block ends normally the workers finish
    their tasks and exit; on any exception (Ctrl-C, SIGTERM, fail-fast, a dead worker) the tasks not started
    are dropped and each worker gets SIGTERM, which unwinds the task it is running (a corpus worker removes
    its temporary output file). A dead worker shows as :class:`WorkerDied` where its tasks' results are read."""
    executor = start_workers(count, threads, load, tagger=tagger, device=device, state=state)
    finished = False
    try:
        yield executor
        finished = True
    finally:
        if not finished:
            # the executor's own processes (a private mapping of concurrent.futures, stable since 3.8): the
            # pool has no terminate(), and a worker in the middle of a long task would otherwise run it out
            processes = list((getattr(executor, "_processes", None) or {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():  # stuck where SIGTERM cannot unwind it (a read of a silent FIFO)
                    process.kill()
                    process.join()
        executor.shutdown(wait=True)
        _worker.clear()


class WorkerDied(MambanerError):
    """A worker process ended while tasks were in it (killed: out of memory, a signal)."""


def result_of(future: Future) -> Any:
    """``future.result()``, a dead worker reported as :class:`WorkerDied` with what to do."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerDied("a worker process ended abruptly (killed: out of memory, or a signal) while tagging; "
                         "nothing more was tagged. Run again (with --workers 1 or fewer workers if memory is "
                         "short)") from None


def _server_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has imported torch and the tagger's modules once (a fresh
    interpreter each, as 'spawn' makes, pays that import per worker: seconds each); 'spawn' where there is
    no fork server (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "mambaner_cli.runtime.corpus", "mambaner_cli.runtime.load"])
    return context


def _ignore_interrupts() -> None:
    """Ctrl-C is the parent's to handle (it terminates the pool); SIGTERM kills an idle worker at once
    (a forked worker would otherwise keep the parent's handler, which raises); and on Linux the worker is
    killed when the process that started it dies (a SIGKILLed run leaves no worker behind)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()


def _die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) where there is one (Linux); nothing elsewhere."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _started() -> None:
    """The no-op task that makes the pool start its workers (see :func:`start_workers`)."""


def _adopt_in_worker(threads: int) -> None:
    """A forked worker's start: the inherited tagger, with this worker's share of the cores."""
    from mambaner_cli.runtime.device import set_threads

    _ignore_interrupts()
    set_threads(threads)
    preload_kernels()


def _load_in_worker(load: Callable[[], SentenceTagger], state: dict[str, Any], environment: dict[str, str]) -> None:
    """A fork-server worker's start: the parent's environment of now (the fork server keeps the one of
    its own start, and an object store's credentials may have been set since), then the model, once."""
    os.environ.clear()
    os.environ.update(environment)
    _ignore_interrupts()
    _worker.update(tagger=load(), state=state)
    preload_kernels()


def preload_kernels() -> None:
    """The compiled kernels, if the run chose them, imported while the parent reads the first documents."""
    from mambaner_cli.model.ops.numba_infer import preload

    preload()


def worker_tagger() -> SentenceTagger:
    """The tagger of the worker process this runs in."""
    return _worker["tagger"]


def worker_state() -> dict[str, Any]:
    """What the run handed every worker beside the tagger (see :func:`start_workers`)."""
    return _worker["state"]


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While a worker runs a task, SIGTERM unwinds it (``finally`` blocks run: temporary files go), then
    ends the worker (the pool would take the SystemExit for the task's result and wait for the next one);
    between tasks it ends the idle worker at once."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    except SystemExit as stop:
        os._exit(stop.code if isinstance(stop.code, int) else 1)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass(frozen=True)
class SentenceWorkers:
    """A one-output run's workers (:func:`worker_pool` with its tagger): chunks of sentences in, tags out."""

    pool: ProcessPoolExecutor
    count: int

    @property
    def depth(self) -> int:
        """Chunks to keep in flight: two per worker, so none waits while the parent collects a result."""
        return 2 * self.count

    def submit(self, sentences: list[list[str]], batch_size: int) -> Future:
        """Tag a chunk in some worker (:func:`tag_sentences`); :func:`result_of` gives its tags."""
        return self.pool.submit(tag_sentences, sentences, batch_size)


def tag_sentences(sentences: Sequence[Sequence[str]], batch_size: int) -> list[TaggedSentence]:
    """A one-output run's task: tags and confidences of a chunk of tokenised sentences, by this worker's
    tagger. Only tokens go out and tags come back: for the 1,500 BC5CDR abstracts 2.7 MB out and 4.1 MB
    back, 0.2 s of pickling in all, where the segmented documents are 15 MB and 3.1 s one way (measured)."""
    return worker_tagger().tag(sentences, batch_size)
