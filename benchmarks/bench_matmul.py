"""Time the Mamba mixer's projections in float32 and in bfloat16 (ops/matmul.py) on one thread.

    python -m benchmarks.bench_matmul                     # shipped shapes (h 128, d 256, r 8, n 16)
    python -m benchmarks.bench_matmul --calls 400 --seed 0

Two measurements: each projection at one row count (800 = 25 sentences x 32 positions), best of many
calls, so the compiled kernel is reused; and a stream of ``--calls`` random row counts through the three
projections that ``Mixer.infer`` multiplies in bfloat16, twice, as tagging sends them: here oneDNN's
per-shape compiling shows, which ``linear_bfloat16``'s fixed row blocks keep to a few shapes.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
import torch.nn.functional as F

from benchmarks.bench_scan import best_time
from mambaner_cli.model.ops.matmul import linear_bfloat16, native_bfloat16

SHAPES = {"in_proj": (512, 128), "x_proj": (40, 256), "dt_proj": (256, 8), "out_proj": (128, 256)}


def best_ms(function, repeat: int = 200) -> float:
    """Best of ``repeat`` calls in milliseconds (bench_scan.best_time: after a warm-up call, which pays
    oneDNN's compilation of the shape)."""
    return best_time(function, repeat) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    print(f"native bfloat16: {native_bfloat16()}")
    weights = {name: torch.randn(shape) / 16 for name, shape in SHAPES.items()}
    for name, weight in weights.items():
        x, weight_bf16 = torch.randn(800, weight.shape[1]), weight.bfloat16()
        whole = best_ms(lambda: F.linear(x.bfloat16(), weight_bf16).float())  # noqa: B023
        print(f"{name:9s} [800, {weight.shape[1]}] -> {weight.shape[0]}: float32 "
              f"{best_ms(lambda: F.linear(x, weight)):.3f} ms, bfloat16 whole "  # noqa: B023
              f"{whole:.3f} ms, bfloat16 blocks {best_ms(lambda: linear_bfloat16(x, weight_bf16, None)):.3f} ms")  # noqa: B023
    rng = random.Random(args.seed)
    counts = [rng.randint(20, 3000) for _ in range(args.calls)]
    stream = [(name, torch.randn(count, weights[name].shape[1])) for count in counts
              for name in ("in_proj", "x_proj", "out_proj")]
    bf16 = {name: weight.bfloat16() for name, weight in weights.items()}
    ways = {"float32": lambda name, x: F.linear(x, weights[name]),
            "bfloat16 whole": lambda name, x: F.linear(x.bfloat16(), bf16[name]).float(),
            "bfloat16 blocks": lambda name, x: linear_bfloat16(x, bf16[name], None)}
    for label, way in ways.items():
        rounds = []
        for _ in range(2):
            start = time.perf_counter()
            for name, x in stream:
                way(name, x)
            rounds.append(time.perf_counter() - start)
        print(f"{args.calls} random row counts x 3 projections, {label}: "
              f"first pass {rounds[0]:.2f} s, second {rounds[1]:.2f} s")


if __name__ == "__main__":
    main()
