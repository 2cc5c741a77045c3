"""Training data: the token-level splits of one or more benchmark corpora (mambaner_cli/corpora.py), with
each sentence's corpus, and the label set they use."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from mambaner_cli.training.args import TrainingArgs

from mambaner_cli.corpora import Sentence, read_conll
from mambaner_cli.corpora import sentences as corpus_sentences


def load_sentences(names: Sequence[str], split: str, data_dir: str | os.PathLike | None = None
                   ) -> list[Sentence]:
    """The IOB sentences of one split of one or more corpora, concatenated in the order given."""
    return load_corpora(names, split, data_dir)[0]


def load_corpora(names: Sequence[str], split: str, data_dir: str | os.PathLike | None = None
                 ) -> tuple[list[Sentence], list[int]]:
    """``load_sentences`` and, for each sentence, the index into ``names`` of the corpus it comes from."""
    sentences: list[Sentence] = []
    corpus_ids: list[int] = []
    for index, name in enumerate(names):
        part = corpus_sentences(name, split, data_dir)
        sentences.extend(part)
        corpus_ids.extend([index] * len(part))
    return sentences, corpus_ids


def labels_of(sentences: Iterable[Sentence]) -> list[str]:
    """IOB2 label set of the data, "O" first then B-/I- per type in sorted order."""
    types = sorted({tag[2:] for _, tags in sentences for tag in tags if tag != "O"})
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]


def load_splits(args: TrainingArgs) -> tuple[list[Sentence], list[Sentence], list[Sentence], dict[str, list[int]]]:
    """Train, devel and test sentences, and per split each sentence's index into ``args.datasets``
    (empty for --train/--dev files)."""
    if args.train_files:
        train = [s for f in args.train_files for s in read_conll(f)]
        dev = [s for f in args.dev_files for s in read_conll(f)]
        return train, dev, [], {}
    (train, train_ids), (dev, dev_ids) = (load_corpora(args.datasets, s, args.data_dir) for s in ("train", "devel"))
    test, test_ids = load_corpora(args.datasets, "test", args.data_dir) if args.eval_test else ([], [])
    return train, dev, test, {"train": train_ids, "devel": dev_ids, "test": test_ids}
