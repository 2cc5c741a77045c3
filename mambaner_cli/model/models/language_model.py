"""The pretraining network: the tagger's encoder with a word-prediction head per direction.

A bidirectional language model, as ELMo and flair pretrain theirs: the forward Mamba stack reads a
sentence left to right and predicts each next word, the backward stack reads it right to left and predicts
each previous word. Its ``features``, ``forward_mamba`` and ``backward_mamba`` have the tagger's parameter
names and shapes, so a scratch tagger starts from them (``train scratch --init-from``); the heads are
dropped then.

Shapes: b sentences, l positions (right padding, ``mask`` True at tokens), h = hidden_size, v = the
prediction vocabulary (the most frequent words; id 0 stands for every other word).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.models.tagger import MambaTagger, bidirectional_states
from mambaner_cli.model.modules.block import MambaStack
from mambaner_cli.model.modules.embeddings import TokenFeatures

IGNORE_INDEX = -100  # target of positions that predict nothing (padding, past a sentence's ends)
ENCODER_PREFIXES = ("features.", "forward_mamba.", "backward_mamba.")  # what a tagger takes over


class BiLanguageModel(nn.Module):
    def __init__(self, config: TaggerConfig, vocabulary_size: int) -> None:
        super().__init__()
        if not config.bidirectional:
            raise ValueError("the bidirectional language model needs TaggerConfig.bidirectional")
        self.config = config
        self.features = TokenFeatures(config)
        self.forward_mamba = MambaStack(MambaTagger.backbone_config(config))
        self.backward_mamba = MambaStack(MambaTagger.backbone_config(config))
        self.dropout = nn.Dropout(config.dropout)
        self.forward_head = nn.Linear(config.hidden_size, vocabulary_size)
        self.backward_head = nn.Linear(config.hidden_size, vocabulary_size)

    def losses(self, word_ids: torch.Tensor, char_ids: torch.Tensor, case_ids: torch.Tensor, mask: torch.Tensor,
               targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of the forward (next word) and the backward (previous word) predictions;
        ``targets`` [b, l]: each token's id in the prediction vocabulary."""
        mask = mask.bool()
        x = self.features(word_ids, char_ids, case_ids)  # b l h
        forward, backward = bidirectional_states(self.forward_mamba, self.backward_mamba, x, mask, infer=False)
        ignored = targets.masked_fill(~mask, IGNORE_INDEX)  # b l
        next_words = F.pad(ignored[:, 1:], (0, 1), value=IGNORE_INDEX)  # b l    position t predicts t + 1
        previous_words = F.pad(ignored[:, :-1], (1, 0), value=IGNORE_INDEX)  # b l    position t predicts t - 1
        forward_logits = self.forward_head(self.dropout(forward))  # b l v
        backward_logits = self.backward_head(self.dropout(backward))  # b l v
        return _mean_cross_entropy(forward_logits, next_words), _mean_cross_entropy(backward_logits, previous_words)

    def loss(self, word_ids: torch.Tensor, char_ids: torch.Tensor, case_ids: torch.Tensor, mask: torch.Tensor,
             targets: torch.Tensor) -> torch.Tensor:
        forward, backward = self.losses(word_ids, char_ids, case_ids, mask, targets)
        return (forward + backward) / 2


def _mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions that predict something; 0 (not NaN) for a batch of one-word
    sentences, where no position does."""
    total = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def init_from_encoder(network: nn.Module, encoder: dict[str, torch.Tensor]) -> list[str]:
    """Copy a pretrained encoder's weights into a fresh tagger, in place; returns the names copied.

    Every ``features.``/``forward_mamba.``/``backward_mamba.`` tensor of the same shape is copied. The
    feature projection is copied column by column where the tagger reads more inputs than the encoder did
    (a lexicon feature the language model had no use for): the encoder's inputs come first in both, the
    extra columns keep their fresh initialisation.
    """
    state = network.state_dict()
    copied = []
    with torch.no_grad():
        for name, tensor in encoder.items():
            if not name.startswith(ENCODER_PREFIXES) or name not in state:
                continue
            target = state[name]
            if target.shape == tensor.shape:
                target.copy_(tensor)
            elif name == "features.projection.weight" and target.shape[0] == tensor.shape[0] \
                    and target.shape[1] > tensor.shape[1]:
                target[:, : tensor.shape[1]].copy_(tensor)
            else:
                raise ValueError(f"{name}: the encoder's is {list(tensor.shape)}, the tagger's {list(target.shape)}")
            copied.append(name)
    return copied
