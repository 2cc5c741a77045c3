"""A token classifier over a pretrained Mamba language model: subword states → linear head.

This is the network of the ``finetune`` recipe (the paper's setup: a pretrained Mamba language model,
LoRA-tuned for NER). The backbone is our :class:`~mambaner_cli.model.modules.block.MambaStack`, the block
the scratch tagger uses too; a Hugging Face checkpoint loads into it by parameter name (the names are
transformers' ``MambaModel``'s), which runtime/model_dir.py does: transformers stays at that boundary.

It sees subword ids; each word is represented by one of its subwords (the first,
or the last: see ``label_subword`` in runtime/subword.py), and decoding runs over those word positions
only, with the IOB2-constrained Viterbi of model/crf.py, so the output is always valid IOB2.

Shapes: b sequences, l subword positions (right padding, ``attention_mask`` 1 at real subwords),
w words (right padding, ``word_mask`` True at words), h = the backbone's hidden size, t tags.

Optionally (``bidirectional``) the same backbone also reads each sequence reversed within its own
length and the two states are concatenated before the head. A pretrained Mamba is causal, so a word's
representation only sees what precedes it; the backward pass adds the right context at the cost of a
second forward. Off by default: the paper's model is the causal one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mambaner_cli.model.models.tagger import reverse_index
from mambaner_cli.model.modules.block import MambaStack
from mambaner_cli.model.modules.crf import constrained_viterbi

IGNORE_INDEX = -100  # label of subwords that carry no word label (cross-entropy skips them)
# The projections of every Mamba block: LoRA on all four, as in the paper's setup.
LORA_TARGETS = ("in_proj", "x_proj", "dt_proj", "out_proj")


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[i, index[i, j]] for every row: [b, l, k] and [b, m] → [b, m, k]."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


class PretrainedTagger(nn.Module):
    """Linear head (with dropout) on the states of a pretrained Mamba backbone."""

    def __init__(self, backbone: MambaStack, labels: list[str], bidirectional: bool = False,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        self.labels = list(labels)
        self.bidirectional = bidirectional
        directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(directions * backbone.config.hidden_size, len(self.labels))

    def _states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, infer: bool) -> torch.Tensor:
        embedded = self.backbone.embed(input_ids)  # b l h
        mask = attention_mask.long()  # b l
        return self.backbone.infer(embedded, mask) if infer else self.backbone(embedded, mask)  # b l h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, infer: bool = False) -> torch.Tensor:
        """Emission scores [b, l, t] at every subword (padding rows are meaningless); ``infer``: the
        backbone's inference path (no autograd; what ``decode`` uses)."""
        states = self._states(input_ids, attention_mask, infer)  # b l h
        if self.bidirectional:
            index = reverse_index(attention_mask.bool())  # b l    reverses each row within its length
            reversed_ids = input_ids.gather(1, index)  # b l
            backward = _gather(self._states(reversed_ids, attention_mask, infer), index)  # b l h
            states = torch.cat([states, backward], dim=-1)  # b l 2h
        return self.head(self.dropout(states.float()))  # b l t

    def loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled subwords (``labels`` [b, l], IGNORE_INDEX elsewhere)."""
        emissions = self.forward(input_ids, attention_mask)  # b l t
        return F.cross_entropy(emissions.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_positions: torch.Tensor,
               word_mask: torch.Tensor) -> tuple[list[list[int]], list[list[float]]]:
        """Word-level tag ids (always valid IOB2) and the probability of each chosen tag.

        ``word_positions`` [b, w] is the subword position that represents each word (0 at padding).
        Call ``eval()`` first (dropout).
        """
        word_mask = word_mask.bool()
        emissions = self.forward(input_ids, attention_mask, infer=True)  # b l t
        words = _gather(emissions, word_positions)  # b w t
        log_probs = F.log_softmax(words.float(), dim=-1)  # b w t
        paths = constrained_viterbi(log_probs, word_mask, self.labels)
        chosen = torch.zeros(word_mask.shape, dtype=torch.long, device=word_mask.device)  # b w
        for i, path in enumerate(paths):
            chosen[i, : len(path)] = torch.tensor(path, dtype=torch.long)
        confidence = log_probs.exp().gather(2, chosen[:, :, None]).squeeze(2).tolist()  # b w
        return paths, [confidence[i][: len(path)] for i, path in enumerate(paths)]


def add_lora(model: PretrainedTagger, r: int = 8, alpha: int = 16, dropout: float = 0.1,
             targets: tuple[str, ...] = LORA_TARGETS, base_model: str | None = None):
    """Inject LoRA adapters into the backbone's projections, in place; the head stays fully trainable.

    Returns the ``peft.PeftModel`` wrapper (for ``save_pretrained`` of the adapter); keep using ``model``
    itself for forward/loss/decode. peft refuses ``out_proj`` on a transformers Mamba because that
    mixer's fused CUDA path reads ``out_proj.weight`` directly (and its CPU path ``dt_proj.weight``),
    silently skipping an adapter. Our mixer calls every projection as a module and takes the fused
    kernel only when they are plain ``nn.Linear``s, so all four adapters take effect here.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    wrapped = get_peft_model(model, config)
    wrapped.peft_config["default"].base_model_name_or_path = base_model  # recorded in adapter_config.json
    model.head.requires_grad_(True)
    return wrapped
