"""Tiny seeded, untrained model directories with any labels and conventions (the multi-type variant of
conftest's ``tiny_model_dir``), for tests that need a model of several entity types."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# A multi-type model's labels, as `mambaner train scratch` on gene, disease and chemical corpora makes them.
MULTITYPE_LABELS = ["O", "B-Gene", "I-Gene", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]


def write_tiny_model(out: Path, labels: Sequence[str] = MULTITYPE_LABELS, conventions: Sequence[str] = (),
                     seed: int = 0, silent: bool = False) -> Path:
    """A complete scratch model directory at ``out``: hidden size 16, one layer, seeded weights.
    ``silent``: its emissions make every token O (a network that finds nothing, for tests of what is added
    beside it)."""
    import torch

    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.features import Vocabulary
    from mambaner_cli.model.models.tagger import MambaTagger
    from mambaner_cli.runtime.model_dir import write_scratch

    torch.manual_seed(seed)
    words = Vocabulary.build({"the": 5, "gene": 3, "disease": 3, "acid": 2}, 1)
    chars = Vocabulary.build({c: 1 for c in "abcdefghijklmnopqrstuvwxyz0123456789.,-()"}, 1)
    config = TaggerConfig(labels=list(labels), word_vocab_size=len(words), char_vocab_size=len(chars), word_dim=8,
                          char_dim=8, char_channels=8, case_dim=4, hidden_size=16, num_layers=1, state_size=4,
                          conventions=list(conventions))
    network = MambaTagger(config)
    if silent:
        with torch.no_grad():
            network.emissions.weight.zero_()
            network.emissions.bias.fill_(-3.0)
            network.emissions.bias[config.labels.index("O")] = 3.0
    write_scratch(out, network, words, chars, out.name)
    return out
