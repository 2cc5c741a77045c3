"""Corpus runs end to end: the local engine against Ray, and what tagging all of PubMed would cost.

    python -m benchmarks.bench_corpus                          # 5,000 documents in 10 files, 4 runs, cost table
    python -m benchmarks.bench_corpus --documents 300 --files 6   # a smoke run (minutes)
    python -m benchmarks.bench_corpus --cost-from 30           # the cost table alone, from 30 docs/s per core

Documents are made as ``benchmarks.benchmark --big-xml`` makes them: the BC5CDR and NCBI-disease abstracts
($MAMBANER_DATA or ../shared/data) as full PubMed records (made-up metadata, about 8 KB each) with fresh
PMIDs, here split into ``--files`` gzipped PubmedArticleSet files, as NLM's baseline is, in a temporary
folder that is deleted at the end (no corpus text is kept). Each configuration runs the same command,
``mambaner tag FILES -o OUT/ -q --threads T --workers W``, in a subprocess of its own, into an empty
directory:

* ``local-1``, ``local-N``: the local engine with 1 and ``--cores`` worker processes;
* ``ray-embedded``: ``--engine ray --workers N``: the run starts an embedded local Ray itself (its start
  is inside the measured time) and runs N actors;
* ``ray-2-node``: ``--ray-address`` of a ``ray.cluster_utils.Cluster`` started by this script beforehand, a
  head and a second node of ``--threads`` CPUs each (their start is outside the measured time: a user
  joins a running cluster), so that the run's two actors take one node each.

docs/s is documents / wall seconds of the whole command (interpreter start, model load, Ray start,
reading, tagging, writing, the manifest), so fixed costs weigh more on a small run. Ray's overhead is
its docs/s as a ratio to the local engine's at the same core count (``local-N``). Every run's outputs
are checked to hold every document exactly once.

Peak RSS: while a run goes, a thread walks this script's process tree (/proc) every 0.2 s and reads
each process's VmHWM (the kernel's peak resident set, /proc/PID/status) — the peak since the process
started, so sampling misses at most the last 0.2 s of a process's life. Workers are the ``mambaner tag``
process itself (``local-1``), the processes forked from its multiprocessing fork server (``local-N``),
and the Ray worker processes running the tagging actor (``ray::…_InputTagger…`` in their title);
Ray's own daemons (GCS, raylet, dashboard) are not counted. Linux only (elsewhere the column is empty).

The cost table: hours = documents / (docs/s per core × cores × 3600) and cost = hours × cores × price per
core-hour (GPUs: per GPU and price per GPU-hour), assuming throughput grows linearly with cores (measured
here only up to ``--cores``); docs/s per core is ``local-N``'s docs/s / N unless ``--cost-from`` gives it.
GPU rows say "not measured" unless ``--gpu-docs-per-s`` gives a measured rate.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.benchmark import (
    FIRST_PMID,
    REPO,
    XML_HEAD,
    XML_TAIL,
    big_xml_sources,
    cpu_name,
    data_dir,
    escaped_articles,
    full_article,
    load_average,
    table,
)

CONFIGS = ("local-1", "local-N", "ray-embedded", "ray-2-node")
#: The 2025 PubMed baseline: about 36 M citations in 1,274 files (NLM's figures, rounded).
BASELINE_DOCUMENTS = 36_000_000
#: Prices assumed by default, in USD: an on-demand x86 vCPU-hour of a compute-optimised cloud instance
#: (about $0.04-0.05 in 2025) and a data-centre GPU-hour (an A100/H100 on demand: about $2-4).
CORE_HOUR_USD = 0.045
GPU_HOUR_USD = 3.00
COST_SETUPS = (("one 2-core machine", 2, 0), ("16 cores", 16, 0), ("64 cores", 64, 0), ("1 GPU", 0, 1),
               ("8 GPUs", 0, 8))
SAMPLE_SECONDS = 0.2


# ------------------------------------------------------------------------------------------------- data

def write_pubmed_files(folder: Path, documents: int, files: int, sources: Sequence[Path]) -> list[Path]:
    """``documents`` full PubMed records with fresh PMIDs (FIRST_PMID, +1, …) in ``files`` gzipped
    PubmedArticleSet files of (nearly) equal size, made from the sources' abstracts in turn."""
    articles = escaped_articles(sources)
    paths, made = [], 0
    for number in range(files):
        count = documents // files + (number < documents % files)
        path = folder / f"pubmed-bench-{number:04d}.xml.gz"
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
            out.write(XML_HEAD)
            for _ in range(count):
                title, abstract = articles[made % len(articles)]
                out.write(full_article(FIRST_PMID + made, title, abstract))
                made += 1
            out.write(XML_TAIL)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------- memory

def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every process under ``root``: pid → (parent pid, command line as its title shows), from /proc."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])  # after "(comm)": state, then ppid
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                title = cmdline.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry.name)] = (ppid, title)
    found: dict[int, tuple[int, str]] = {}
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in parents.items() if ppid in frontier and pid not in found}
        found.update({pid: parents[pid] for pid in frontier})
    return found


