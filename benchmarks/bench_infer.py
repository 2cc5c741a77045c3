"""Tagging throughput of a scratch tagger on a CPU, where its time goes, and its inference paths' worth.

    python -m benchmarks.bench_infer                       # default model, NCBI devel, batch 32, 1 thread
    python -m benchmarks.bench_infer --corpus bc5cdr-disease --batch-size 128 --repeats 5

Prints three things, all with ``--threads`` torch threads (1 by default: per-core numbers, and the CPU
may be shared):

1. Throughput of ``Tagger.tag`` over the split's sentences (sentences/s and tokens/s, best of
   ``--repeats`` after a warm-up): what ``mambaner tag`` spends per sentence once text is tokenised.
2. Where that time goes, from one more run with timers around the stages: token encoding, lexicon
   matching, the character CNN, the two Mamba stacks (and their convolution and selective scan), the CRF's
   Viterbi and marginals. The rest is Python around them (windows, batching, results).
3. The network's inference paths (``infer=True``, as ``decode`` runs them: character CNN as table
   look-ups, the Mamba stacks' time-major ``infer`` with ``scan.infer_scan``) against the paths
   training runs (convolution, the stacks' batch-major ``forward`` with the autograd scan) on the same
   batches, interleaved: time, the largest emission difference and the number of tags that differ (the
   fast paths must not change a tag). Parameters are frozen for that run, so the training paths build
   no graph: the comparison is of the computations alone.

The machine may be busy: compare numbers from the same run, and prefer the best of several repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from mambaner_cli.training.datasets import load_sentences

from benchmarks.bench_scan import best_time
from benchmarks.benchmark import cpu_name, load_average
from mambaner_cli.model.lexicon import Lexicons
from mambaner_cli.model.models import tagger
from mambaner_cli.model.modules import block, crf, embeddings
from mambaner_cli.model.modules.crf import constrained_viterbi
from mambaner_cli.runtime import tagger as runtime_tagger
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.tagger import Tagger

# (owner, attribute, stage): what the breakdown times. Module-level functions are timed where the
# caller looks them up (runtime.tagger imports encode_batch and variant_matches; modules.block imports infer_scan and infer_conv_silu).
STAGES: list[tuple[Any, str, str]] = [
    (runtime_tagger, "encode_batch", "encode tokens (features.encode_batch)"),
    (Lexicons, "match", "lexicon matching (every type)"),
    (runtime_tagger, "variant_matches", "variant patterns (variant_matches)"),
    (embeddings.TokenFeatures, "char_vectors", "character CNN"),
    (tagger.MambaTagger, "_states", "Mamba stacks (both directions)"),
    (block, "infer_conv_silu", "  of which the convolution + SiLU"),
    (block, "infer_scan", "  of which the selective scan (+ skip, gate)"),
    (crf.CRF, "viterbi", "CRF Viterbi"),
    (crf.CRF, "marginals", "CRF marginals (confidences)"),
]


@contextlib.contextmanager
def timed(stages: list[tuple[Any, str, str]], totals: Counter) -> Iterator[None]:
    """Wrap each (owner, attribute) with a timer adding to ``totals[stage]``; restore them on exit."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in stages]

    def wrapper(function: Callable, stage: str) -> Callable:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[stage] += time.perf_counter() - start
        return timed_call

    try:
        for (owner, name, function), (_, _, stage) in zip(saved, stages):
            setattr(owner, name, wrapper(function, stage))
        yield
    finally:
        for owner, name, function in saved:
            setattr(owner, name, function)


