"""Tag benchmark devel sets and compare the tags with another run's: do speed changes leave tags alone?

    python -m benchmarks.compare_tags dump before.json                 # with the code before a change
    python -m benchmarks.compare_tags dump after.json                  # with the code after it
    python -m benchmarks.compare_tags diff before.json after.json      # tags differing, sentence by sentence

``dump`` tags each corpus's split (default: NCBI-disease and BC5CDR-disease devel) with the embedded
default model under that corpus's own annotation convention if it has conventions, as ``mambaner evaluate`` does, and writes
every sentence's tags and confidences. ``diff`` counts differing tags and sentences and the largest
confidence difference; its exit status is 1 when any tag differs. Run the "before" dump from a copy of
the old code (``PYTHONPATH=/path/to/old``) to compare two versions in one checkout.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from mambaner_cli.training.datasets import load_sentences

from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import model_conventions


def dump(path: str, corpora: list[str], split: str, data: str | None, threads: int) -> None:
    torch.set_num_threads(threads)
    result = {}
    for corpus in corpora:
        sentences = [tokens for tokens, _ in load_sentences([corpus], split, data)]
        convention = corpus if corpus in model_conventions("default") else None
        tagged = load_tagger("default", device="cpu", convention=convention).tag(sentences)
        result[corpus] = [{"tags": tags, "scores": scores} for tags, scores in tagged]
        print(f"{corpus} {split}: {len(sentences)} sentences tagged", file=sys.stderr)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


def diff(before_path: str, after_path: str) -> int:
    with open(before_path, encoding="utf-8") as handle:
        before = json.load(handle)
    with open(after_path, encoding="utf-8") as handle:
        after = json.load(handle)
    status = 0
    for corpus in before:
        tags = sentences = differing_tags = differing_sentences = 0
        largest = 0.0
        for old, new in zip(before[corpus], after[corpus], strict=True):
            sentences += 1
            tags += len(old["tags"])
            wrong = sum(a != b for a, b in zip(old["tags"], new["tags"], strict=True))
            differing_tags += wrong
            differing_sentences += bool(wrong)
            largest = max([largest] + [abs(a - b) for a, b in zip(old["scores"], new["scores"])])
        print(f"{corpus}: {differing_tags} of {tags} tags differ, in {differing_sentences} of {sentences} "
              f"sentences; largest confidence difference {largest:.2e}")
        status |= differing_tags > 0
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    dumping = commands.add_parser("dump", help="tag the devel sets and write the tags to a JSON file")
    dumping.add_argument("out")
    dumping.add_argument("--corpora", default="ncbi,bc5cdr-disease")
    dumping.add_argument("--split", default="devel")
    dumping.add_argument("--data", default=None, help="corpus folder (default: $MAMBANER_DATA or ../shared/data)")
    dumping.add_argument("--threads", type=int, default=1)
    comparing = commands.add_parser("diff", help="compare two dumps")
    comparing.add_argument("before")
    comparing.add_argument("after")
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.out, args.corpora.split(","), args.split, args.data, args.threads)
        return 0
    return diff(args.before, args.after)


if __name__ == "__main__":
    raise SystemExit(main())