@dataclass
class Seen:
    """One process of the tree: its parent, title (command line) and the largest VmHWM read."""

    ppid: int
    title: str
    peak_mb: float = 0.0


@dataclass
class TreeSampler:
    """Polls this process's descendants (/proc) and keeps each one's peak RSS (VmHWM)."""

    seen: dict[int, Seen] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for pid, (ppid, title) in _descendants(os.getpid()).items():
                entry = self.seen.setdefault(pid, Seen(ppid, title))
                entry.title = title or entry.title  # a Ray worker takes its actor's name once it is given one
                peak = _vm_hwm_mb(pid)
                if peak is not None:
                    entry.peak_mb = max(entry.peak_mb, peak)
            self._stop.wait(SAMPLE_SECONDS)

    def workers(self, config: str, tag_pid: int) -> list[float]:
        """The peak RSS (MB) of each process that tagged in this run (see the module's docstring)."""
        if config == "local-1":
            return [self.seen[tag_pid].peak_mb] if tag_pid in self.seen else []
        if config.startswith("local"):
            # the fork server is the tag process's child; its children (forked: the same title) are workers
            servers = {pid for pid, entry in self.seen.items()
                       if entry.ppid == tag_pid and "forkserver" in entry.title}
            return [entry.peak_mb for entry in self.seen.values() if entry.ppid in servers]
        return [entry.peak_mb for entry in self.seen.values()
                if entry.title.startswith("ray::") and "_InputTagger" in entry.title]


# ------------------------------------------------------------------------------------------------- runs

@dataclass
class Result:
    config: str
    cores: int
    seconds: float
    documents: int
    exit_status: int
    complete: bool  # every document of the inputs in the outputs exactly once
    worker_peaks_mb: list[float]
    driver_peak_mb: float
    command: str

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds


def tag_command(config: str, inputs: Sequence[Path], output: Path, args: argparse.Namespace,
                address: str | None) -> list[str]:
    workers = 1 if config == "local-1" else args.cores
    command = [sys.executable, "-m", "mambaner_cli", "tag", *map(str, inputs), "-o", f"{output}/", "-q",
               "--threads", str(args.threads), "--batch-size", str(args.batch_size), "--workers", str(workers),
               "--format", "parquet"]
    if args.model:
        command += ["--model", args.model]
    if config == "ray-embedded":
        command += ["--engine", "ray"]
    elif config == "ray-2-node":
        command += ["--ray-address", str(address)]
    return command


def outputs_complete(output: Path, documents: int) -> bool:
    """Whether the outputs hold PMIDs FIRST_PMID … +documents-1, each in exactly one input's output."""
    import pyarrow.parquet as pq

    counts: Counter[str] = Counter()
    for path in sorted(output.glob("*.parquet")):
        counts.update(set(pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist()))
    expected = {str(FIRST_PMID + k) for k in range(documents)}
    return set(counts) == expected and set(counts.values()) == {1}


def run_config(config: str, inputs: Sequence[Path], documents: int, folder: Path, args: argparse.Namespace,
               address: str | None = None) -> Result:
    output = folder / f"out-{config.replace('-N', f'-{args.cores}')}"
    command = tag_command(config, inputs, output, args, address)
    cores = 1 if config == "local-1" else args.cores
    env = dict(os.environ, RAY_DEDUP_LOGS="0")
    sampler = TreeSampler()
    sampler.start()
    try:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    finally:
        sampler.stop()
    code = os.waitstatus_to_exitcode(status)
    # the inputs as the glob that names them all, the temporary folder as $TMP
    shown = shlex.join(["mambaner", "tag", "INPUTS", *command[4 + len(inputs):]]).replace(str(folder), "$TMP")
    shown = shown.replace("INPUTS", "$TMP/pubmed-bench-*.xml.gz")
    return Result(config, cores, seconds, documents, code, code == 0 and outputs_complete(output, documents),
                  sampler.workers(config, process.pid), usage.ru_maxrss / 1024, shown)


def measure(args: argparse.Namespace, folder: Path) -> list[Result]:
    inputs = write_pubmed_files(folder, args.documents, args.files, big_xml_sources(data_dir(args.data_dir)))
    print(f"{args.documents} documents in {len(inputs)} files, "
          f"{sum(path.stat().st_size for path in inputs) / 2**20:.1f} MiB gzipped", flush=True)
    results = []
    for config in args.configs:
        if config == "ray-2-node":
            results.append(_on_two_nodes(inputs, args, folder))
        else:
            results.append(run_config(config, inputs, args.documents, folder, args))
        print(f"  {config}: {results[-1].seconds:.1f} s", file=sys.stderr, flush=True)
    return results


def _on_two_nodes(inputs: Sequence[Path], args: argparse.Namespace, folder: Path) -> Result:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": args.threads, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=args.threads)
        cluster.wait_for_nodes()
        return run_config("ray-2-node", inputs, args.documents, folder, args, address=cluster.address)
    finally:
        cluster.shutdown()


# ---------------------------------------------------------------------------------------------- tables

