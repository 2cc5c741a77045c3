"""Tests for mambaner_cli.model.modules.crf: IOB2 constraints, likelihood, Viterbi and marginals."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.helpers import LABELS, valid

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread on a shared CPU


def brute_force_scores(crf, emissions: torch.Tensor, length: int, forbidden: float) -> dict[tuple, float]:
    """Score of every tag sequence of a sentence, computed term by term from the CRF's parameters."""
    from mambaner_cli.model.modules.crf import allowed_moves

    allowed, allowed_start = allowed_moves(crf.labels)
    transitions = crf.transitions.detach().masked_fill(~allowed, forbidden)
    start = crf.start_transitions.detach().masked_fill(~allowed_start, forbidden)
    scores = {}
    for seq in itertools.product(range(len(crf.labels)), repeat=length):
        score = start[seq[0]] + crf.end_transitions.detach()[seq[-1]]
        score = score + sum(emissions[i, tag] for i, tag in enumerate(seq))
        score = score + sum(transitions[a, b] for a, b in itertools.pairwise(seq))
        scores[seq] = float(score)
    return scores


def random_crf(seed: int):
    from mambaner_cli.model.modules.crf import CRF

    torch.manual_seed(seed)
    crf = CRF(LABELS)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, 1.0)
    return crf


def test_allowed_moves_follow_iob2():
    from mambaner_cli.model.modules.crf import allowed_moves, is_valid_iob2

    transitions, start = allowed_moves(LABELS)
    index = {label: i for i, label in enumerate(LABELS)}
    assert transitions[index["B-Disease"], index["I-Disease"]]
    assert transitions[index["I-Disease"], index["I-Disease"]]
    assert not transitions[index["O"], index["I-Disease"]]
    assert not transitions[index["B-Chemical"], index["I-Disease"]]
    assert transitions[index["I-Chemical"], index["B-Disease"]] and transitions[index["O"], index["O"]]
    assert start.tolist() == [True, True, False, True, False]
    assert is_valid_iob2(["O", "B-Disease", "I-Disease", "B-Disease"]) and not is_valid_iob2(["I-Disease"])


