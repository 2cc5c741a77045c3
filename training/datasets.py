"""Training data: the token-level splits of one or more benchmark corpora (mambaner_cli/corpora.py), with
each sentence's corpus, and the label set they use."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from mambaner_cli.training.args import TrainingArgs

from mambaner_cli.corpora import Sentence, read_conll
from mambaner_cli.corpora import sentences as corpus_sentences


def load_sentences(names: Sequence[str], split: str, data_dir: str | os.PathLike | None = None
                   ) -> list[Sentence]:
    """The IOB sentences of one split of one or more corpora, concatenated in the order given."""
    return load_corpora(names, split, data_dir)[0]


# The label that ``--unsure`` mention types get while the corpora are read (training/scratch.py then makes
# their tokens unknown to the loss); never a label of a trained network.
UNSURE = "Unsure"


def load_corpora(names: Sequence[str], split: str, data_dir: str | os.PathLike | None = None,
                 unsure: Mapping[str, Sequence[str]] | None = None) -> tuple[list[Sentence], list[int]]:
    """``load_sentences`` and, for each sentence, the index into ``names`` of the corpus it comes from;
    ``unsure``: per corpus, mention types of its files it does not count, tagged :data:`UNSURE`."""
    sentences: list[Sentence] = []
    corpus_ids: list[int] = []
    for index, name in enumerate(names):
        part = corpus_sentences(name, split, data_dir)
        if (unsure or {}).get(name):
            # read again with the unsure types; a token is unsure only where the corpus's own reading says O
            # (of nested mentions the reader keeps the longer: a family around a gene must not hide the gene)
            wider = corpus_sentences(name, split, data_dir, {kind: UNSURE for kind in unsure[name]})
            part = [(tokens, [f"{other[:2]}{UNSURE}" if tag == "O" and other != "O" else tag
                              for tag, other in zip(tags, wider_tags, strict=True)])
                    for (tokens, tags), (_, wider_tags) in zip(part, wider, strict=True)]
        sentences.extend(part)
        corpus_ids.extend([index] * len(part))
    return sentences, corpus_ids


def labels_of(sentences: Iterable[Sentence]) -> list[str]:
    """IOB2 label set of the data, "O" first then B-/I- per type in sorted order."""
    types = sorted({tag[2:] for _, tags in sentences for tag in tags if tag != "O"})
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]


def load_splits(args: TrainingArgs, unsure: Mapping[str, Sequence[str]] | None = None
                ) -> tuple[list[Sentence], list[Sentence], list[Sentence], dict[str, list[int]]]:
    """Train, devel and test sentences, and per split each sentence's index into ``args.datasets``
    (empty for --train/--dev files); ``unsure`` (train and devel only: test is scored as the corpus
    counts it): see :func:`load_corpora`."""
    if args.train_files:
        train = [s for f in args.train_files for s in read_conll(f)]
        dev = [s for f in args.dev_files for s in read_conll(f)]
        return train, dev, [], {}
    (train, train_ids), (dev, dev_ids) = (load_corpora(args.datasets, s, args.data_dir, unsure)
                                          for s in ("train", "devel"))
    test, test_ids = load_corpora(args.datasets, "test", args.data_dir) if args.eval_test else ([], [])
    return train, dev, test, {"train": train_ids, "devel": dev_ids, "test": test_ids}