def results_table(results: Sequence[Result]) -> str:
    local = {result.cores: result for result in results if result.config.startswith("local")}
    rows = []
    for result in results:
        reference = local.get(result.cores)
        ratio = (f"{result.docs_per_s / reference.docs_per_s:.2f}"
                 if result.config.startswith("ray") and reference else "–")
        peaks = result.worker_peaks_mb
        rows.append((result.config.replace("-N", f"-{result.cores}"), result.cores, f"{result.seconds:.1f}", f"{result.docs_per_s:.1f}",
                     f"{result.docs_per_s / result.cores:.1f}", ratio,
                     f"{len(peaks)}: max {max(peaks):.0f}" if peaks else "–", f"{result.driver_peak_mb:.0f}",
                     "yes" if result.complete else f"NO (exit {result.exit_status})"))
    return table(("run", "cores", "wall s", "docs/s", "docs/s per core", "ratio to local at same cores",
                  "workers/actors: peak RSS MB", "driver peak RSS MB", "every document once"), rows)


def cost_table(docs_per_core_s: float, core_hour: float, gpu_hour: float, gpu_docs_per_s: float | None,
               documents: int = BASELINE_DOCUMENTS) -> str:
    """Hours and cost to tag ``documents`` on each setup of COST_SETUPS (formula in the module docstring)."""
    rows = []
    for name, cores, gpus in COST_SETUPS:
        if gpus and gpu_docs_per_s is None:
            rows.append((name, "not measured: no GPU", "–", "–"))
            continue
        rate = gpus * gpu_docs_per_s if gpus else cores * docs_per_core_s
        hours = documents / (rate * 3600)
        cost = hours * (gpus * gpu_hour if gpus else cores * core_hour)
        rows.append((name, f"{rate:,.0f}", f"{hours:,.1f}", f"${cost:,.0f}"))
    return table(("setup", "docs/s", "hours", "cost (USD)"), rows)


def cost_text(docs_per_core_s: float, args: argparse.Namespace, source: str) -> str:
    gpu = (f"{args.gpu_docs_per_s:g} docs/s per GPU (given)" if args.gpu_docs_per_s is not None
           else "no GPU rate: not measured")
    return (f"Cost of tagging the whole baseline ({args.baseline_documents:,} citations) at "
            f"{docs_per_core_s:.1f} docs/s per core ({source}), {gpu}; ${args.core_hour:g} per core-hour, "
            f"${args.gpu_hour:g} per GPU-hour.\n"
            "hours = documents / (docs/s per core × cores × 3600); cost = hours × cores × $/core-hour "
            "(GPU rows: docs/s per GPU × GPUs, and $/GPU-hour); linear scaling with cores assumed.\n\n"
            + cost_table(docs_per_core_s, args.core_hour, args.gpu_hour, args.gpu_docs_per_s,
                         args.baseline_documents))


# ------------------------------------------------------------------------------------------------ main

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--documents", type=int, default=5000, help="PubMed records to generate and tag (≥ 5,000 "
                   "for the figures README quotes)")
    p.add_argument("--files", type=int, default=10, help="input files the records are split into")
    p.add_argument("--cores", type=int, default=2, help="workers (and Ray actors) of the multi-core runs")
    p.add_argument("--threads", type=int, default=1, help="--threads of each run: torch threads (and Ray CPUs) "
                   "per worker or actor")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", help="--model of each run (default: the embedded default model)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated runs to make, in order (default: {','.join(CONFIGS)})")
    p.add_argument("--data-dir", help="folder holding bc5cdr/ and ncbi-disease/ (else $MAMBANER_DATA)")
    p.add_argument("--work-dir", help="where the temporary folder of inputs and outputs goes")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--cost-from", type=float, metavar="DOCS_PER_CORE_S",
                   help="measure nothing: print the cost table for this rate (docs/s per core)")
    p.add_argument("--baseline-documents", type=int, default=BASELINE_DOCUMENTS)
    p.add_argument("--core-hour", type=float, default=CORE_HOUR_USD, help="USD per core-hour")
    p.add_argument("--gpu-hour", type=float, default=GPU_HOUR_USD, help="USD per GPU-hour")
    p.add_argument("--gpu-docs-per-s", type=float, help="a measured GPU rate, docs/s per GPU")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser().error(f"unknown run(s) {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    shown = sys.argv[1:] if argv is None else list(argv)
    print("command: " + shlex.join(["python", "-m", "benchmarks.bench_corpus", *shown]))
    if args.cost_from is not None:
        print(cost_text(args.cost_from, args, "given"))
        return 0
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, load average {load_average()} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="mambaner-bench-corpus-", dir=args.work_dir) as folder:
        results = measure(args, Path(folder))
    print(f"load average {load_average()} at the end\n")
    print(results_table(results))
    print("\ncommands ($TMP: the temporary folder):")
    for result in results:
        print(f"  {result.config.replace('-N', f'-{result.cores}')}: {result.command}")
    if args.json:
        Path(args.json).write_text(json.dumps([vars(result) for result in results], indent=1), encoding="utf-8")
    local = [result for result in results if result.config == "local-N" and result.complete]
    if local:
        print()
        print(cost_text(local[0].docs_per_s / local[0].cores, args, f"measured: local-N / {local[0].cores}"))
    return 0 if all(result.complete for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
