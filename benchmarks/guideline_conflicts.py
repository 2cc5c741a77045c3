"""Where training corpora that mark the same entity type disagree: words one marks and another leaves O.

A multi-type model learns each type from every corpus that marks it. When two of them follow different
guidelines ("patients" is a Species in tmVar3, never in Species-800 or Linnaeus), one set of weights is
pulled both ways and one corpus's test figure pays. This script lists, for each type and each ordered pair
of corpora that mark it, the mention texts (lower-cased, up to four tokens) that the first marks as that type
in most of their occurrences (``--marked``, of at least ``--min-count``) and the second in few of its own
(``--unmarked``), and the share of the first corpus's mentions of the type they make up. Train splits only:
this reads guidelines, not models. ``mambaner train scratch --unmarked NAME=TYPE`` is the remedy it informs.

    python -m benchmarks.guideline_conflicts [--corpora ncbi bc5cdr ...] [--data-dir DIR] [--top 12]
"""

from __future__ import annotations

import argparse
from collections import Counter

from mambaner_cli.corpora import corpus, sentences

MAX_TOKENS = 4  # longer mention texts rarely recur often enough to count


def mention_texts(part, entity_type: str) -> Counter:
    """How often each mention text of ``entity_type`` is marked in ``part`` (lower-cased token sequences)."""
    marked: Counter = Counter()
    for tokens, tags in part:
        start = None
        for index, tag in enumerate([*tags, "O"]):
            if start is not None and tag != f"I-{entity_type}":
                if index - start <= MAX_TOKENS:
                    marked[tuple(token.lower() for token in tokens[start:index])] += 1
                start = None
            if tag == f"B-{entity_type}":
                start = index
    return marked


def occurrences(part, texts: set[tuple[str, ...]]) -> Counter:
    """How often each of ``texts`` occurs as a token sequence in ``part``, marked or not."""
    found: Counter = Counter()
    for tokens, _ in part:
        lowered = [token.lower() for token in tokens]
        for start in range(len(lowered)):
            for length in range(1, min(MAX_TOKENS, len(lowered) - start) + 1):
                text = tuple(lowered[start:start + length])
                if text in texts:
                    found[text] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", default=["ncbi", "bc5cdr", "bc2gm", "gnormplus", "nlmgene",
                                                         "species800", "linnaeus", "tmvar3", "bioid"])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--min-count", type=int, default=5, help="occurrences needed in each corpus")
    parser.add_argument("--marked", type=float, default=0.8, help="share marked in the first corpus, at least")
    parser.add_argument("--unmarked", type=float, default=0.2, help="share marked in the second, at most")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    data = {name: sentences(name, "train", args.data_dir) for name in args.corpora}
    types = sorted({t for name in args.corpora for t in corpus(name).annotates})
    print(f"python -m benchmarks.guideline_conflicts --corpora {' '.join(args.corpora)} --min-count "
          f"{args.min_count} --marked {args.marked} --unmarked {args.unmarked}")
    for entity_type in types:
        marking = [name for name in args.corpora if entity_type in corpus(name).annotates]
        if len(marking) < 2:
            continue
        marked = {name: mention_texts(data[name], entity_type) for name in marking}
        every_text = set().union(*marked.values())
        seen = {name: occurrences(data[name], every_text) for name in marking}
        for first in marking:
            for second in marking:
                if first == second:
                    continue
                conflicts = [(text, marked[first][text], seen[first][text], marked[second][text], seen[second][text])
                             for text in marked[first]
                             if seen[first][text] >= args.min_count and seen[second][text] >= args.min_count
                             and marked[first][text] >= args.marked * seen[first][text]
                             and marked[second][text] <= args.unmarked * seen[second][text]]
                if not conflicts:
                    continue
                conflicts.sort(key=lambda c: -c[1])
                share = sum(c[1] for c in conflicts) / max(1, sum(marked[first].values()))
                print(f"\n{entity_type}: marked by {first}, left O by {second} — {len(conflicts)} texts, "
                      f"{share:.1%} of {first}'s {entity_type} mentions")
                for text, a_marked, a_seen, b_marked, b_seen in conflicts[:args.top]:
                    print(f"  {' '.join(text)!r}: {first} {a_marked}/{a_seen}, {second} {b_marked}/{b_seen}")


if __name__ == "__main__":
    main()
