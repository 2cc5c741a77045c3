"""Devel F1 of an ensemble of taggers against each of its members: what distillation could keep.

Each model tags every devel split of the given corpora in one pass (its default convention); the ensemble
averages the members' CRF marginals per token and decodes them with a constrained Viterbi (valid IOB2).
Each member is also decoded the same way from its own marginals (``posterior``), so that the ensemble's
gain is not confused with the change of decoder. Every corpus is scored on its own types; devel only.

    python -m benchmarks.ensemble_devel runs/A runs/B [...] --corpora ncbi bc5cdr ... [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from mambaner_cli.training.pseudo import marginals, posterior_tags

from mambaner_cli.corpora import corpus, sentences
from mambaner_cli.metrics import entity_scores, only_types
from mambaner_cli.runtime.device import set_threads
from mambaner_cli.runtime.load import load_tagger

DISEASE_CORPORA = ("ncbi", "bc5cdr-disease")


def score(gold: list[list[str]], predicted: list[list[str]], types: tuple[str, ...]) -> float:
    return entity_scores([only_types(t, types) for t in gold], [only_types(t, types) for t in predicted])["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--corpora", nargs="+", required=True)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    names = list(dict.fromkeys([*args.corpora, *DISEASE_CORPORA]))
    data = {name: sentences(name, "devel", args.data_dir) for name in names}
    per_model: dict[str, dict[str, list[np.ndarray]]] = {}
    labels: list[str] | None = None
    rows: dict[str, dict[str, float]] = {}
    for model in args.models:
        tagger = load_tagger(model, device="cpu", rules=False)  # the networks: what distillation would copy
        if labels is not None and list(tagger.labels) != labels:
            raise SystemExit(f"{model}: its labels differ from the first model's")
        labels = list(tagger.labels)
        per_model[model] = {name: marginals(tagger, [t for t, _ in part]) for name, part in data.items()}
        viterbi = {name: [tags for tags, _ in tagger.tag([t for t, _ in part], 64)] for name, part in data.items()}
        for kind, predicted in (("viterbi", viterbi),
                                ("posterior", {n: posterior_tags(per_model[model][n], labels) for n in names})):
            rows[f"{model} {kind}"] = figures(data, predicted, args.corpora)
            print(f"{model} {kind}", json.dumps(rows[f"{model} {kind}"]), flush=True)
    assert labels is not None
    averaged = {name: [np.mean([per_model[m][name][i] for m in args.models], axis=0)
                       for i in range(len(data[name]))] for name in names}
    ensemble = {name: posterior_tags(averaged[name], labels) for name in names}
    rows["ensemble"] = figures(data, ensemble, args.corpora)
    print("ensemble", json.dumps(rows["ensemble"]), flush=True)
    print(f"\n{'':60s} {'macro':>6s} {'disease':>7s}")
    for key, row in rows.items():
        print(f"{key:60s} {row['macro']:6.2f} {row['disease_mean']:7.2f}")


def figures(data: dict[str, list], predicted: dict[str, list[list[str]]], corpora: list[str]) -> dict:
    """Each corpus's F1 on its own types, their macro mean, and the two disease corpora's figures."""
    per_corpus = {name: score([tags for _, tags in data[name]], predicted[name], corpus(name).annotates)
                  for name in corpora}
    disease = {name: score([tags for _, tags in data[name]], predicted[name], ("Disease",))
               for name in DISEASE_CORPORA}
    return {"macro": round(sum(per_corpus.values()) / len(per_corpus), 2),
            "disease_mean": round(sum(disease.values()) / len(disease), 2),
            "per_corpus": {k: round(v, 2) for k, v in per_corpus.items()},
            "disease": {k: round(v, 2) for k, v in disease.items()}}


if __name__ == "__main__":
    main()
