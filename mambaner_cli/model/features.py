"""Token features: vocabularies, word normalisation, case classes, and batch encoding.

No file I/O here: ``Vocabulary.to_list``/``from_list`` give a JSON-ready list for whoever saves the model.
"""

from __future__ import annotations

import unicodedata
import weakref
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping

import torch

from mambaner_cli.text.ascii import ascii_form


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
    """The ASCII form (text/ascii.py), lowercase, every digit → "0": "IL-6" and "IL-8" share "il-0", so rare
    numbered names are not UNK; "TNF-α" is "tnf-alpha", as the corpora write it."""
    return "".join("0" if char.isdigit() else char for char in ascii_form(word).lower())


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


# Encodings of recently seen tokens, per (words, chars, max_word_len): tagging encodes the same few
# thousand frequent tokens over and over, and encoding one in Python (normalise, case class, one id per
# character) costs more than the network spends on it. Bounded: cleared when it outgrows _MEMO_SIZE.
_MEMO_SIZE = 1 << 16
_memos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # words → chars → max_word_len → memo
_ID_TYPE = "i" if array("i").itemsize == 4 else "l"  # typecode of the packed character ids: torch.int32
_ID_BYTES = array(_ID_TYPE).itemsize


def _token_memo(words: Vocabulary, chars: Vocabulary, max_word_len: int) -> dict[str, tuple[int, int, bytes, int]]:
    by_chars = _memos.setdefault(words, weakref.WeakKeyDictionary())
    return by_chars.setdefault(chars, {}).setdefault(max_word_len, {})


def _encode_token(token: str, words: Vocabulary, chars: Vocabulary, max_word_len: int
                  ) -> tuple[int, int, bytes, int]:
    """(word id, case id, character ids of the clipped word padded to max_word_len as packed C ints, their
    count), all read from the token's ASCII form (text/ascii.py: the corpora's spelling, "β" → "beta")."""
    token = ascii_form(token)  # (normalize_word takes it again: a cached lookup)
    short = clip_word(token, max_word_len)
    ids = [chars.encode(char) for char in short] + [Vocabulary.PAD] * (max_word_len - len(short))
    return words.encode(normalize_word(token)), case_id(token), array(_ID_TYPE, ids).tobytes(), len(short)


def encode_batch(
    sentences: list[list[str]], words: Vocabulary, chars: Vocabulary, max_word_len: int,
    lexicon_codes: list[list[int]] | None = None, pattern_codes: list[list[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded id tensors for a batch of tokenised sentences.

    Returns word_ids [b, l] (normalised words), char_ids [b, l, c] (raw characters of the clipped word,
    c = the longest clipped word), case_ids [b, l], mask [b, l] (bool, True at tokens), and lexicon_ids /
    pattern_ids [b, l] when their codes are given. l and c are at least 1, so an all-empty batch still gives
    well-formed (fully masked) tensors.
    """
    batch = len(sentences)
    length = max([len(sentence) for sentence in sentences] + [1])
    memo = _token_memo(words, chars, max_word_len)
    if len(memo) > _MEMO_SIZE:
        memo.clear()
    # Flat lists first, one tensor each: per-token tensors would dominate tagging time.
    word_ids: list[int] = []
    case_ids: list[int] = []
    char_rows: list[bytes] = []
    width = 1
    empty_row = bytes(_ID_BYTES * max_word_len)
    for sentence in sentences:
        for token in sentence:
            code = memo.get(token)
            if code is None:
                code = memo[token] = _encode_token(token, words, chars, max_word_len)
            word_ids.append(code[0])
            case_ids.append(code[1])
            char_rows.append(code[2])
            width = max(width, code[3])
        padding = length - len(sentence)
        word_ids.extend([Vocabulary.PAD] * padding)
        case_ids.extend([CASE_PAD] * padding)
        char_rows.extend([empty_row] * padding)
    lengths = torch.tensor([len(sentence) for sentence in sentences], dtype=torch.long)  # b
    if char_rows:
        packed = torch.frombuffer(bytearray(b"".join(char_rows)), dtype=torch.int32)  # (b l max_word_len)
        char_ids = packed.view(batch, length, max_word_len)[:, :, :width].long()  # b l c
    else:
        char_ids = torch.zeros(batch, length, width, dtype=torch.long)  # b l c
    batch_tensors = {
        "word_ids": torch.tensor(word_ids, dtype=torch.long).view(batch, length),  # b l
        "char_ids": char_ids,
        "case_ids": torch.tensor(case_ids, dtype=torch.long).view(batch, length),  # b l
        "mask": torch.arange(length)[None, :] < lengths[:, None],  # b l
    }
    if lexicon_codes is not None:
        batch_tensors["lexicon_ids"] = _span_code_ids(lexicon_codes, length)  # b l
    if pattern_codes is not None:  # model/patterns.py pattern_codes
        batch_tensors["pattern_ids"] = _span_code_ids(pattern_codes, length)  # b l
    return batch_tensors


def _span_code_ids(codes: list[list[int]], length: int) -> torch.Tensor:
    """Per-token span codes 0/1/2 (outside/begin/inside a lexicon or pattern match; typed lexicons' combined
    codes run higher) → ids code + 1, right-padded with 0 to ``length``: [b, length]."""
    rows = [[code + 1 for code in sentence] + [0] * (length - len(sentence)) for sentence in codes]
    return torch.tensor(rows, dtype=torch.long).view(len(codes), length)
