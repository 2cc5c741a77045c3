"""Fine-tuned pretrained Mambas at run time: words ↔ subwords, and model directories of the finetune recipe.

The data and the pipeline are word-tokenized; a pretrained Mamba reads its own subwords. Each word is
encoded on its own (so word boundaries are exact) and is represented by one of its subwords: the
first (the usual choice for BERT-style NER), or the last, which in a causal model is the only subword
that has seen the whole word. Only that subword carries the word's label in training; the others
are ignored by the loss. Tagging gives one tag per word.

A finetune model directory::

    config.json         {"format": "mambaner-tagger", "version": 1, "recipe": "finetune", "base_model",
                         "base_model_path", "labels", "max_length", "bidirectional", "window",
                         "label_subword", "weights": "lora" | "full" | "merged", ...}
    tokenizer/          the base model's tokenizer (save_pretrained)
    adapter/            the LoRA adapter (peft save_pretrained)         weights == "lora"
    backbone/           the whole fine-tuned backbone (save_pretrained)  weights == "full" | "merged"
    head.safetensors    the classification head
    README.md, metrics.json, training_args.json

With LoRA weights the base model is read from ``base_model_path`` (the absolute path it had at
training time) when that exists, else from ``base_model`` as given (a path or a Hugging Face hub id).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from mambaner_cli.errors import MambanerError
from mambaner_cli.model.models.pretrained import IGNORE_INDEX, PretrainedTagger
from mambaner_cli.runtime.device import pick_device
from mambaner_cli.runtime.spans import repair_iob
from mambaner_cli.runtime.tagger import TaggedSentence, Tagger, windows

LABEL_SUBWORDS = ("first", "last")
DEFAULT_WINDOW = 512  # subwords per tagging window; only bounds memory (the backbone saw long contexts)
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


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Silence transformers' "Loading weights"/"Writing model shards" bars, which would cut through our
    own progress display and log."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_backbone(source: str | Path, dtype: torch.dtype = torch.float32):
    """A transformers ``MambaModel`` from a directory or hub id (a ``MambaForCausalLM`` checkpoint too)."""
    from transformers import MambaModel

    try:
        with no_progress_bars():
            model = MambaModel.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise MambanerError(f"Could not load the Mamba model {str(source)!r}: {error}. Give a local directory "
                            "written by save_pretrained, or a hub id such as state-spaces/mamba-130m-hf "
                            "(needs the Hugging Face hub or its cache).") from None
    return model.to(dtype)  # our CPU scan computes in float32; some checkpoints are stored in half


def load_tokenizer(source: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise MambanerError(f"Could not load a tokenizer from {str(source)!r}: {error}") from None


def base_model_source(config: dict[str, Any]) -> str:
    """Where the base weights of a LoRA model directory are: its recorded absolute path, else as given."""
    recorded = config.get("base_model_path")
    if recorded and Path(recorded).is_dir():
        return recorded
    return config["base_model"]


def load_network(model_dir: Path, config: dict[str, Any]) -> PretrainedTagger:
    """The fine-tuned network of a finetune model directory, in eval mode."""
    from safetensors.torch import load_file

    weights = config.get("weights", "lora")
    if weights not in ("lora", "full", "merged"):
        raise MambanerError(f"{model_dir / 'config.json'}: unknown weights kind {weights!r}.")
    backbone_dir = model_dir / "backbone"
    if weights != "lora" and not (backbone_dir / "config.json").is_file():
        raise MambanerError(f"{backbone_dir} is missing: the model directory is incomplete.")
    backbone = load_backbone(backbone_dir if weights != "lora" else base_model_source(config))
    network = PretrainedTagger(backbone, config["labels"], bidirectional=config.get("bidirectional", False))
    if weights == "lora":
        from peft import PeftModel

        adapter = model_dir / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise MambanerError(f"{adapter} is missing: the model directory is incomplete.")
        PeftModel.from_pretrained(network, str(adapter))  # injects the adapter into ``network`` in place
    head = model_dir / "head.safetensors"
    if not head.is_file():
        raise MambanerError(f"{head} is missing: the model directory is incomplete.")
    network.head.load_state_dict(load_file(str(head)))
    return network.eval()


class SubwordTagger(Tagger):
    """``Tagger`` for finetune model directories: same ``load``/``tag`` contract, one tag per word.

    A sentence longer than the window (in subwords) is tagged in overlapping windows; each word takes
    its tag from the window in which its representing subword sits furthest from an edge.
    """

    def __init__(self, model: PretrainedTagger, pieces: WordPieces, name: str, device: torch.device,
                 window: int = DEFAULT_WINDOW) -> None:
        self.model = model.to(device).eval()
        self.pieces = pieces
        self.name = name
        self.device = device
        self.window = window
        self.labels: list[str] = list(model.labels)

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: dict[str, Any], device: str = "auto") -> SubwordTagger:
        tokenizer = load_tokenizer(model_dir / "tokenizer")
        pieces = WordPieces(tokenizer, config.get("label_subword", "first"))
        return cls(load_network(model_dir, config), pieces, config.get("name", model_dir.name),
                   pick_device(device), config.get("window", DEFAULT_WINDOW))

    @property
    def label(self) -> str:
        """What outputs record as the tagging model: a fine-tuned model has no conventions, only a name."""
        return self.name

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
