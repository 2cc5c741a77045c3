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


def tagging_workers(workers: int = 0, device: str = "auto") -> int:
    """Processes that tag for `mambaner tag` (runtime/workers.py): ``workers``, or 0 for one per physical
    core on the CPU, each with one torch thread (on this project's 2-core machine two single-threaded
    processes beat one process with any thread count: README, Performance) — and one on a GPU, which a
    single process keeps busy."""
    if workers:
        return workers
    sleeping_threads()  # before torch loads, which pick_device may be the first to do
    return 1 if pick_device(device).type != "cpu" else physical_cores()


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
