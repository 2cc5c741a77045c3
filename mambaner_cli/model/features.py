"""Token features: vocabularies, word normalisation, case classes, and batch encoding.

No file I/O here: ``Vocabulary.to_list``/``from_list`` give a JSON-ready list for whoever saves the model.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping

import torch


class Vocabulary:
    """String ↔ id table. Id 0 is padding and id 1 is the unknown item, in every vocabulary."""

    PAD = 0
    UNK = 1
    SPECIALS = ("<pad>", "<unk>")

    def __init__(self, items: Iterable[str] = ()) -> None:
        self._items: list[str] = list(self.SPECIALS)
        self._ids: dict[str, int] = {item: i for i, item in enumerate(self._items)}
        for item in items:
            if item not in self._ids:
                self._ids[item] = len(self._items)
                self._items.append(item)

    @classmethod
    def build(cls, counts: Mapping[str, int] | Iterable[str], min_count: int = 1) -> Vocabulary:
        """Items seen at least ``min_count`` times, most frequent first (ties alphabetically, so the ids
        do not depend on the order of the data). ``counts`` is a Counter/mapping or an iterable of items."""
        if not isinstance(counts, Mapping):
            counts = Counter(counts)
        kept = [item for item, count in counts.items() if count >= min_count and item not in cls.SPECIALS]
        kept.sort(key=lambda item: (-counts[item], item))
        return cls(kept)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def encode(self, item: str) -> int:
        return self._ids.get(item, self.UNK)

    def decode(self, index: int) -> str:
        return self._items[index]

    def to_list(self) -> list[str]:
        """Every item in id order, the two specials first: what a model directory stores."""
        return list(self._items)

    @classmethod
    def from_list(cls, items: list[str]) -> Vocabulary:
        """Inverse of ``to_list``; ValueError unless it starts with the specials and has no repeats."""
        if list(items[:2]) != list(cls.SPECIALS):
            raise ValueError(f"a vocabulary list must start with {list(cls.SPECIALS)}, not {list(items[:2])}")
        if len(set(items)) != len(items):
            duplicates = sorted({item for item in items if items.count(item) > 1})[:5]
            raise ValueError(f"a vocabulary list repeats items: {duplicates}")
        return cls(items[2:])


def normalize_word(word: str) -> str:
    """Lowercase, every digit → "0": "IL-6" and "IL-8" share "il-0", so rare numbered names are not UNK."""
    return "".join("0" if char.isdigit() else char for char in word.lower())


# Case/shape classes; 0 is padding. The character CNN sees case too, but a direct signal is cheap and
# helps the word embedding of lowercased words (e.g. "AIDS" vs "aids").
CASE_PAD, CASE_LOWER, CASE_UPPER, CASE_TITLE, CASE_MIXED, CASE_DIGIT, CASE_PUNCT, CASE_OTHER = range(8)
NUM_CASE_IDS = 8


def case_id(word: str) -> int:
    """Shape class of a token: lower, UPPER, Title, miXed, has digit, punctuation only, or other."""
    if not word:
        return CASE_OTHER
    if all(unicodedata.category(char)[0] in "PS" for char in word):
        return CASE_PUNCT
    if any(char.isdigit() for char in word):
        return CASE_DIGIT
    letters = [char for char in word if char.isalpha()]
    if not letters:
        return CASE_OTHER
    if all(char.islower() for char in letters):
        return CASE_LOWER
    if letters[0].isupper() and all(char.islower() for char in letters[1:]):
        return CASE_TITLE
    if all(char.isupper() for char in letters):
        return CASE_UPPER
    return CASE_MIXED


def clip_word(word: str, max_word_len: int) -> str:
    """Keep the first and last characters of an over-long word: suffixes (-itis, -oma) carry the signal."""
    if len(word) <= max_word_len:
        return word
    head = (max_word_len + 1) // 2
    return word[:head] + word[len(word) - (max_word_len - head) :]


def encode_batch(
    sentences: list[list[str]], words: Vocabulary, chars: Vocabulary, max_word_len: int,
    lexicon_codes: list[list[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded id tensors for a batch of tokenised sentences.

    Returns word_ids [b, l] (normalised words), char_ids [b, l, c] (raw characters of the clipped word,
    c = the longest clipped word), case_ids [b, l], mask [b, l] (bool, True at tokens). l and c are at
    least 1, so an all-empty batch still gives well-formed (fully masked) tensors.
    """
    batch = len(sentences)
    length = max([len(sentence) for sentence in sentences] + [1])
    clipped = [[clip_word(token, max_word_len) for token in sentence] for sentence in sentences]
    width = max([len(token) for sentence in clipped for token in sentence] + [1])
    # Nested lists first, one tensor each: per-token tensors would dominate tagging time.
    word_rows, char_rows, case_rows = [], [], []
    for sentence, short in zip(sentences, clipped):
        padding = length - len(sentence)
        word_rows.append(
            [words.encode(normalize_word(token)) for token in sentence] + [Vocabulary.PAD] * padding
        )
        case_rows.append([case_id(token) for token in sentence] + [CASE_PAD] * padding)
        char_rows.append(
            [
                [chars.encode(char) for char in token] + [Vocabulary.PAD] * (width - len(token))
                for token in short
            ]
            + [[Vocabulary.PAD] * width] * padding
        )
    lengths = torch.tensor([len(sentence) for sentence in sentences], dtype=torch.long)  # b
    word_ids = torch.tensor(word_rows, dtype=torch.long).view(batch, length)  # b l
    char_ids = torch.tensor(char_rows, dtype=torch.long).view(batch, length, width)  # b l c
    case_ids = torch.tensor(case_rows, dtype=torch.long).view(batch, length)  # b l
    mask = torch.arange(length)[None, :] < lengths[:, None]  # b l
    batch_tensors = {"word_ids": word_ids, "char_ids": char_ids, "case_ids": case_ids, "mask": mask}
    if lexicon_codes is not None:  # match codes 0/1/2 (outside/begin/inside) → ids 1/2/3, 0 is padding
        rows = [[code + 1 for code in codes] + [0] * (length - len(codes)) for codes in lexicon_codes]
        batch_tensors["lexicon_ids"] = torch.tensor(rows, dtype=torch.long).view(batch, length)  # b l
    return batch_tensors
