"""What the pipeline asks of a tagger, and the windowing both taggers share.

Two taggers implement :class:`SentenceTagger`: ``runtime.tagger.Tagger`` (the scratch recipe's word-level
network) and ``runtime.subword.SubwordTagger`` (a fine-tuned pretrained Mamba over subwords);
``runtime.load.load_tagger`` picks one from a model directory's recipe.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

TaggedSentence = tuple[list[str], list[float]]  # one IOB2 tag and one confidence per token


class SentenceTagger(Protocol):
    name: str  # the model's name
    convention: str | None  # the annotation convention it tags by (None: the model has none)

    @property
    def label(self) -> str:
        """What outputs record as the tagging model (its name, and its convention if any)."""
        ...

    @property
    def num_parameters(self) -> int: ...

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[TaggedSentence]:
        """Tags and confidences for each tokenized sentence, in the order given."""
        ...

    # Optional, and so not part of the Protocol: ``finish_document(text, sentences, scores)``, a step on
    # one whole document once its sentences are tagged, changing their tags and confidences in place (the
    # pipeline runs it: pipeline.document_step).


def model_label(name: str, convention: str | None) -> str:
    """What outputs record as the tagging model: its name, and the convention it tags by, if any."""
    return f"{name} ({convention} convention)" if convention else name


def windows(length: int, size: int) -> list[tuple[int, int, int, int]]:
    """Overlapping windows over ``length`` positions: (start, end, keep start, keep end).

    Consecutive windows overlap by half a window; the seam between two windows is the middle of their
    overlap, so every position is kept exactly once, by the window in which it has the most context.
    """
    if length <= size:
        return [(0, length, 0, length)]
    step = max(1, size // 2)
    starts = list(range(0, length - size, step)) + [length - size]
    seams = [0] + [(later + earlier + size) // 2 for earlier, later in itertools.pairwise(starts)] + [length]
    return [(start, start + size, seams[k], seams[k + 1]) for k, start in enumerate(starts)]
