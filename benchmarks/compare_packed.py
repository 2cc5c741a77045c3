"""Tags of a model directory and of its packed copy (`mambaner train pack`: float16-stored weights) on the
NCBI-disease and BC5CDR-disease devel splits, each under its own convention: tags that differ and devel F1
of both.

    python benchmarks/compare_packed.py MODEL_DIR PACKED_DIR
"""
import sys

from mambaner_cli.corpora import sentences
from mambaner_cli.metrics import entity_scores
from mambaner_cli.runtime.device import set_threads
from mambaner_cli.runtime.load import load_tagger

set_threads(1)
full_dir, packed_dir = sys.argv[1], sys.argv[2]
for name in ("ncbi", "bc5cdr-disease"):
    data = sentences(name, "devel", "../shared/data")
    gold = [t for _, t in data]
    out = []
    for d in (full_dir, packed_dir):
        tagger = load_tagger(d, device="cpu", convention=name)
        out.append([tags for tags, _ in tagger.tag([tok for tok, _ in data], batch_size=64)])
    differ = sum(a != b for x, y in zip(*out) for a, b in zip(x, y))
    tokens = sum(len(x) for x in out[0])
    full_f1, packed_f1 = (entity_scores(gold, tags)["f1"] for tags in out)
    print(f"{name} devel F1 full {full_f1:.2f} packed {packed_f1:.2f}; tags differing {differ} of {tokens} tokens",
          flush=True)
