"""The tagger network: token features → forward (and backward) Mamba → emissions → CRF or softmax.

Shapes: b sentences, l positions (right padding, ``mask`` True at tokens), h = hidden_size, t tags.
Both directions are :class:`~mambaner_cli.model.modules.block.MambaStack` stacks fed with the token features;
training runs their differentiable ``forward``, tagging (``decode``) their ``infer``: the same block, the
same weights. The backward stack reads each sentence reversed within its own length, so padding stays at
the end in both directions and never reaches a real token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.modules.block import BackboneConfig, MambaStack
from mambaner_cli.model.modules.crf import CRF, constrained_viterbi
from mambaner_cli.model.modules.embeddings import TokenFeatures


def reverse_index(mask: torch.Tensor) -> torch.Tensor:
    """[b, l] positions that reverse each row's first ``length`` entries and keep the padding in place.

    Its own inverse: gathering twice with it gives the input back.
    """
    length = mask.shape[1]
    lengths = mask.sum(dim=1, keepdim=True)  # b 1
    positions = torch.arange(length, device=mask.device)[None, :]  # 1 l
    return torch.where(positions < lengths, lengths - 1 - positions, positions)  # b l


def _gather_positions(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))  # b l h


def bidirectional_states(forward_stack: MambaStack, backward_stack: MambaStack | None, x: torch.Tensor,
                         mask: torch.Tensor, infer: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token features [b, l, h] → the forward stack's states and the backward stack's (None without one),
    both [b, l, h] at the tokens' own positions; the backward stack reads each sentence right to left
    within its length. ``infer``: the stacks' inference path (no autograd)."""
    attention_mask = mask.long()  # b l    (1 at tokens)

    def run(stack: MambaStack, hidden: torch.Tensor) -> torch.Tensor:
        return stack.infer(hidden, attention_mask) if infer else stack(hidden, attention_mask)

    forward = run(forward_stack, x)  # b l h
    if backward_stack is None:
        return forward, None
    index = reverse_index(mask)  # b l
    backward = _gather_positions(run(backward_stack, _gather_positions(x, index)), index)  # b l h
    return forward, backward


