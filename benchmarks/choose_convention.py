"""Devel F1 of a model with annotation conventions under each candidate default convention: every corpus
scored on its own types only, their macro mean, and the disease figures of NCBI-disease and BC5CDR-disease
(disease mentions only). Devel splits only: this chooses a model's ``default_convention``.

    python benchmarks/choose_convention.py MODEL_DIR CONVENTION [CONVENTION ...] [--data-dir DIR]

A model without conventions is scored once: give ``none`` as its convention; its corpora are those its
training scored on devel (``metrics.json``), or ``--corpora``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mambaner_cli.corpora import corpus, sentences
from mambaner_cli.metrics import entity_scores, only_types
from mambaner_cli.model.conventions import SHARED_CONVENTION
from mambaner_cli.runtime.device import set_threads
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import model_conventions


def f1(tagger, part: list, types: tuple[str, ...]) -> float:
    """Strict F1 of ``tagger`` on ``part``, gold and predictions both limited to ``types``."""
    predicted = [only_types(tags, types) for tags, _ in tagger.tag([tokens for tokens, _ in part], 64)]
    return entity_scores([only_types(tags, types) for _, tags in part], predicted)["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("conventions", nargs="+")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--corpora", nargs="+", help="default: the model's conventions, or its training corpora")
    parser.add_argument("--network-only", action="store_true", help="without the run-time rules (runtime/tagger.py)")
    args = parser.parse_args()
    set_threads(args.threads)
    # the model's conventions are its corpora, bar `shared` (trained on all of them: --shared-convention)
    corpora = args.corpora or [name for name in model_conventions(args.model) if name != SHARED_CONVENTION]
    if not corpora:  # no conventions: the corpora its training scored on devel
        metrics = json.loads((Path(args.model) / "metrics.json").read_text(encoding="utf-8"))
        corpora = list(metrics["devel_by_dataset"])
    data = {name: sentences(name, "devel", args.data_dir) for name in corpora}
    disease = {name: sentences(name, "devel", args.data_dir) for name in ("ncbi", "bc5cdr-disease")}
    results = {}
    for convention in args.conventions:
        tagger = load_tagger(args.model, device="cpu", convention=None if convention == "none" else convention,
                             rules=not args.network_only)
        per_corpus = {name: f1(tagger, part, corpus(name).annotates) for name, part in data.items()}
        results[convention] = {"macro": sum(per_corpus.values()) / len(per_corpus), "per_corpus": per_corpus,
                               "disease": {name: f1(tagger, part, ("Disease",)) for name, part in disease.items()}}
        print(convention, json.dumps(results[convention], indent=None), flush=True)
    best = max(results, key=lambda c: results[c]["macro"])
    print(f"highest macro mean of devel F1: {best} ({results[best]['macro']:.2f})")


if __name__ == "__main__":
    main()
