"""Per-token input vectors: word embedding + character CNN + case class, projected to the model width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.features import NUM_CASE_IDS, Vocabulary
from mambaner_cli.model.lexicon import lexicon_code_count


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
        # lexicon ids: 0 padding, then 1 + the match code (outside, begin, inside; with several typed
        # lexicons, each type's code combined: model/lexicon.py Lexicons)
        self.lexicon = (nn.Embedding(1 + lexicon_code_count(len(config.lexicon_types)), config.lexicon_dim,
                                     padding_idx=0) if config.lexicon_dim else None)
        # variant-pattern ids, coded the same way (model/patterns.py pattern_codes)
        self.patterns = nn.Embedding(4, config.pattern_dim, padding_idx=0) if config.pattern_dim else None
        self.dropout = nn.Dropout(config.dropout)
        self.projection = nn.Linear(
            config.word_dim + config.char_channels + config.case_dim + config.lexicon_dim + config.pattern_dim,
            config.hidden_size,
        )
        # One learnt vector per annotation convention, added after the projection (so a chosen convention
        # folds into the projection's bias). Zeros at first: every convention starts as the shared model.
        self.convention_vectors = None
        if config.conventions:
            self.convention_vectors = nn.Embedding(len(config.conventions), config.hidden_size)
            nn.init.zeros_(self.convention_vectors.weight)

    def char_vectors(self, char_ids: torch.Tensor, infer: bool = False) -> torch.Tensor:
        """Max-pooled character CNN per word: [b, l, c] → [b, l, char_channels] (zeros for empty words).

        With ``infer`` (tagging, no autograd) the convolution runs as table look-ups at the real characters
        only (``_char_vectors_by_lookup``): the same function, about 8x faster on a CPU than convolving
        every slot of the [(b l), c] grid, three quarters of which is padding.
        """
        batch, length, width = char_ids.shape
        flat = char_ids.reshape(batch * length, width)  # (b l) c
        if infer and self._lookup_is_exact():
            return self._char_vectors_by_lookup(flat).view(batch, length, -1)  # b l channels
        chars = self.chars(flat).transpose(1, 2)  # (b l) char_dim c
        grams = self.char_cnn(chars)[:, :, :width]  # (b l) channels c    (even kernels give one extra column)
        present = (flat != Vocabulary.PAD)[:, None, :]  # (b l) 1 c
        pooled = grams.masked_fill(~present, float("-inf")).amax(dim=2)  # (b l) channels
        pooled = pooled.masked_fill(~present.any(dim=2), 0.0)  # (b l) channels    words without characters
        return pooled.view(batch, length, -1)  # b l channels

    def _lookup_is_exact(self) -> bool:
        """Whether the convolution is the plain one ``_char_vectors_by_lookup`` reproduces."""
        cnn = self.char_cnn
        return (cnn.padding_mode == "zeros" and cnn.stride == (1,) and cnn.dilation == (1,) and cnn.groups == 1
                and isinstance(cnn.padding, tuple))

    def _char_vectors_by_lookup(self, flat: torch.Tensor) -> torch.Tensor:
        """``char_vectors`` of [(b l), c] character ids → [(b l), channels], by look-ups and a segment max.

        A convolution over embedded characters is linear in each embedding, so tap k's contribution of
        a character is a fixed [channels] vector: ``table[k] = embedding @ weight[:, :, k]^T`` (one extra
        all-zero row stands for the convolution's zero padding). The response at character j sums tap
        k's row of character j + k - padding; it is computed only where j holds a character, and the
        responses of one word are max-pooled together (``segment_reduce``: the rows of ``nonzero`` come
        word by word). The bias is added after the max, which it commutes with (adding a constant is
        monotone, even rounded). Same numbers as the convolution up to float rounding.
        """
        cnn = self.char_cnn
        kernel, padding = cnn.kernel_size[0], cnn.padding[0]
        words = flat.shape[0]
        present = flat != Vocabulary.PAD  # (b l) c
        counts = present.sum(dim=1)  # (b l)    characters per word
        outside = self.chars.num_embeddings  # id of the zero row: positions beyond the word's ends
        table = torch.einsum("vc,ock->kvo", self.chars.weight, cnn.weight)  # K v channels
        table = torch.cat([table, table.new_zeros(kernel, 1, table.shape[2])], dim=1)  # K v+1 channels
        padded = F.pad(flat, (padding, max(0, kernel - 1 - padding)), value=outside)  # (b l) c+K-1
        rows, columns = present.nonzero(as_tuple=True)  # P, P    every character, word by word
        first = rows * padded.shape[1] + columns  # P    tap 0's position in the flattened padded grid
        ids = padded.view(-1)  # (b l)(c+K-1)
        grams = F.embedding(ids[first], table[0])  # P channels
        for k in range(1, kernel):
            grams.add_(F.embedding(ids[first + k], table[k]))  # P channels
        if grams.shape[0]:
            pooled = torch.segment_reduce(grams, "max", lengths=counts, unsafe=True, initial=float("-inf"))
        else:
            pooled = grams.new_full((words, grams.shape[1]), float("-inf"))  # (b l) channels
        if cnn.bias is not None:
            pooled = pooled + cnn.bias  # (b l) channels
        return pooled.masked_fill(counts[:, None] == 0, 0.0)  # (b l) channels    words without characters

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor, case_ids: torch.Tensor,
                lexicon_ids: torch.Tensor | None = None, convention_ids: torch.Tensor | None = None,
                infer: bool = False, pattern_ids: torch.Tensor | None = None) -> torch.Tensor:
        """[b, l, hidden]; ``convention_ids`` [b] (one per sentence) when the network has conventions;
        ``infer``: tagging without autograd (see ``char_vectors``)."""
        parts = [self.words(word_ids), self.char_vectors(char_ids, infer), self.cases(case_ids)]
        if self.lexicon is not None:
            if lexicon_ids is None:
                raise ValueError("this network reads lexicon match codes: pass lexicon_ids")
            parts.append(self.lexicon(lexicon_ids))  # b l lexicon_dim
        if self.patterns is not None:
            if pattern_ids is None:
                raise ValueError("this network reads variant-pattern codes: pass pattern_ids")
            parts.append(self.patterns(pattern_ids))  # b l pattern_dim
        features = torch.cat(parts, dim=-1)  # b l (word_dim + char_channels + case_dim [+ lexicon_dim] [+ pattern_dim])
        projected = self.projection(self.dropout(features))  # b l hidden
        if self.convention_vectors is not None:
            if convention_ids is None:
                raise ValueError("this network reads each sentence's annotation convention: pass convention_ids")
            projected = projected + self.convention_vectors(convention_ids)[:, None, :]  # b l hidden
        return projected
