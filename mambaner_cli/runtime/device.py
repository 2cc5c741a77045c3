"""Where a model runs: the device, how many processes tag and how many CPU threads torch uses. ``--threads N``
means N threads (per process) for every command; 0 means one per physical core (evaluate, train), one per
physical core but one (tag in one process, whose reading thread runs beside the model:
:func:`tagging_threads`), or the process's share of the cores (tag with workers: :func:`worker_threads`).

torch is imported inside the functions: :func:`use_threads` must set OMP_WAIT_POLICY before torch loads.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mambaner_cli.errors import MambanerError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
#: Sentences per model batch when --batch-size is not given. On a CPU, 32 as before (not re-chosen; batch 256
#: was no faster here: 119 against 125 sentences/s through Tagger.tag, `python -m benchmarks.bench_gpu --device
#: cpu --batch-sizes 32,256 --repeats 1`, one run on the busy 2-core machine). On a GPU, 512, a whole chunk of the pipeline in one batch: on an
#: H200 (pure-PyTorch path) 512 tagged 2.3x the sentences/s of 32 through Tagger.tag and 1.29x the documents/s
#: of `mambaner tag` end to end (benchmarks/bench_gpu.py; README, Performance, "On a GPU").
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 512
#: Worker processes sharing one GPU in a corpus run when --workers is not given (see tagging_workers)
GPU_CORPUS_WORKERS = 4


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA when PyTorch sees a GPU, else the CPU), ``cpu`` or ``cuda``."""
    import torch

    if device not in DEVICES:
        raise MambanerError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise MambanerError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto.")
    return torch.device(device)


def default_batch_size(device: str = "auto", batch_size: int | None = None) -> int:
    """``batch_size`` when given, else the default for where ``device`` puts the model (CPU_BATCH_SIZE or
    GPU_BATCH_SIZE)."""
    if batch_size is not None:
        return batch_size
    sleeping_threads()  # before torch loads, which pick_device may be the first to do
    return GPU_BATCH_SIZE if pick_device(device).type == "cuda" else CPU_BATCH_SIZE


def physical_cores() -> int:
    """CPU cores (not hyper-threads) this process may run on: /proc/cpuinfo's (package, core) pairs, at most
    the CPUs of its affinity mask; the logical count where that is unknown."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores, package = set(), "0"
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "physical id":
                    package = value.strip()
                elif key.strip() == "core id":
                    cores.add((package, value.strip()))
    except OSError:
        cores = set()
    return max(1, min(len(cores), available) if cores else available)


def set_threads(threads: int = 0) -> int:
    """Torch's CPU threads: ``threads``, or 0 for one per physical core (a second thread on a hyper-thread
    of the same core only competes for it). Returns the number set."""
    import torch

    threads = threads or physical_cores()
    torch.set_num_threads(threads)
    return threads


def tagging_threads(threads: int = 0) -> int:
    """Torch threads for `mambaner tag` in one process: ``threads``, or 0 for one per physical core but one,
    left to the thread that reads, splits and writes alongside the model (pipeline.in_background). On this
    project's 2-core machine two torch threads were slower than one end to end (the reading thread and
    torch's second thread fought for the cores; see README, Performance)."""
    return threads or max(1, physical_cores() - 1)


def tagging_workers(workers: int = 0, device: str = "auto", per_file: bool = False) -> int:
    """Processes that tag for `mambaner tag` (runtime/workers.py): ``workers``, or 0 for one per physical
    core on the CPU, each with one torch thread (on this project's 2-core machine two single-threaded
    processes beat one process with any thread count: README, Performance). On a GPU, one for a one-output
    run, whose workers would each load the model into a CUDA context of their own for one file; for a corpus
    run (``per_file``: workers take whole input files), GPU_CORPUS_WORKERS (at most one per core). One process
    does not keep a GPU busy: on an H200 the network was 41 % of Tagger.tag's time at batch 512 (the rest:
    encoding, lexicon matching, labels, rules in Python), before any reading, splitting or writing, and four
    corpus-run workers sharing it tagged 1.8x the documents/s of one (README, Performance, "On a GPU")."""
    if workers:
        return workers
    sleeping_threads()  # before torch loads, which pick_device may be the first to do
    if pick_device(device).type == "cpu":
        return physical_cores()
    return min(GPU_CORPUS_WORKERS, physical_cores()) if per_file else 1


def worker_threads(threads: int, workers: int) -> int:
    """Torch threads of each of ``workers`` tagging processes: ``threads``, or 0 for an even share of the
    physical cores (at least one)."""
    return threads or max(1, physical_cores() // workers)


def use_threads(threads: int = 0) -> int:
    """The thread policy of every command: :func:`set_threads`, and idle OpenMP threads that sleep instead of
    spinning. OMP_WAIT_POLICY is read when torch loads, so call this before torch is imported; with the CPU
    shared, spinning threads made tagging ~50x slower (benchmarks/benchmark.py). A user's own
    OMP_WAIT_POLICY wins."""
    sleeping_threads()
    return set_threads(threads)


def sleeping_threads() -> None:
    """Idle OpenMP threads sleep instead of spinning (see :func:`use_threads`); before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
