"""Tag benchmark devel sets with any model and write the tags in ``benchmarks.compare_tags``'s format.

``compare_tags dump`` tags with the default model only; this takes ``--model`` (a shipped name or a
directory), so that a numerical change (for example ``$MAMBANER_MATMUL=bfloat16``) can be checked on the
multi-type model too. The convention per corpus is chosen as ``mambaner evaluate`` chooses it::

    MAMBANER_MATMUL=float32  python -m benchmarks.dump_model_tags /tmp/f32.json --model multi --corpora bc5cdr,bc2gm
    MAMBANER_MATMUL=bfloat16 python -m benchmarks.dump_model_tags /tmp/bf16.json --model multi --corpora bc5cdr,bc2gm
    python -m benchmarks.compare_tags diff /tmp/f32.json /tmp/bf16.json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from mambaner_cli.training.datasets import load_sentences

from mambaner_cli.evaluate import choose_convention
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import model_conventions, resolve_model


def dump(path: str, model: str, corpora: list[str], split: str, data: str | None, threads: int) -> None:
    torch.set_num_threads(threads)
    model_dir = resolve_model(model)
    result = {}
    for corpus in corpora:
        sentences = [tokens for tokens, _ in load_sentences([corpus], split, data)]
        convention, _ = choose_convention(corpus, model_conventions(model_dir))
        tagged = load_tagger(model_dir, device="cpu", convention=convention).tag(sentences)
        result[corpus] = [{"tags": tags, "scores": scores} for tags, scores in tagged]
        print(f"{corpus} {split}: {len(sentences)} sentences tagged", file=sys.stderr)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--model", default="default", help="a shipped model (default, multi) or a directory")
    parser.add_argument("--corpora", default="ncbi,bc5cdr-disease")
    parser.add_argument("--split", default="devel")
    parser.add_argument("--data", default=None, help="corpus folder (default: $MAMBANER_DATA or ../shared/data)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    dump(args.out, args.model, args.corpora.split(","), args.split, args.data, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
