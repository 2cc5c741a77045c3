"""The tagger behind one small interface: load a model directory, tag a batch of tokenized sentences.

    tagger = Tagger.load("default", device="auto")
    tags, scores = tagger.tag([["Wilson", "disease", "is", "rare", "."]])[0]

Sentences are bucketed by length into batches (so padding costs little), and a sentence longer than
the model's window is tagged in overlapping windows, each token taking its tag from the window in
which it sits furthest from an edge — long sentences are windowed, never cut.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from mambaner_cli.errors import MambanerError
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.conventions import fold_convention
from mambaner_cli.model.features import Vocabulary, encode_batch
from mambaner_cli.model.lexicon import LexiconMatcher
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.runtime.device import pick_device
from mambaner_cli.runtime.model_dir import read_config, read_json, resolve_model
from mambaner_cli.runtime.spans import repair_iob

TaggedSentence = tuple[list[str], list[float]]  # one IOB2 tag and one confidence per token


def windows(length: int, size: int) -> list[tuple[int, int, int, int]]:
    """Overlapping windows over ``length`` tokens: (start, end, keep start, keep end).

    Consecutive windows overlap by half a window; the seam between two windows is the middle of their
    overlap, so every token is kept exactly once, by the window in which it has the most context.
    """
    if length <= size:
        return [(0, length, 0, length)]
    step = max(1, size // 2)
    starts = list(range(0, length - size, step)) + [length - size]
    seams = [0] + [(later + earlier + size) // 2 for earlier, later in itertools.pairwise(starts)] + [length]
    return [(start, start + size, seams[k], seams[k + 1]) for k, start in enumerate(starts)]


LEXICON_FILE = "lexicon.txt.gz"


def load_lexicon(path: Path) -> LexiconMatcher:
    if not path.is_file():
        raise MambanerError(f"{path} is missing: the model directory is incomplete.")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return LexiconMatcher.from_list(handle)


class Tagger:
    def __init__(self, model: MambaTagger, words: Vocabulary, chars: Vocabulary, name: str,
                 device: torch.device, window: int = 256, lexicon: LexiconMatcher | None = None) -> None:
        if model.config.lexicon_dim and lexicon is None:
            raise MambanerError(f"model {name} reads lexicon matches but has no lexicon (lexicon.txt.gz).")
        self.lexicon = lexicon
        self.model = model.to(device).eval()
        self.words = words
        self.chars = chars
        self.name = name
        self.device = device
        self.window = window
        self.labels: list[str] = list(model.config.labels)
        # For a network with annotation conventions (trained, not folded): the index, into
        # model.config.conventions, of the convention every sentence is tagged under.
        self.convention: int | None = None
        # The convention a loaded model was folded to (None: the model has no conventions).
        self.convention_name: str | None = None

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto", convention: str | None = None) -> Tagger:
        """A model directory or shipped model name. ``convention``: for a model trained with annotation
        conventions, the corpus whose rules to tag by (default: the model's ``default_convention``)."""
        model_dir = resolve_model(str(model) if model else None)
        config = read_config(model_dir)
        if config.get("recipe") == "finetune":  # a fine-tuned pretrained Mamba (training/finetune.py)
            if convention:
                raise MambanerError(f"model {model_dir} has no annotation conventions (--convention).")
            from mambaner_cli.runtime.subword import SubwordTagger

            return SubwordTagger.from_model_dir(model_dir, config, device)
        vocab = read_json(model_dir / "vocab.json")
        tagger_config = TaggerConfig.from_dict(config["tagger"])
        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise MambanerError(f"{weights} is missing: the model directory is incomplete.")
        state = load_file(str(weights))
        chosen = None
        if tagger_config.conventions:
            chosen = convention or config.get("default_convention") or tagger_config.conventions[0]
            if chosen not in tagger_config.conventions:
                raise MambanerError(f"model {model_dir} has no convention {chosen!r}; it has "
                                    f"{', '.join(tagger_config.conventions)}.")
            tagger_config, state = fold_convention(tagger_config, state, chosen)
        elif convention:
            raise MambanerError(f"model {model_dir} has no annotation conventions (--convention {convention}).")
        # The light backbone: transformers' MambaModel network without its multi-second import.
        network = MambaTagger(tagger_config, backbone="light")
        network.load_state_dict(state)
        lexicon = load_lexicon(model_dir / LEXICON_FILE) if tagger_config.lexicon_dim else None
        tagger = cls(network, Vocabulary.from_list(vocab["words"]), Vocabulary.from_list(vocab["chars"]),
                     config.get("name", model_dir.name), pick_device(device), config.get("window", 256), lexicon)
        tagger.convention_name = chosen
        return tagger

    @property
    def label(self) -> str:
        """What outputs record as the tagging model: its name, and the convention it tags by, if any."""
        return f"{self.name} ({self.convention_name} convention)" if self.convention_name else self.name

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> list[TaggedSentence]:
        """Tags and confidences for each sentence, in the order given."""
        # Cut long sentences into windows; every piece is tagged like a sentence of its own.
        pieces: list[tuple[int, int, int, int, int]] = []  # sentence, start, end, keep start, keep end
        for index, tokens in enumerate(sentences):
            for start, end, keep_start, keep_end in windows(len(tokens), self.window):
                pieces.append((index, start, end, keep_start, keep_end))
        order = sorted(range(len(pieces)), key=lambda i: pieces[i][2] - pieces[i][1])
        # Lexicon matches over whole sentences, so a window never cuts a name in two.
        codes = [self.lexicon.match(tokens) for tokens in sentences] if self.lexicon is not None else None
        results: list[TaggedSentence] = [(["O"] * len(s), [1.0] * len(s)) for s in sentences]
        for first in range(0, len(order), batch_size):
            batch = [pieces[i] for i in order[first:first + batch_size] if pieces[i][2] > pieces[i][1]]
            if not batch:
                continue
            tokens = [list(sentences[s][start:end]) for s, start, end, _, _ in batch]
            lexicon_codes = [codes[s][start:end] for s, start, end, _, _ in batch] if codes is not None else None
            features = encode_batch(tokens, self.words, self.chars, self.model.config.max_word_len, lexicon_codes)
            if self.model.config.conventions:
                if self.convention is None:
                    raise ValueError("this network has annotation conventions: set Tagger.convention first")
                features["convention_ids"] = torch.full((len(tokens),), self.convention, dtype=torch.long)
            features = {key: value.to(self.device) for key, value in features.items()}
            tag_ids, confidences = self.model.decode(**features)
            for (s, start, _, keep_start, keep_end), ids, conf in zip(batch, tag_ids, confidences):
                tags, scores = results[s]
                for position in range(keep_start, keep_end):
                    tags[position] = self.labels[ids[position - start]]
                    scores[position] = float(conf[position - start])
        return [(repair_iob(tags), scores) for tags, scores in results]
