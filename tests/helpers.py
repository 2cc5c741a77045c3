"""Helpers shared by the model's test files: IOB2 validity of tag ids, and a tiny tagger configuration."""

from __future__ import annotations

LABELS = ["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]


def valid(tag_ids: list[int], labels: list[str] = LABELS) -> bool:
    from mambaner_cli.model.modules.crf import is_valid_iob2

    return is_valid_iob2([labels[i] for i in tag_ids])


def tiny_config(**overrides):
    from mambaner_cli.model.config import TaggerConfig

    values = {
        "labels": ["O", "B-Disease", "I-Disease"],
        "word_vocab_size": 60,
        "char_vocab_size": 40,
        "word_dim": 16,
        "char_dim": 8,
        "char_channels": 12,
        "case_dim": 4,
        "hidden_size": 24,
        "num_layers": 2,
        "state_size": 4,
        "dropout": 0.1,
    }
    values.update(overrides)
    return TaggerConfig(**values)
