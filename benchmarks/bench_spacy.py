"""spaCy's CNN NER, the speed peer of issue 18, end to end on the same PubTator files `mambaner tag` reads.

Run it with a Python that has spaCy (installed for this benchmark only, never a dependency of mambaner), as a
whole process, so start-up, reading and the pipeline are all in the time:

    python3 -m venv /tmp/spacy-venv && /tmp/spacy-venv/bin/pip install spacy==3.8.7
    /usr/bin/time -f "%e s %M KB" /tmp/spacy-venv/bin/python benchmarks/bench_spacy.py --processes 2 \
        ../shared/data/bc5cdr/CDR_{Training,Development,Test}Set.PubTator.txt

The model is `spacy.blank("en")` + `add_pipe("ner")` with a Disease label, initialised with random weights:
spaCy's speed does not depend on the weights (the issue's measurement). Each document is the title and the
abstract joined by a space, as mambaner's PubTator reader gives it. Prints documents, mentions found, the
time of the pipeline alone and documents/s; the whole-process time is `/usr/bin/time`'s.
"""

from __future__ import annotations

import argparse
import time


def pubtator_texts(paths: list[str]) -> list[str]:
    """title + " " + abstract of every document (annotation lines skipped): the texts mambaner tags."""
    texts: list[str] = []
    for path in paths:
        parts: dict[str, str] = {}
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.rstrip("\n")
                fields = line.split("|", 2)
                if len(fields) == 3 and fields[1] in ("t", "a"):
                    parts[fields[1]] = fields[2]
                elif not line.strip() and parts:
                    texts.append(f"{parts.get('t', '')} {parts.get('a', '')}")
                    parts = {}
        if parts:
            texts.append(f"{parts.get('t', '')} {parts.get('a', '')}")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--processes", type=int, default=1, help="nlp.pipe's n_process")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import spacy

    texts = pubtator_texts(args.files)
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ner")
    ner.add_label("Disease")
    nlp.initialize()
    started = time.perf_counter()
    mentions = sum(len(doc.ents) for doc in nlp.pipe(texts, n_process=args.processes, batch_size=args.batch_size))
    seconds = time.perf_counter() - started
    print(f"spaCy {spacy.__version__}, {args.processes} process(es): {len(texts)} documents, {mentions} mentions, "
          f"pipeline {seconds:.1f} s, {len(texts) / seconds:.1f} documents/s inside the pipeline")


if __name__ == "__main__":
    main()
