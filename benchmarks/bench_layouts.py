"""Processes × threads × kernels for `mambaner tag`, end to end (issue 18): whole commands, wall time, peak RSS.

Each setting runs the real command line as a child process, in alternating rounds (so that a slow moment of a
shared machine does not fall on one setting only), on the same inputs; the process tree's memory is sampled
every 50 ms (the largest single process's RSS, and the sum of the parent's and its workers' PSS). Prints one table row a
setting — the median and every round's wall time, documents/s, peak memory — and checks that every setting wrote
the same mentions as the first.

    python -m benchmarks.bench_layouts ../shared/data/bc5cdr/CDR_{Training,Development,Test}Set.PubTator.txt \\
        --rounds 2 --setting default= --setting "workers 1=--workers 1" --setting "workers 2=--workers 2" \\
        --setting "workers 2, numba=--workers 2 MAMBANER_KERNELS=numba"

A setting is ``NAME=ARGS``: its extra command-line arguments, where ``VAR=value`` words set environment
variables of the child instead. A peer is ``NAME=COMMAND``: another program's whole command, the inputs
appended, run in the same alternating rounds (on a shared virtual machine the speed of a core drifts by
20 % within minutes, so a ratio is only meaningful between runs taken side by side):

    --peer "spaCy, 2 processes=/tmp/spacy-venv/bin/python benchmarks/bench_spacy.py --processes 2"

Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def tree_rss(pid: int) -> tuple[int, int]:
    """The largest resident set size of ``pid`` and its descendants, and the sum of their proportional set sizes
    (bytes), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    sizes = [rss.get(p, 0) for p in tree]
    return max(sizes, default=0), sum(proportional(p) for p in tree)


def proportional(pid: int) -> int:
    """A process's proportional set size in bytes (each shared page divided among the processes sharing it:
    forked workers share the parent's model and libraries, which RSS would count once per process)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_once(inputs: list[str], extra: list[str], output: Path | None) -> tuple[float, int, int]:
    """Wall seconds, peak single-process RSS and peak total PSS of one `mambaner tag` command writing
    ``output``, or with ``output`` None of the peer command ``extra`` on the inputs."""
    environment = dict(os.environ)
    arguments = []
    for word in extra:
        name, equals, value = word.partition("=")
        if equals and name.isupper() and output is not None:
            environment[name] = value
        else:
            arguments.append(word)
    if output is None:
        command = [*arguments, *inputs]
    else:
        command = [sys.executable, "-m", "mambaner_cli", "tag", *inputs, "-o", str(output), "-q", *arguments]
    peaks = [0, 0]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            largest, total = tree_rss(process.pid)
            peaks[0], peaks[1] = max(peaks[0], largest), max(peaks[1], total)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"{shlex.join(command)} exited with {code}")
    return seconds, peaks[0], peaks[1]


def mentions(path: Path) -> list[tuple]:
    """Every mention of a JSONL output, for the same-output check."""
    found = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            found.extend((record["id"], m["start"], m["end"], m["label"]) for m in record["mentions"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--setting", action="append", required=True, metavar="NAME=ARGS")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=COMMAND")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    settings = [(name, shlex.split(extra)) for name, _, extra in (s.partition("=") for s in args.setting)]
    peers = {name for name, _, _ in (p.partition("=") for p in args.peer)}
    settings += [(name, shlex.split(command)) for name, _, command in (p.partition("=") for p in args.peer)]
    documents = sum(Path(path).read_text(encoding="utf-8").count("|t|") for path in args.inputs)
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name, _ in settings}
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for name, extra in settings if round_ % 2 == 0 else reversed(settings):
                if name in peers:
                    results[name].append(run_once(args.inputs, extra, None))
                    print(f"round {round_ + 1} {name}: {results[name][-1][0]:.1f} s", file=sys.stderr)
                    continue
                output = Path(folder) / "out.jsonl"
                results[name].append(run_once(args.inputs, extra, output))
                found = mentions(output)
                reference = reference if reference is not None else found
                if found != reference:
                    print(f"warning: {name} wrote other mentions than the first setting", file=sys.stderr)
                print(f"round {round_ + 1} {name}: {results[name][-1][0]:.1f} s", file=sys.stderr)
    print(f"{documents} documents (PubTator titles), {args.rounds} rounds; command: mambaner tag INPUTS -o out.jsonl -q ARGS")
    print("| setting | ARGS | wall s (median; rounds) | documents/s | peak RSS, largest process | peak PSS, all processes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, extra in settings:
        walls = [wall for wall, _, _ in results[name]]
        median = statistics.median(walls)
        largest = max(r[1] for r in results[name]) / 2**20
        total = max(r[2] for r in results[name]) / 2**20
        print(f"| {name} | `{shlex.join(extra)}` | {median:.1f} ({', '.join(f'{w:.1f}' for w in walls)}) | "
              f"{documents / median:.0f} | {largest:.0f} MB | {total:.0f} MB |")


if __name__ == "__main__":
    main()
