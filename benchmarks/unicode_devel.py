"""Devel F1 on the corpora as written (ASCII) and with their Greek letters spelled as PubMed writes them.

The training corpora are ASCII: "beta-thalassemia", "TNF-alpha", "IFN-gamma". PubMed's XML and most new
text write the letters themselves ("β-thalassemia", "TNF-α"). This script rewrites every devel token that is
a Greek letter's name, or starts or ends with one next to digits or capitals ("alpha1", "TNFalpha"), into the
letter, and scores the model on both versions: the gap is what Unicode text costs the model.

    python -m benchmarks.unicode_devel [--model NAME|DIR] [--corpora ncbi bc5cdr ...] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import re

from mambaner_cli.corpora import corpus, sentences
from mambaner_cli.metrics import entity_scores, only_types
from mambaner_cli.runtime.device import set_threads
from mambaner_cli.runtime.load import load_tagger

GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ", "eta": "η",
         "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π",
         "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω"}
# a lower-case letter name as the whole token, or (names of four letters or more, not "eta" in "Beta")
# beside digits or capitals in it: alpha1, TNFalpha, 5alpha
_NAME = "|".join(sorted(GREEK, key=len, reverse=True))
_LONG = "|".join(sorted((name for name in GREEK if len(name) >= 4), key=len, reverse=True))
_IN_TOKEN = re.compile(rf"^(?:{_NAME})$|^(?:{_LONG})(?=[0-9A-Z])|(?<=[0-9A-Z])(?:{_LONG})$")


def greek_token(token: str) -> str:
    return _IN_TOKEN.sub(lambda m: GREEK[m.group(0)], token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--corpora", nargs="+", default=["ncbi", "bc5cdr", "bc2gm", "gnormplus", "nlmgene",
                                                         "species800", "linnaeus", "tmvar3", "bioid"])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    tagger = load_tagger(args.model, device="cpu")
    print(f"{'corpus':12s} {'rewritten tokens':>16s} {'sentences':>9s}  F1 on those sentences: ASCII  Greek letters")
    for name in args.corpora:
        types = corpus(name).annotates
        data = sentences(name, "devel", args.data_dir)
        rewritten = [[greek_token(t) for t in tokens] for tokens, _ in data]
        changed = [i for i, (tokens, _) in enumerate(data) if rewritten[i] != list(tokens)]
        if not changed:
            print(f"{name:12s} {0:16d} {0:9d}")
            continue
        gold = [only_types(data[i][1], types) for i in changed]
        scores = []
        for version in ([list(data[i][0]) for i in changed], [rewritten[i] for i in changed]):
            predicted = [only_types(tags, types) for tags, _ in tagger.tag(version, 64)]
            scores.append(entity_scores(gold, predicted)["f1"])
        count = sum(a != b for i in changed for a, b in zip(data[i][0], rewritten[i]))
        print(f"{name:12s} {count:16d} {len(changed):9d}  {scores[0]:28.2f}  {scores[1]:13.2f}", flush=True)


if __name__ == "__main__":
    main()
