"""Per-token input vectors: word embedding + character CNN + case class, projected to the model width."""

from __future__ import annotations

import torch
from torch import nn

from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.features import NUM_CASE_IDS, Vocabulary


class TokenFeatures(nn.Module):
    """[b, l] word ids, [b, l, c] char ids, [b, l] case ids → [b, l, hidden_size].

    The character CNN (Ma & Hovy 2016) max-pools learnt character n-gram detectors over each word, so
    an unseen word still gets a vector from its spelling; padding characters never win the max.
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.words = nn.Embedding(config.word_vocab_size, config.word_dim, padding_idx=Vocabulary.PAD)
        self.chars = nn.Embedding(config.char_vocab_size, config.char_dim, padding_idx=Vocabulary.PAD)
        self.char_cnn = nn.Conv1d(
            config.char_dim, config.char_channels, config.char_kernel, padding=config.char_kernel // 2
        )
        self.cases = nn.Embedding(NUM_CASE_IDS, config.case_dim, padding_idx=0)
        # lexicon ids: 0 padding, then 1 + the match code (outside, begin, inside)
        self.lexicon = nn.Embedding(4, config.lexicon_dim, padding_idx=0) if config.lexicon_dim else None
        self.dropout = nn.Dropout(config.dropout)
        self.projection = nn.Linear(
            config.word_dim + config.char_channels + config.case_dim + config.lexicon_dim, config.hidden_size
        )

    def char_vectors(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Max-pooled character CNN per word: [b, l, c] → [b, l, char_channels] (zeros for empty words)."""
        batch, length, width = char_ids.shape
        flat = char_ids.reshape(batch * length, width)  # (b l) c
        chars = self.chars(flat).transpose(1, 2)  # (b l) char_dim c
        grams = self.char_cnn(chars)[:, :, :width]  # (b l) channels c    (even kernels give one extra column)
        present = (flat != Vocabulary.PAD)[:, None, :]  # (b l) 1 c
        pooled = grams.masked_fill(~present, float("-inf")).amax(dim=2)  # (b l) channels
        pooled = pooled.masked_fill(~present.any(dim=2), 0.0)  # (b l) channels    words without characters
        return pooled.view(batch, length, -1)  # b l channels

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor, case_ids: torch.Tensor,
                lexicon_ids: torch.Tensor | None = None) -> torch.Tensor:
        parts = [self.words(word_ids), self.char_vectors(char_ids), self.cases(case_ids)]
        if self.lexicon is not None:
            if lexicon_ids is None:
                raise ValueError("this network reads lexicon match codes: pass lexicon_ids")
            parts.append(self.lexicon(lexicon_ids))  # b l lexicon_dim
        features = torch.cat(parts, dim=-1)  # b l (word_dim + char_channels + case_dim [+ lexicon_dim])
        return self.projection(self.dropout(features))  # b l hidden