def test_crf_likelihood_viterbi_marginals_match_brute_force():
    crf = random_crf(0)
    lengths = [4, 2, 1, 3]
    emissions = torch.randn(4, 4, len(LABELS), generator=torch.Generator().manual_seed(1)) * 2
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    tags = torch.tensor([[1, 2, 0, 3], [3, 4, 0, 0], [0, 0, 0, 0], [2, 2, 1, 0]])  # last one starts invalid
    nll = crf.neg_log_likelihood(emissions, tags, mask)
    paths = crf.viterbi(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    expected_nll = 0.0
    for k, n in enumerate(lengths):
        soft = brute_force_scores(crf, emissions[k], n, -1e4)
        log_z = torch.logsumexp(torch.tensor(list(soft.values()), dtype=torch.float64), 0).item()
        expected_nll += log_z - soft[tuple(tags[k, :n].tolist())]
        hard = {seq: s for seq, s in soft.items() if valid(list(seq))}
        assert tuple(paths[k]) == max(hard, key=hard.get)
        for i in range(n):
            for tag in range(len(LABELS)):
                p = sum(
                    torch.exp(torch.tensor(s - log_z, dtype=torch.float64)).item()
                    for seq, s in soft.items()
                    if seq[i] == tag
                )
                assert abs(marginals[k, i, tag].item() - p) < 1e-5
        assert marginals[k, n:].abs().sum() == 0
    assert abs(nll.item() - expected_nll / 4) < 1e-3 * max(1.0, abs(expected_nll))
    # a mislabelled (invalid) gold sequence costs a lot but stays finite, and so do the gradients
    nll.backward()
    assert nll.item() > 1e3 and all(torch.isfinite(p.grad).all() for p in crf.parameters())


def test_crf_never_decodes_an_invalid_sequence():
    from mambaner_cli.model.modules.crf import constrained_viterbi

    for seed in range(30):
        crf = random_crf(seed)
        with torch.no_grad():
            crf.transitions.mul_(20)
        g = torch.Generator().manual_seed(seed)
        emissions = torch.randn(8, 12, len(LABELS), generator=g) * 30
        emissions[:, :, 2] += 40  # push hard towards I-Disease everywhere
        mask = torch.arange(12)[None, :] < torch.randint(1, 13, (8, 1), generator=g)
        for paths in (
            crf.viterbi(emissions, mask),
            constrained_viterbi(emissions.log_softmax(-1), mask, LABELS),
        ):
            assert [len(p) for p in paths] == mask.sum(1).tolist()
            assert all(valid(p) for p in paths)


def test_constrained_viterbi_is_best_valid_sequence():
    from mambaner_cli.model.modules.crf import constrained_viterbi

    log_probs = torch.randn(3, 4, len(LABELS), generator=torch.Generator().manual_seed(5)).log_softmax(-1)
    lengths = [4, 3, 1]
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    paths = constrained_viterbi(log_probs, mask, LABELS)
    for k, n in enumerate(lengths):
        best = max(
            (seq for seq in itertools.product(range(len(LABELS)), repeat=n) if valid(list(seq))),
            key=lambda seq: sum(log_probs[k, i, t].item() for i, t in enumerate(seq)),
        )
        assert tuple(paths[k]) == best


def reference_viterbi(emissions: torch.Tensor, transitions: torch.Tensor, start: torch.Tensor,
                      end: torch.Tensor) -> list[int]:
    """One sentence, position by position, the textbook way: emissions [n, t]."""
    if emissions.shape[0] == 0:
        return []
    score, pointers = start + emissions[0], []
    for i in range(1, emissions.shape[0]):
        best, pointer = (score[:, None] + transitions).max(dim=0)
        pointers.append(pointer)
        score = best + emissions[i]
    path = [int((score + end).argmax())]
    for pointer in reversed(pointers):
        path.append(int(pointer[path[-1]]))
    return path[::-1]


def test_viterbi_equals_a_per_sentence_reference_on_long_batches():
    for seed in range(5):
        crf = random_crf(seed)
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(0, 40, (9,), generator=g)
        lengths[0] = 40
        emissions = torch.randn(9, 40, len(LABELS), generator=g) * 3
        mask = torch.arange(40)[None, :] < lengths[:, None]
        transitions, start, end = crf._scores(float("-inf"))
        with torch.inference_mode():
            paths = crf.viterbi(emissions, mask)
        for k, n in enumerate(lengths.tolist()):
            assert paths[k] == reference_viterbi(emissions[k, :n], transitions, start, end)
            assert valid(paths[k])


def test_crf_handles_empty_sentences():
    crf = random_crf(3)
    emissions = torch.randn(2, 3, len(LABELS))
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert crf.viterbi(emissions, mask)[1] == []
    assert torch.isfinite(crf.neg_log_likelihood(emissions, torch.zeros(2, 3, dtype=torch.long), mask))
    assert crf.marginals(emissions, mask)[1].sum() == 0


def test_numpy_decoding_gives_the_reference_paths_and_exact_marginals():
    """``CRF.decode_numpy`` (what tagging runs on a CPU) against ``viterbi`` and brute force: the same paths
    bit for bit, each chosen tag's marginal the sum over all sequences (to 1e-7: float64), and the float32
    reference ``marginals`` within its rounding; empty sentences and a batch without tokens too."""
    from mambaner_cli.model.modules.crf import FORBIDDEN

    for seed in range(4):
        crf = random_crf(seed)
        g = torch.Generator().manual_seed(seed)
        lengths = torch.tensor([4, 3, 1, 0, 2])
        emissions = torch.randn(5, 4, len(LABELS), generator=g) * 3
        mask = torch.arange(4)[None, :] < lengths[:, None]
        with torch.inference_mode():
            paths, confidences = crf.decode_numpy(emissions, mask)
            assert paths == crf.viterbi(emissions, mask)
            reference = crf.marginals(emissions, mask)
        for k, n in enumerate(lengths.tolist()):
            assert len(confidences[k]) == n
            if not n:
                continue
            scores = brute_force_scores(crf, emissions[k, :n].double(), n, FORBIDDEN)
            top = max(scores.values())
            total = sum(math.exp(s - top) for s in scores.values())
            for i, tag in enumerate(paths[k]):
                exact = sum(math.exp(s - top) for seq, s in scores.items() if seq[i] == tag) / total
                assert confidences[k][i] == pytest.approx(exact, abs=1e-7)
                assert confidences[k][i] == pytest.approx(float(reference[k, i, tag]), abs=1e-4)
    empty = torch.zeros(2, 0, len(LABELS))
    assert random_crf(0).decode_numpy(empty, torch.zeros(2, 0, dtype=torch.bool)) == ([[], []], [[], []])


def test_numpy_decoding_equals_the_reference_on_long_batches():
    for seed in range(5):
        crf = random_crf(seed)
        g = torch.Generator().manual_seed(100 + seed)
        lengths = torch.randint(0, 60, (17,), generator=g)
        lengths[0] = 60
        emissions = torch.randn(17, 60, len(LABELS), generator=g) * 3
        mask = torch.arange(60)[None, :] < lengths[:, None]
        with torch.inference_mode():
            paths, confidences = crf.decode_numpy(emissions, mask)
            assert paths == crf.viterbi(emissions, mask)
            reference = crf.marginals(emissions, mask)
        for k, path in enumerate(paths):
            expected = reference[k, torch.arange(len(path)), path].tolist() if path else []
            assert confidences[k] == pytest.approx(expected, abs=1e-4)
            assert valid(path)


def test_decode_uses_the_numpy_recursions_on_a_cpu(monkeypatch):
    """MambaTagger.decode on CPU tensors goes through ``decode_numpy``; the torch recursions stay for other
    devices (asserted by making the torch ones fail here)."""
    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.models.tagger import MambaTagger
    from mambaner_cli.model.modules.crf import CRF

    torch.manual_seed(0)
    model = MambaTagger(TaggerConfig(labels=LABELS, word_vocab_size=20, char_vocab_size=10, word_dim=8, char_dim=4,
                                     char_channels=6, case_dim=4, hidden_size=16, num_layers=1, state_size=4)).eval()
    ids = torch.randint(2, 20, (3, 5))
    inputs = {"word_ids": ids, "char_ids": torch.randint(2, 10, (3, 5, 4)), "case_ids": torch.randint(1, 5, (3, 5)),
                  "mask": torch.arange(5)[None, :] < torch.tensor([5, 3, 1])[:, None]}
    with torch.inference_mode():
        emissions = model.forward(**inputs, infer=True).float()
        expected = model.crf.decode_numpy(emissions, inputs["mask"])
    monkeypatch.setattr(CRF, "viterbi", lambda *a: pytest.fail("the torch Viterbi ran on a CPU"))
    monkeypatch.setattr(CRF, "marginals", lambda *a: pytest.fail("the torch marginals ran on a CPU"))
    with torch.inference_mode():
        assert model.decode(**inputs) == expected
