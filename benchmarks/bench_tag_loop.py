"""Time the tagging loop alone (no start-up, no reading or writing), in one process, under alternating
settings of $MAMBANER_MATMUL and $MAMBANER_KERNELS, which are read at call time:

    python -m benchmarks.bench_tag_loop --rounds 3
    python -m benchmarks.bench_tag_loop --corpus bc5cdr-disease --split devel --model default

On a busy 2-core machine a whole `mambaner tag` run varies by +-1.5 s between identical runs, more than
a 10 % change of the loop; alternating settings in one process compares them under the same load.
The first round includes oneDNN's compiling of its bfloat16 kernels (ops/matmul.py).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from mambaner_cli.training.datasets import load_sentences

from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import model_conventions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="bc5cdr-disease")
    parser.add_argument("--split", default="devel")
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kernels", default="torch,numba")
    parser.add_argument("--matmul", default="float32,bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sentences = [tokens for tokens, _ in load_sentences([args.corpus], args.split, args.data)]
    conventions = model_conventions(args.model)
    tagger = load_tagger(args.model, device="cpu", convention=args.corpus if args.corpus in conventions else None)
    print(f"{len(sentences):,} sentences of {args.corpus} {args.split}, model {args.model}, one thread")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for kernels in args.kernels.split(","):
            for matmul in args.matmul.split(","):
                os.environ["MAMBANER_KERNELS"], os.environ["MAMBANER_MATMUL"] = kernels, matmul
                start = time.perf_counter()
                tagger.tag(sentences)
                times.setdefault((kernels, matmul), []).append(time.perf_counter() - start)
    for (kernels, matmul), seconds in times.items():
        print(f"kernels={kernels:6s} matmul={matmul:9s} best {min(seconds):.2f} s  "
              f"(rounds: {', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
