"""CRF decoding for tagging on a CPU, in NumPy: the best path and each token's marginal in one call.

What ``MambaTagger.decode`` runs on CPU tensors; ``CRF.viterbi`` and ``CRF.marginals`` (modules/crf.py)
are the plain references, and the tests hold this to them: the same paths, marginals within float32
rounding.

Why: both recursions step position by position over [b, t] rows of a few hundred numbers, so their cost
is the per-operation overhead, not arithmetic. A PyTorch operation costs several microseconds before it
does anything, a NumPy one about one, and the same recursions take about a quarter of the time (the
CRF was 13 % of `Tagger.tag` under cProfile in a one-process `mambaner tag` of the 1,500 BC5CDR abstracts). The marginals are
computed in probability space with each step rescaled to sum 1 (Rabiner's scaled forward-backward, in
float64), which needs one small matrix product per step where log space needs a ``logsumexp`` over a
[b, t, t] block.

Shapes as in modules/crf.py: b sentences, l positions (right padding), t tags.
"""

from __future__ import annotations

import numpy as np


def viterbi_numpy(emissions: np.ndarray, lengths: np.ndarray, transitions: np.ndarray, start: np.ndarray,
                  end: np.ndarray) -> list[list[int]]:
    """``crf._viterbi`` in NumPy: emissions [b, l, t] float32, lengths [b], transitions [t, t] (from, to),
    start [t], end [t], forbidden moves at -inf. The same float32 sums in the same order, so the same
    scores; a tie goes to the lowest tag index, as in ``torch.max``."""
    batch, length, count = emissions.shape
    if length == 0:
        return [[] for _ in range(batch)]
    score = start + emissions[:, 0]  # b t
    scores = np.empty((length, batch, count), dtype=emissions.dtype)  # l b t
    scores[0] = score
    pointers = np.empty((max(length - 1, 0), batch, count), dtype=np.int64)  # l-1 b t
    rows = np.arange(batch)[:, None]
    columns = np.arange(count)[None, :]
    for i in range(1, length):
        candidates = score[:, :, None] + transitions  # b t t    previous tag, next tag
        pointer = candidates.argmax(axis=1)  # b t
        pointers[i - 1] = pointer
        score = candidates[rows, pointer, columns] + emissions[:, i]  # b t
        scores[i] = score
    last = np.maximum(lengths - 1, 0)
    last_tags = (scores[last, np.arange(batch)] + end).argmax(axis=1).tolist()  # b
    return backtrace(pointers.transpose(1, 0, 2).tolist(), lengths.tolist(), last_tags)


def backtrace(pointers: list[list[list[int]]], lengths: list[int], last_tags: list[int]) -> list[list[int]]:
    """Each sentence's best path from its Viterbi back-pointers [b][l-1][t] (the best previous tag for each
    tag at each position), its length and its best last tag: followed in Python lists, a few hundred
    nanoseconds a token instead of several small array operations per position of the batch."""
    paths = []
    for rows, count, tag in zip(pointers, lengths, last_tags):
        path = [tag] if count else []
        for i in range(count - 2, -1, -1):
            tag = rows[i][tag]  # the best tag at i given the tag at i + 1
            path.append(tag)
        path.reverse()
        paths.append(path)
    return paths


def marginals_numpy(emissions: np.ndarray, lengths: np.ndarray, transitions: np.ndarray, start: np.ndarray,
                    end: np.ndarray) -> np.ndarray:
    """``CRF.marginals`` in NumPy, [b, l, t] float64, 0 at padding: p(tag_i = j | sentence) from the scaled
    forward-backward recursions. ``transitions``, ``start`` and ``end`` are the CRF's log scores with
    forbidden moves at a large negative value (``crf.FORBIDDEN``), whose exp is 0."""
    batch, length, count = emissions.shape
    if length == 0:
        return np.zeros((batch, 0, count))
    # Each position's scores shifted by their maximum before exp: the shift cancels in each position's
    # normalisation, and exp stays in (0, 1].
    shifted = emissions.astype(np.float64)
    shifted -= shifted.max(axis=2, keepdims=True)
    weights = np.exp(shifted)  # b l t
    moves = np.exp(transitions.astype(np.float64))  # t t
    alpha = np.empty((batch, length, count))  # b l t    forward, each position scaled to sum 1
    a = np.exp(start.astype(np.float64)) * weights[:, 0]  # b t
    alpha[:, 0] = a / a.sum(axis=1, keepdims=True)
    for i in range(1, length):
        a = (alpha[:, i - 1] @ moves) * weights[:, i]  # b t
        alpha[:, i] = a / a.sum(axis=1, keepdims=True)
    final = np.exp(end.astype(np.float64))  # t
    beta = np.empty((batch, length, count))  # b l t    backward (no emission at i), scaled
    beta[:, -1] = final
    last = (lengths - 1)[:, None]  # b 1
    for i in range(length - 2, -1, -1):
        b = (weights[:, i + 1] * beta[:, i + 1]) @ moves.T  # b t
        b /= b.sum(axis=1, keepdims=True)
        beta[:, i] = np.where(i >= last, final, b)  # a sentence's last token (or padding) sees only `end`
    product = alpha * beta  # b l t
    totals = product.sum(axis=2, keepdims=True)
    np.divide(product, totals, out=product, where=totals > 0)
    product[np.arange(length)[None, :] >= lengths[:, None]] = 0.0
    return product


def decode_numpy(emissions: np.ndarray, lengths: np.ndarray, viterbi_scores: tuple[np.ndarray, ...],
                 likelihood_scores: tuple[np.ndarray, ...]) -> tuple[list[list[int]], list[list[float]]]:
    """Best path per sentence and the marginal of its tag at each token. ``viterbi_scores``: the CRF's
    (transitions, start, end) with forbidden moves at -inf; ``likelihood_scores``: the same at
    ``crf.FORBIDDEN``."""
    paths = viterbi_numpy(emissions, lengths, *viterbi_scores)
    probabilities = marginals_numpy(emissions, lengths, *likelihood_scores)
    confidences = []
    for k, path in enumerate(paths):
        confidences.append(probabilities[k, np.arange(len(path)), path].tolist() if path else [])
    return paths, confidences
