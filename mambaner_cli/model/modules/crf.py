"""Linear-chain CRF over IOB2 tags, and BIO-constrained Viterbi decoding.

Shapes: b sentences, l positions (right padding: ``mask[i, :length_i]`` is True, the rest False), t tags.

IOB2 says an entity starts with B-X and continues with I-X, so I-X may only follow B-X or I-X and may
not open a sentence. The CRF learns transition scores but those forbidden moves are pinned to a large
negative constant (finite, so a mislabelled training sentence costs a big loss instead of ``inf``/NaN);
Viterbi uses a hard ``-inf`` mask so that no decoded sequence is ever invalid, whatever the scores.
"""

from __future__ import annotations

import torch
from torch import nn

from mambaner_cli.model.ops.crf_numpy import backtrace

# Added to the score of a forbidden move in the likelihood: exp(-1e4) is exactly 0 in float32.
FORBIDDEN = -1e4


def allowed_moves(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """IOB2 constraints: ``transitions[i, j]`` (may tag j follow tag i) [t, t] and ``start[j]`` [t], bool."""
    count = len(labels)
    transitions = torch.ones(count, count, dtype=torch.bool)  # from, to
    start = torch.ones(count, dtype=torch.bool)
    for j, label in enumerate(labels):
        if label.startswith("I-"):
            kind = label[2:]
            start[j] = False
            for i, previous in enumerate(labels):
                transitions[i, j] = previous in (f"B-{kind}", f"I-{kind}")
    return transitions, start


def is_valid_iob2(tags: list[str]) -> bool:
    """Whether a tag sequence obeys IOB2 (every I-X follows B-X or I-X)."""
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous not in (f"B-{tag[2:]}", tag):
            return False
        previous = tag
    return True


def _viterbi(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> list[list[int]]:
    """Best path per sentence, vectorised over the batch; scores may hold -inf for forbidden moves.

    Relies on right padding (module docstring): positions after a sentence's end only extend paths
    nobody reads. Each sentence's final scores are taken at its own last token (then ``backtrace``).
    """
    batch, length, _ = emissions.shape
    lengths = mask.sum(1)  # b
    if length == 0:
        return [[] for _ in range(batch)]
    score = start + emissions[:, 0]  # b t
    scores = [score]
    backpointers = []
    for i in range(1, length):
        best, pointer = (score[:, :, None] + transitions).max(dim=1)  # b t, b t    over the previous tag
        backpointers.append(pointer)
        score = best + emissions[:, i]  # b t
        scores.append(score)
    last = (lengths - 1).clamp(min=0)  # b    position of each sentence's last token
    final = torch.stack(scores)[last, torch.arange(batch, device=emissions.device)]  # b t
    last_tags = (final + end).argmax(dim=1).tolist()  # b
    pointers = torch.stack(backpointers, dim=1).tolist() if backpointers else [[]] * batch  # b l-1 t
    return backtrace(pointers, lengths.tolist(), last_tags)


def constrained_viterbi(log_probs: torch.Tensor, mask: torch.Tensor, labels: list[str]) -> list[list[int]]:
    """The most probable *valid* IOB2 sequence under per-token scores (e.g. softmax log-probabilities).

    For taggers without a CRF: picks argmax Σ log p(tag_i) over the sequences that obey IOB2, so the
    output never needs repairing. log_probs [b, l, t]; returns one list of tag ids per sentence.
    """
    allowed, allowed_start = allowed_moves(labels)
    device = log_probs.device
    transitions = torch.zeros(allowed.shape, device=device).masked_fill(~allowed.to(device), float("-inf"))
    start = torch.zeros(len(labels), device=device).masked_fill(~allowed_start.to(device), float("-inf"))
    end = torch.zeros(len(labels), device=device)
    return _viterbi(log_probs.float(), mask.bool(), transitions, start, end)


class CRF(nn.Module):
    """A linear-chain CRF with IOB2-constrained transitions."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__()
        self.labels = list(labels)
        count = len(self.labels)
        self.transitions = nn.Parameter(torch.zeros(count, count))  # from, to
        self.start_transitions = nn.Parameter(torch.zeros(count))
        self.end_transitions = nn.Parameter(torch.zeros(count))
        allowed, allowed_start = allowed_moves(self.labels)
        # Derived from the labels, so not saved in checkpoints (persistent=False).
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("allowed_start", allowed_start, persistent=False)

    def _scores(self, forbidden: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        transitions = self.transitions.masked_fill(~self.allowed, forbidden)  # t t
        start = self.start_transitions.masked_fill(~self.allowed_start, forbidden)  # t
        return transitions, start, self.end_transitions

    def _forward_scores(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """alpha [b, l, t]: log-sum of the scores of all prefixes ending in each tag (kept at padding)."""
        transitions, start, _ = self._scores(FORBIDDEN)
        alpha = start + emissions[:, 0]  # b t
        alphas = [alpha]
        for i in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + transitions, dim=1) + emissions[:, i]  # b t
            alpha = torch.where(mask[:, i, None], step, alpha)  # b t
            alphas.append(alpha)
        return torch.stack(alphas, dim=1)  # b l t

    def _log_partition(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(alpha[:, -1] + self.end_transitions, dim=1)  # b

    def neg_log_likelihood(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean over the batch of -log p(tags | emissions); sentences without tokens count 0.

        emissions [b, l, t] (float), tags [b, l] (long; anything at padding), mask [b, l] (bool).
        """
        emissions = emissions.float()
        mask = mask.bool()
        transitions, start, end = self._scores(FORBIDDEN)
        lengths = mask.sum(1)  # b
        nonempty = lengths > 0  # b
        tags = tags.masked_fill(~mask, 0)  # b l
        emitted = emissions.gather(2, tags[:, :, None]).squeeze(2)  # b l
        gold = start[tags[:, 0]] + (emitted * mask).sum(1)  # b
        moves = transitions[tags[:, :-1], tags[:, 1:]]  # b l-1
        gold = gold + (moves * mask[:, 1:]).sum(1)  # b
        last_tags = tags.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)  # b
        gold = gold + end[last_tags]  # b
        log_z = self._log_partition(self._forward_scores(emissions, mask))  # b
        return ((log_z - gold) * nonempty).sum() / emissions.shape[0]

    def partial_neg_log_likelihood(self, emissions: torch.Tensor, allowed: torch.Tensor, mask: torch.Tensor
                                   ) -> torch.Tensor:
        """Mean over the batch of -log Σ p(path | emissions) over the paths whose tag at each position is
        one of ``allowed`` there (a partial-label, "fuzzy" CRF: Shang et al. 2018).

        A corpus that marks only some types says nothing about the others: where it says ``O``, a token
        may still be a mention of a type it does not mark, so those tags stay allowed and the loss
        marginalises over them instead of teaching ``O``. With one allowed tag per token this is
        :meth:`neg_log_likelihood`. allowed [b, l, t] (bool; anything at padding).
        """
        emissions = emissions.float()
        mask = mask.bool()
        nonempty = mask.sum(1) > 0  # b
        log_z = self._log_partition(self._forward_scores(emissions, mask))  # b
        constrained = emissions.masked_fill(~allowed.bool(), FORBIDDEN)  # b l t
        log_gold = self._log_partition(self._forward_scores(constrained, mask))  # b
        return ((log_z - log_gold) * nonempty).sum() / emissions.shape[0]

    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best valid tag sequence per sentence (lists as long as each sentence)."""
        transitions, start, end = self._scores(float("-inf"))
        return _viterbi(emissions.float(), mask.bool(), transitions, start, end)

    def decode_numpy(self, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[list[list[int]], list[list[float]]]:
        """``viterbi`` and each chosen tag's ``marginals``, by the NumPy recursions of ops/crf_numpy.py (for
        CPU tensors: same paths, marginals within float32 rounding, a quarter of the time)."""
        from mambaner_cli.model.ops.crf_numpy import decode_numpy

        def arrays(scores: tuple[torch.Tensor, ...]) -> tuple:
            return tuple(score.detach().float().cpu().numpy() for score in scores)

        return decode_numpy(emissions.detach().float().cpu().numpy(), mask.bool().sum(1).cpu().numpy(),
                            arrays(self._scores(float("-inf"))), arrays(self._scores(FORBIDDEN)))

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """p(tag_i = j | sentence) by forward-backward, [b, l, t]; 0 at padding."""
        emissions = emissions.float()
        mask = mask.bool()
        transitions, _, end = self._scores(FORBIDDEN)
        alpha = self._forward_scores(emissions, mask)  # b l t
        batch, length, count = emissions.shape
        beta = emissions.new_empty(batch, length, count)  # b l t
        beta[:, -1] = end
        for i in range(length - 2, -1, -1):
            following = emissions[:, i + 1] + beta[:, i + 1]  # b t
            step = torch.logsumexp(transitions + following[:, None, :], dim=2)  # b t
            beta[:, i] = torch.where(mask[:, i + 1, None], step, end)  # b t
        log_z = self._log_partition(alpha)  # b
        return torch.exp(alpha + beta - log_z[:, None, None]) * mask[:, :, None]  # b l t