class MambaTagger(nn.Module):
    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.features = TokenFeatures(config)
        self.forward_mamba = MambaStack(self.backbone_config(config))
        self.backward_mamba = MambaStack(self.backbone_config(config)) if config.bidirectional else None
        directions = 2 if config.bidirectional else 1
        self.dropout = nn.Dropout(config.dropout)
        self.emissions = nn.Linear(directions * config.hidden_size, config.num_tags)
        # Per annotation convention, a correction added to the shared emission layer (zeros at first, so
        # what the corpora agree on stays shared); a chosen convention folds into ``emissions``.
        self.convention_emissions = self.convention_emission_bias = None
        if config.conventions:
            count = len(config.conventions)
            self.convention_emissions = nn.Parameter(torch.zeros(count, config.num_tags, directions * config.hidden_size))
            self.convention_emission_bias = nn.Parameter(torch.zeros(count, config.num_tags))
        self.crf = CRF(config.labels) if config.use_crf else None

    @staticmethod
    def backbone_config(config: TaggerConfig) -> BackboneConfig:
        """One direction's Mamba stack; its 1-entry token embedding is never read (features come in)."""
        return BackboneConfig(hidden_size=config.hidden_size, num_layers=config.num_layers,
                              state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel)

    def _states(self, x: torch.Tensor, mask: torch.Tensor, infer: bool) -> torch.Tensor:
        """[b, l, h] token features → [b, l, h] or [b, l, 2h] Mamba states, both directions."""
        forward, backward = bidirectional_states(self.forward_mamba, self.backward_mamba, x, mask, infer)
        return forward if backward is None else torch.cat([forward, backward], dim=-1)  # b l 2h

    def forward(
        self, word_ids: torch.Tensor, char_ids: torch.Tensor, case_ids: torch.Tensor, mask: torch.Tensor,
        lexicon_ids: torch.Tensor | None = None, convention_ids: torch.Tensor | None = None,
        infer: bool = False, pattern_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Emission scores [b, l, t] (unnormalised; padding rows are meaningless).

        ``convention_ids`` [b]: each sentence's annotation convention (an index into
        ``config.conventions``), required by a network that has conventions. ``infer``: the Mamba stacks'
        inference path (no autograd; what ``decode`` uses).
        """
        mask = mask.bool()
        x = self.features(word_ids, char_ids, case_ids, lexicon_ids, convention_ids, infer, pattern_ids)  # b l h
        states = self.dropout(self._states(x, mask, infer))  # b l 2h
        emissions = self.emissions(states)  # b l t
        if self.convention_emissions is not None:
            weight = self.convention_emissions[convention_ids]  # b t 2h
            emissions = emissions + torch.einsum("blh,bth->blt", states, weight)  # b l t
            emissions = emissions + self.convention_emission_bias[convention_ids][:, None, :]  # b l t
        return emissions

    def loss(
        self,
        word_ids: torch.Tensor,
        char_ids: torch.Tensor,
        case_ids: torch.Tensor,
        mask: torch.Tensor,
        tags: torch.Tensor,
        lexicon_ids: torch.Tensor | None = None,
        convention_ids: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        pattern_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CRF negative log-likelihood (mean over sentences), or token cross-entropy without a CRF.

        ``allowed`` [b, l, t] (partial labels): the tags each token may have; the loss marginalises over
        them (:meth:`CRF.partial_neg_log_likelihood`; without a CRF, over each token's allowed tags).
        """
        mask = mask.bool()
        emissions = self.forward(word_ids, char_ids, case_ids, mask, lexicon_ids, convention_ids,
                                 pattern_ids=pattern_ids)  # b l t
        if self.crf is not None:
            if allowed is not None:
                return self.crf.partial_neg_log_likelihood(emissions, allowed, mask)
            return self.crf.neg_log_likelihood(emissions, tags, mask)
        if allowed is not None:
            log_probs = F.log_softmax(emissions[mask].float(), dim=-1)  # n t
            return -torch.logsumexp(log_probs.masked_fill(~allowed[mask].bool(), float("-inf")), dim=-1).mean()
        return F.cross_entropy(emissions[mask].float(), tags[mask])

    @torch.no_grad()
    def decode(
        self, word_ids: torch.Tensor, char_ids: torch.Tensor, case_ids: torch.Tensor, mask: torch.Tensor,
        lexicon_ids: torch.Tensor | None = None, convention_ids: torch.Tensor | None = None,
        pattern_ids: torch.Tensor | None = None,
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Tag ids (always valid IOB2) and per-token confidences, one list per sentence, as long as it.

        Confidence is the probability of the chosen tag at that token: its CRF marginal, or its softmax
        probability without a CRF. Call ``eval()`` first (dropout).
        """
        mask = mask.bool()
        emissions = self.forward(word_ids, char_ids, case_ids, mask, lexicon_ids, convention_ids,
                                 infer=True, pattern_ids=pattern_ids).float()  # b l t
        if self.crf is not None and emissions.device.type == "cpu":  # the NumPy recursions (ops/crf_numpy.py)
            return self.crf.decode_numpy(emissions, mask)
        if self.crf is not None:
            paths = self.crf.viterbi(emissions, mask)
            probabilities = self.crf.marginals(emissions, mask)  # b l t
        else:
            log_probs = F.log_softmax(emissions, dim=-1)  # b l t
            paths = constrained_viterbi(log_probs, mask, self.config.labels)
            probabilities = log_probs.exp()  # b l t
        length = mask.shape[1]
        chosen = torch.tensor([path + [0] * (length - len(path)) for path in paths], dtype=torch.long,
                              device=mask.device).view(mask.shape)  # b l    one tensor, not one per sentence
        confidence = probabilities.gather(2, chosen[:, :, None]).squeeze(2).tolist()  # b l
        return paths, [confidence[i][: len(path)] for i, path in enumerate(paths)]
