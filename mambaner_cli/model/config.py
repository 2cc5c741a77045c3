"""The tagger's shape: every number needed to rebuild the network before loading its weights."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

_TAG = re.compile(r"^[BI]-\S+$")


@dataclass
class TaggerConfig:
    # IOB2 tags, "O" first: "O" is the padding tag id 0 in training batches and the CRF's safe fallback.
    labels: list[str]
    word_vocab_size: int  # len(words vocabulary), specials included
    char_vocab_size: int  # len(chars vocabulary), specials included
    # 100-d words: the usual size for domain word vectors; with ~20k PubMed words it is already most of the
    # parameters, and larger vectors mostly add room to memorise corpora of 5-10k sentences (NCBI, BC5CDR).
    word_dim: int = 100
    # Character CNN as in Ma & Hovy (2016): 30-d characters, 50 filters of width 3, max-pooled. It gives
    # unseen words (most disease names are rare) a representation from their spelling: -itis, -oma, -emia.
    char_dim: int = 30
    char_channels: int = 50
    char_kernel: int = 3
    case_dim: int = 8  # 8 case classes need no more than 8 dimensions
    # Width of the Mamba blocks (d_model). 128 with expand 2 gives 256 SSM channels: enough for tagging,
    # and fast on a CPU.
    hidden_size: int = 128
    num_layers: int = 2  # Mamba blocks per direction: two give each token a wide context at little CPU cost
    state_size: int = 16  # N of the Mamba paper: its default, the SSM's memory per channel
    expand: int = 2  # inner width = expand * hidden_size, Mamba's default
    conv_kernel: int = 4  # the Mamba block's causal depthwise conv width, Mamba's default
    # A second Mamba reads each sentence right to left: a Mamba is causal, and a mention's label depends
    # on what follows it too ("breast" in "breast cancer").
    bidirectional: bool = True
    dropout: float = 0.3  # strong regularisation for small corpora (on features and before the emissions)
    # A CRF scores whole tag sequences: valid IOB2 by construction, and usually a little better than
    # per-token softmax for NER (Lample et al. 2016).
    use_crf: bool = True
    # Characters per word for the CNN: longer words keep their first and last 10 characters.
    max_word_len: int = 20
    # >0: each token also gets an embedding of its disease-lexicon match tag (outside/begin/inside,
    # greedy longest match). Half of the devel mentions never seen in training are in the lexicon, and
    # the network learns how far to trust a match; 0 builds a network without that input.
    lexicon_dim: int = 0
    # The entity types with a lexicon of their own (training/lexicon.py builds each), read as one input whose
    # code combines the token's match in each (model/lexicon.py Lexicons): ["Disease"] reads the disease
    # lexicon alone, as every model did before types existed. At most 4 types (81 codes).
    lexicon_types: list[str] = field(default_factory=lambda: ["Disease"])
    # >0: each token also gets an embedding of the variant patterns' verdict on it (outside/begin/inside a
    # model/patterns.py mention). The run-time rules add pattern mentions after the network either way; as
    # an input the network can learn where a pattern's span is the guideline's and where the token belongs
    # to a gene or chemical name. 0 builds a network without that input.
    pattern_dim: int = 0
    # Corpora whose annotation conventions the network tells apart, e.g. ["ncbi", "bc5cdr-disease"]:
    # NCBI-disease and BC5CDR mark disease mentions by different guidelines (modifiers, symptoms, span
    # edges), so a network trained on both learns one input vector and one correction of its emission
    # layer per corpus, and a sentence is read under its corpus's convention. Tagging picks one
    # convention and folds it into plain weights (model/conventions.py). Empty: no such switch.
    conventions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = list(self.labels)
        self.conventions = list(self.conventions)
        self.lexicon_types = list(self.lexicon_types)
        if (not 1 <= len(self.lexicon_types) <= 4 or len(set(self.lexicon_types)) != len(self.lexicon_types)
                or not all(isinstance(name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name)
                           for name in self.lexicon_types)):
            raise ValueError(f"TaggerConfig.lexicon_types must be 1 to 4 distinct type names, got {self.lexicon_types}")
        if len(set(self.conventions)) != len(self.conventions) or not all(
            isinstance(name, str) and name for name in self.conventions
        ):
            raise ValueError(f"TaggerConfig.conventions must be distinct names, got {self.conventions}")
        if not self.labels or self.labels[0] != "O":
            raise ValueError(f"TaggerConfig.labels must start with 'O' (IOB2), got {self.labels[:3]}")
        bad = [label for label in self.labels[1:] if not _TAG.match(label)]
        if bad:
            raise ValueError(
                f"TaggerConfig.labels must be IOB2 tags like 'B-Disease'/'I-Disease'; bad: {bad}"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"TaggerConfig.labels repeats a tag: {self.labels}")
        orphans = [
            label for label in self.labels if label.startswith("I-") and f"B-{label[2:]}" not in self.labels
        ]
        if orphans:
            raise ValueError(f"TaggerConfig.labels has I- tags without their B- tag: {orphans}")
        for name in ("word_vocab_size", "char_vocab_size"):
            if getattr(self, name) < 2:
                raise ValueError(
                    f"TaggerConfig.{name} must be at least 2 (padding and unknown), got {getattr(self, name)}"
                )
        for name in (
            "word_dim",
            "char_dim",
            "char_channels",
            "char_kernel",
            "case_dim",
            "hidden_size",
            "num_layers",
            "state_size",
            "expand",
            "conv_kernel",
            "max_word_len",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(
                    f"TaggerConfig.{name} must be a positive integer, got {getattr(self, name)!r}"
                )
        for name in ("lexicon_dim", "pattern_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"TaggerConfig.{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TaggerConfig.dropout must be in [0, 1), got {self.dropout}")

    @property
    def num_tags(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerConfig:
        """Inverse of ``to_dict``. Unknown keys are an error (naming them): a config written by a newer
        mambaner may describe a network this version would silently build wrong."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown TaggerConfig keys: {', '.join(unknown)} (written by a newer mambaner?)"
            )
        return cls(**data)