def encoded_batches(model: Tagger, sentences: list[list[str]], batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The split as ``Tagger.tag`` batches it (sorted by length), already encoded."""
    ordered = sorted(sentences, key=len)
    batches = []
    for first in range(0, len(ordered), batch_size):
        group = [s for s in ordered[first:first + batch_size] if s]
        if not group:
            continue
        batches.append(model.encode(group, *model.input_codes(group)))
    return batches


def compare_paths(model: Tagger, batches: list[dict[str, torch.Tensor]], repeats: int) -> dict[str, float]:
    """Inference paths against training paths of the same frozen network on the same batches."""
    network = model.model
    frozen = [p for p in network.parameters() if p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        def run(grad: bool) -> list[torch.Tensor]:  # grad: the training paths; else the inference paths
            with torch.set_grad_enabled(grad):
                return [network(**batch, infer=not grad) for batch in batches]

        fast, slow = run(False), run(True)
        worst = max(float((a - b).abs()[batch["mask"]].max()) for a, b, batch in zip(fast, slow, batches))

        def decoded(emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
            if network.crf is not None:
                return network.crf.viterbi(emissions, mask)
            return constrained_viterbi(emissions.log_softmax(-1), mask, network.config.labels)

        differing = sum(x != y for a, b, batch in zip(fast, slow, batches)
                        for p, q in zip(decoded(a, batch["mask"]), decoded(b, batch["mask"])) for x, y in zip(p, q))
        times = {False: float("inf"), True: float("inf")}
        for _ in range(repeats):  # interleaved, so that a busy moment hurts both alike
            for grad in (False, True):
                start = time.perf_counter()
                run(grad)
                times[grad] = min(times[grad], time.perf_counter() - start)
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    return {"inference": times[False], "training": times[True], "max_diff": worst, "differing": differing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="shipped model name or model directory")
    parser.add_argument("--corpus", default="ncbi", help="corpus of training.datasets (ncbi, bc5cdr-disease, …)")
    parser.add_argument("--split", default="devel")
    parser.add_argument("--data", default=None, help="corpus folder (default: $MAMBANER_DATA or ../shared/data)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="first N sentences only (0: all)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = load_tagger(args.model, device="cpu")
    if not isinstance(model, Tagger) or not isinstance(model.model, tagger.MambaTagger):
        parser.error(f"{args.model} is not a scratch MambaTagger model (fine-tuned models are not covered)")
    sentences = [tokens for tokens, _ in load_sentences([args.corpus], args.split, args.data)]
    if args.limit:
        sentences = sentences[: args.limit]
    tokens = sum(len(s) for s in sentences)
    print(f"{args.model} on {args.corpus} {args.split}: {len(sentences)} sentences, {tokens} tokens; batch "
          f"{args.batch_size}, {args.threads} thread(s), torch {torch.__version__}, {cpu_name()}, load {load_average()}")

    seconds = best_time(lambda: model.tag(sentences, batch_size=args.batch_size), args.repeats)
    print(f"\n1. Tagger.tag, best of {args.repeats}: {seconds:.3f} s  {len(sentences) / seconds:.0f} sentences/s"
          f"  {tokens / seconds:.0f} tokens/s")

    totals: Counter = Counter()
    with timed(STAGES, totals):
        start = time.perf_counter()
        model.tag(sentences, batch_size=args.batch_size)
        total = time.perf_counter() - start
    print(f"\n2. Where the time goes (one run with timers: {total:.3f} s)")
    for _, _, stage in STAGES:
        print(f"   {stage:40s} {totals[stage]:7.3f} s  {100 * totals[stage] / total:5.1f} %")
    counted = sum(v for k, v in totals.items() if not k.startswith("  "))
    print(f"   {'the rest (Python around the stages)':40s} {total - counted:7.3f} s  "
          f"{100 * (total - counted) / total:5.1f} %")

    batches = encoded_batches(model, sentences, args.batch_size)
    result = compare_paths(model, batches, args.repeats)
    print(f"\n3. Network forward on the same {len(batches)} batches, best of {args.repeats} interleaved:")
    print(f"   inference paths (no autograd)  {result['inference']:.3f} s")
    print(f"   training paths (autograd ops)  {result['training']:.3f} s   "
          f"({result['training'] / result['inference']:.2f}x the inference paths)")
    print(f"   largest emission difference {result['max_diff']:.2g}; differing Viterbi tags {result['differing']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
