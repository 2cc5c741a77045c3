"""Tags of a model directory and of its packed copy (`mambaner train pack`: float16-stored weights) on the NCBI-disease and
BC5CDR-disease devel splits, each under its own convention: tags that differ and devel F1 of both.

    python benchmarks/compare_packed.py MODEL_DIR PACKED_DIR
"""
import sys
from mambaner_cli.corpora import sentences
from mambaner_cli.metrics import entity_scores
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.device import set_threads
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
    print(name, "devel F1 full %.2f packed %.2f; tags differing %d of %d tokens" % (
        entity_scores(gold, out[0])["f1"], entity_scores(gold, out[1])["f1"], differ, tokens), flush=True)
