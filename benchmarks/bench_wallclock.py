"""Wall-clock figures that the default test run used to assert, measured here instead.

    python -m benchmarks.bench_wallclock [--repeats 3] [--threads 1]

The tests check behaviour only: a time limit fails on a busy or slow machine (and the CPU that runs the
tests is often shared), and says nothing on a fast one. This script prints each figure next to the limit
the test used to assert, for comparison only (nothing is checked, the exit status is 0):

1. The selective scan at b=4, d=256, l=176, n=16 (the inputs of ``tests/test_scan.py``'s ``scan_inputs``,
   seed 7), forward under ``no_grad``: the sequential reference against the chunked scan, and the
   speed-up. The test asserted a speed-up above 1.5.
2. ``tests/test_tagger.py::test_tagger_overfits_a_toy_disease_corpus`` run whole (building a tiny tagger,
   40 full-batch AdamW steps on 20 sentences, decoding, scoring). The test asserted under 20 s.
3. ``tests/test_text.py::test_long_runs_of_marks_stay_fast`` run whole: splitting runs of 50,000 marks
   (a regular expression that backtracks would take minutes). The test asserted under 2 s.
4. The default sentence splitter over 1000 abstract-like lines (2000 sentences; the text of
   ``tests/test_text.py::test_splitting_is_fast``): sentences per second. The test asserted above 10,000.

Each figure is the best of ``--repeats`` runs after a warm-up run (the machine may be shared: the best run
is the one least disturbed). Torch runs with ``--threads`` threads, 1 by default, as the tests do. Run it
from the repository root: it imports the tests' own code, so that it times exactly what they run.
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch

from benchmarks.bench_scan import best_time


def abstract_like_text(lines: int = 1000) -> str:
    """Two sentences a line, with abbreviations, decimals and parentheses (as in tests/test_text.py)."""
    return " ".join(
        f"In 1999 we studied {n} families with e.g. ataxia (p < 0.05; Fig. {n}). mRNA levels fell by 1.5-fold."
        for n in range(lines)
    )


def cells(*values: object) -> str:
    return "| " + " | ".join(str(v) for v in values) + " |"


def measure(repeats: int) -> list[tuple[str, str, str, bool]]:
    """(what, figure, former limit, whether the figure is within it) for each measurement."""
    from mambaner_cli.model.ops.scan import selective_scan_chunked, selective_scan_ref
    from mambaner_cli.text.sentences import default_splitter
    from tests import test_tagger, test_text
    from tests.test_scan import scan_inputs

    rows = []
    args = scan_inputs(4, 256, 176, 16, seed=7)
    with torch.no_grad():
        reference = best_time(lambda: selective_scan_ref(**args), repeats)
        chunked = best_time(lambda: selective_scan_chunked(**args), repeats)
    what = f"selective scan b=4 d=256 l=176 n=16, forward: reference {reference * 1e3:.1f} ms, chunked"
    rows.append((f"{what} {chunked * 1e3:.1f} ms", f"{reference / chunked:.1f}x faster", "> 1.5x",
                 reference / chunked > 1.5))
    overfit = best_time(test_tagger.test_tagger_overfits_a_toy_disease_corpus, repeats)
    rows.append(("test_tagger_overfits_a_toy_disease_corpus, whole test", f"{overfit:.2f} s", "< 20 s",
                 overfit < 20))
    marks = best_time(test_text.test_long_runs_of_marks_stay_fast, repeats)
    rows.append(("test_long_runs_of_marks_stay_fast, whole test", f"{marks:.3f} s", "< 2 s", marks < 2.0))
    text, splitter = abstract_like_text(), default_splitter()
    sentences = len(splitter.split(text))
    split = best_time(lambda: splitter.split(text), repeats)
    rows.append((f"default splitter, {sentences} sentences of abstract-like text",
                 f"{sentences / split:,.0f} sentences/s", "> 10,000 sentences/s", sentences / split > 10_000))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (best is shown)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shown = sys.argv[1:] if argv is None else argv
    print("command: " + " ".join(["python -m benchmarks.bench_wallclock", *shown]))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"best of {args.repeats} after a warm-up\n"
    )
    print(cells("measurement", "figure", "limit the test asserted", "within it"))
    print(cells(*["---"] * 4))
    for what, figure, limit, within in measure(args.repeats):
        print(cells(what, figure, limit, "yes" if within else "NO"), flush=True)


if __name__ == "__main__":
    main()
