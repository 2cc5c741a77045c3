"""Tests for mambaner_cli.model.config: TaggerConfig."""

from __future__ import annotations

import pytest


def test_config_round_trip_and_validation():
    from mambaner_cli.model.config import TaggerConfig

    config = TaggerConfig(labels=["O", "B-Disease", "I-Disease"], word_vocab_size=100, char_vocab_size=50)
    assert config.num_tags == 3 and config.hidden_size == 128 and config.use_crf and config.bidirectional
    assert TaggerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="colour, shape"):
        TaggerConfig.from_dict({**config.to_dict(), "shape": 1, "colour": 2})
    for labels in (["B-Disease", "O"], ["O", "Disease"], ["O", "I-Disease"], ["O", "B-X", "B-X"], []):
        with pytest.raises(ValueError, match="labels"):
            TaggerConfig(labels=labels, word_vocab_size=100, char_vocab_size=50)
    with pytest.raises(ValueError, match="dropout"):
        TaggerConfig(labels=["O"], word_vocab_size=100, char_vocab_size=50, dropout=1.0)
    with pytest.raises(ValueError, match="hidden_size"):
        TaggerConfig(labels=["O"], word_vocab_size=100, char_vocab_size=50, hidden_size=0)
