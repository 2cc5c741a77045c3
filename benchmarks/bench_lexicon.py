"""Time ``LexiconMatcher.spans`` (the dictionary feature) over every sentence of the BC5CDR abstracts.

    python -m benchmarks.bench_lexicon                      # the fast path and the plain reference
    python -m benchmarks.bench_lexicon --repeat 5 --data ../shared/data
    git show HEAD:mambaner_cli/model/lexicon.py > /tmp/lexicon_before.py
    python -m benchmarks.bench_lexicon --baseline /tmp/lexicon_before.py   # and another version's spans
    python -m benchmarks.bench_lexicon --model runs/multi9-lex3-s13   # and a model's typed lexicons' match

Reads the three BC5CDR PubTator files (1,500 abstracts), cuts sentences as `mambaner tag` does, loads the
lexicon of the shipped default model, then times ``spans`` (with a cold and a warm token cache: the
first pass fills it) and ``spans_reference``, which must give the same spans. Best of ``--repeat``.
With ``--model``, also times ``Lexicons.match`` (the network's input codes) over that model's lexicons of
every type, and over its disease lexicon alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.lexicon import LexiconMatcher, Lexicons
from mambaner_cli.readers import iter_documents
from mambaner_cli.runtime.model_dir import (
    LEXICON_FILE,
    _read_lexicon,
    read_config,
    read_lexicons,
    resolve_model,
)
from mambaner_cli.text.sentences import segment_document

FILES = ("CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt", "CDR_TestSet.PubTator.txt")


def sentences(data: Path) -> list[list[str]]:
    result = []
    for document in iter_documents([str(data / "bc5cdr" / name) for name in FILES]):
        for passage in segment_document(document).passages:
            result.extend([token.text for token in sentence.tokens] for sentence in passage.sentences)
    return result


def timed(function, corpus: list[list[str]]) -> tuple[float, list]:
    start = time.perf_counter()
    result = [function(tokens) for tokens in corpus]
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another version's lexicon.py, whose spans is timed too")
    parser.add_argument("--model", help="a model (name or directory) whose typed lexicons' match is timed too")
    args = parser.parse_args()
    corpus = sentences(args.data)
    print(f"{len(corpus):,} sentences, {sum(map(len, corpus)):,} tokens")
    matcher: LexiconMatcher = _read_lexicon(resolve_model("default") / LEXICON_FILE)
    best = {"spans (cold cache)": [], "spans (warm cache)": [], "spans_reference": []}
    baseline = None
    if args.baseline:
        spec = importlib.util.spec_from_file_location("lexicon_baseline", args.baseline)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        baseline = module.LexiconMatcher.from_list(matcher.to_list())
        best["baseline spans"] = []
    reference = None
    for _ in range(args.repeat):
        matcher = LexiconMatcher.from_list(matcher.to_list())  # a fresh, empty token cache
        runs = [("spans (cold cache)", matcher.spans), ("spans (warm cache)", matcher.spans),
                ("spans_reference", matcher.spans_reference)]
        if baseline is not None:
            runs.append(("baseline spans", baseline.spans))
        for label, function in runs:
            seconds, result = timed(function, corpus)
            best[label].append(seconds)
            if reference is None:
                reference = result
            assert result == reference, f"{label} differs"
    if args.model:
        folder = resolve_model(args.model)
        types = TaggerConfig.from_dict(read_config(folder)["tagger"]).lexicon_types
        for label, chosen in ((f"match, {'+'.join(types)}", types), ("match, Disease alone", ["Disease"])):
            best[label] = []
            for _ in range(args.repeat):
                lexicons: Lexicons = read_lexicons(folder, chosen)  # a fresh, empty token cache
                best[label].append(timed(lexicons.match, corpus)[0])
    for label, times in best.items():
        print(f"{label:24s} best {min(times):.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times)})")


if __name__ == "__main__":
    main()
