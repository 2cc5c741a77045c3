"""Fine-tuned pretrained Mambas at run time: words ↔ subwords, and the finetune recipe's tagger.

The data and the pipeline are word-tokenized; a pretrained Mamba reads its own subwords. Each word is
encoded on its own (so word boundaries are exact) and is represented by one of its subwords: the
first (the usual choice for BERT-style NER), or the last, which in a causal model is the only subword
that has seen the whole word. Only that subword carries the word's label in training; the others
are ignored by the loss. Tagging gives one tag per word. (The model directory's format:
runtime/model_dir.py.)
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mambaner_cli.model.models.pretrained import IGNORE_INDEX, PretrainedTagger
from mambaner_cli.runtime.device import pick_device
from mambaner_cli.runtime.model_dir import FINETUNE_WINDOW, LABEL_SUBWORDS, load_finetune
from mambaner_cli.runtime.sentence_tagger import TaggedSentence, model_label, windows
from mambaner_cli.runtime.spans import repair_iob

_CACHE_LIMIT = 200_000  # encoded words kept per WordPieces


class WordPieces:
    """Subword ids of words, encoded one word at a time, as they would appear in running text.

    Byte-level BPE tokenizers (GPT-NeoX, used by the state-spaces Mambas) encode a word differently
    after a space ("Ġcolitis") and at the start of a text, so every word but a sentence's first is
    encoded as " " + word. Tokenizers that split on whitespace, or mark word starts themselves
    (SentencePiece's "▁"), get the bare word (probed once at construction). A word that
    encodes to nothing (a character the vocabulary lacks) gets the unknown token, so every word has
    at least one subword and so a label.
    """

    def __init__(self, tokenizer: Any, label_subword: str = "first") -> None:
        if label_subword not in LABEL_SUBWORDS:
            raise ValueError(f"label_subword must be one of {LABEL_SUBWORDS}, not {label_subword!r}")
        self.tokenizer = tokenizer
        self.label_subword = label_subword
        self.pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        self.fallback = next((i for i in (tokenizer.unk_token_id, tokenizer.eos_token_id) if i is not None),
                             self.pad_id)
        self.prefix_space = self._words_carry_their_space()
        self._cache: dict[tuple[str, bool], list[int]] = {}

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _words_carry_their_space(self) -> bool:
        """Whether a word reads differently after a space than on its own (byte-level BPE: "a b" is
        [a, Ġb]); not for tokenizers that split on whitespace or add their own word-start mark ("▁")."""
        pair, first, second = self._encode(["a b", "a", "b"])
        return pair != first + second

    def encode(self, words: Sequence[str]) -> list[list[int]]:
        """One non-empty list of subword ids per word of a sentence."""
        keys = [(word, self.prefix_space and k > 0) for k, word in enumerate(words)]
        missing = list(dict.fromkeys(key for key in keys if key not in self._cache))
        if missing:
            if len(self._cache) + len(missing) > _CACHE_LIMIT:
                self._cache.clear()
            encoded = self._encode([(" " + word) if spaced else word for word, spaced in missing])
            for (word, spaced), ids in zip(missing, encoded):
                if not ids and spaced:
                    ids = self._encode([word])[0]
                self._cache[(word, spaced)] = ids or [self.fallback]
        return [self._cache[key] for key in keys]

    def flatten(self, pieces: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
        """The subword ids of a sentence and, per word, the position of the subword that represents it."""
        ids: list[int] = []
        positions: list[int] = []
        for word in pieces:
            positions.append(len(ids) if self.label_subword == "first" else len(ids) + len(word) - 1)
            ids.extend(word)
        return ids, positions


def chunk_words(lengths: Sequence[int], max_length: int) -> list[tuple[int, int]]:
    """Consecutive word ranges [start, end) whose subwords fit in ``max_length``, covering every word.

    Greedy: a chunk takes words while they fit. A single word longer than ``max_length`` gets a chunk of
    its own (its subwords are then truncated by the caller), so no word — and no label — is dropped.
    """
    chunks: list[tuple[int, int]] = []
    start, used = 0, 0
    for k, length in enumerate(lengths):
        if k > start and used + length > max_length:
            chunks.append((start, k))
            start, used = k, 0
        used += length
    if start < len(lengths):
        chunks.append((start, len(lengths)))
    return chunks


def training_examples(sentences: Sequence[tuple[Sequence[str], Sequence[str]]], pieces: WordPieces,
                      labels: Sequence[str], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(subword ids, subword labels) per chunk of at most ``max_length`` subwords.

    Each word's representing subword carries its label id; every other subword IGNORE_INDEX. Long
    sentences are cut at word boundaries into several examples rather than truncated.
    """
    index = {label: i for i, label in enumerate(labels)}
    examples = []
    for tokens, tags in sentences:
        encoded = [word[:max_length] for word in pieces.encode(tokens)]
        for start, end in chunk_words([len(word) for word in encoded], max_length):
            ids, positions = pieces.flatten(encoded[start:end])
            targets = [IGNORE_INDEX] * len(ids)
            for position, tag in zip(positions, tags[start:end]):
                targets[position] = index[tag]
            examples.append((ids, targets))
    return examples


def pad_batch(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels [b, l] for ``PretrainedTagger.loss``."""
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.tensor([ids + [pad_id] * (length - len(ids)) for ids, _ in examples])  # b l
    labels = torch.tensor([targets + [IGNORE_INDEX] * (length - len(targets)) for _, targets in examples])  # b l
    mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in examples])  # b l
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


class SubwordTagger:
    """The finetune recipe's network as a :class:`~mambaner_cli.runtime.sentence_tagger.SentenceTagger`: one
    tag per word.

    A sentence longer than the window (in subwords) is tagged in overlapping windows; each word takes
    its tag from the window in which its representing subword sits furthest from an edge.
    """

    convention: str | None = None  # a fine-tuned model has no annotation conventions

    def __init__(self, model: PretrainedTagger, pieces: WordPieces, name: str, device: torch.device,
                 window: int = FINETUNE_WINDOW) -> None:
        self.model = model.to(device).eval()
        self.pieces = pieces
        self.name = name
        self.device = device
        self.window = window
        self.labels: list[str] = list(model.labels)

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: dict[str, Any], device: str = "auto",
                       convention: str | None = None) -> SubwordTagger:
        loaded = load_finetune(model_dir, config, convention)
        return cls(loaded.network, WordPieces(loaded.tokenizer, loaded.label_subword), loaded.name,
                   pick_device(device), loaded.window)

    @property
    def label(self) -> str:
        return model_label(self.name, self.convention)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[TaggedSentence]:
        """Tags and confidences for each sentence (one per word), in the order given."""
        # pieces: sentence, subword ids, word indices, their positions in the piece, keep range
        pieces: list[tuple[int, list[int], list[int], list[int], int, int]] = []
        for s, words in enumerate(sentences):
            if not words:
                continue
            ids, positions = self.pieces.flatten(self.pieces.encode(list(words)))
            for start, end, keep_start, keep_end in windows(len(ids), self.window):
                first, last = bisect.bisect_left(positions, start), bisect.bisect_left(positions, end)
                if first < last:
                    members = list(range(first, last))
                    pieces.append((s, ids[start:end], members, [positions[k] - start for k in members],
                                   keep_start - start, keep_end - start))
        pieces.sort(key=lambda piece: len(piece[1]))
        results: list[TaggedSentence] = [(["O"] * len(s), [1.0] * len(s)) for s in sentences]
        for first in range(0, len(pieces), batch_size):
            batch = pieces[first:first + batch_size]
            encoded = pad_batch([(ids, [IGNORE_INDEX] * len(ids)) for _, ids, _, _, _, _ in batch],
                                self.pieces.pad_id)
            width = max(len(members) for _, _, members, _, _, _ in batch)
            word_positions = torch.tensor([p + [0] * (width - len(p)) for _, _, _, p, _, _ in batch])  # b w
            word_mask = torch.tensor([[True] * len(p) + [False] * (width - len(p)) for _, _, _, p, _, _ in batch])
            tag_ids, confidences = self.model.decode(encoded["input_ids"].to(self.device),
                                                     encoded["attention_mask"].to(self.device),
                                                     word_positions.to(self.device), word_mask.to(self.device))
            for (s, _, members, positions, keep_start, keep_end), ids, conf in zip(batch, tag_ids, confidences):
                tags, scores = results[s]
                for word, position, tag_id, score in zip(members, positions, ids, conf):
                    if keep_start <= position < keep_end:
                        tags[word] = self.labels[tag_id]
                        scores[word] = float(score)
        return [(repair_iob(tags), scores) for tags, scores in results]
