"""Tests for mambaner_cli.model.modules.embeddings: TokenFeatures (words, characters, case)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread on a shared CPU


def test_token_features_ignore_character_padding():
    from mambaner_cli.model.modules.embeddings import TokenFeatures

    torch.manual_seed(0)
    features = TokenFeatures(tiny_config()).eval()
    word_ids, case_ids = torch.tensor([[5, 6]]), torch.tensor([[1, 3]])
    narrow = torch.tensor([[[3, 4, 5], [7, 0, 0]]])
    wide = torch.cat([narrow, torch.zeros(1, 2, 6, dtype=torch.long)], dim=2)
    for infer in (False, True):  # the convolution (training) and the look-ups (tagging)
        with torch.set_grad_enabled(not infer):
            out = features(word_ids, narrow, case_ids, infer=infer)
            assert out.shape == (1, 2, 24)
            torch.testing.assert_close(features(word_ids, wide, case_ids, infer=infer), out)
            empty = features(word_ids, torch.zeros(1, 2, 3, dtype=torch.long), case_ids, infer=infer)
            assert torch.isfinite(empty).all()


@pytest.mark.parametrize("kernel,bias", [(3, True), (2, True), (4, False), (5, True), (1, True)])
def test_character_lookup_equals_the_convolution(kernel, bias):
    """Tagging computes the character CNN by table look-ups at real characters; training convolves."""
    from mambaner_cli.model.modules.embeddings import TokenFeatures

    torch.manual_seed(kernel)
    features = TokenFeatures(tiny_config(char_kernel=kernel)).eval()
    if not bias:
        features.char_cnn.bias = None
    with torch.no_grad():
        features.chars.weight.normal_()  # the padding row too: real characters next to padding read it
    g = torch.Generator().manual_seed(kernel)
    char_ids = torch.randint(1, 40, (3, 5, 7), generator=g)  # b l c
    lengths = torch.randint(0, 8, (3, 5), generator=g)  # characters per word, some words empty
    char_ids = char_ids.masked_fill(torch.arange(7)[None, None, :] >= lengths[:, :, None], 0)
    char_ids[0, 0, 3] = 0  # a hole inside a word: the convolution reads it as padding, so must the lookup
    convolved = features.char_vectors(char_ids)  # training: the convolution
    assert convolved.requires_grad
    with torch.inference_mode():
        looked_up = features.char_vectors(char_ids, infer=True)
        empty = features.char_vectors(torch.zeros(2, 3, 4, dtype=torch.long), infer=True)
        # the path is chosen by ``infer``, not by autograd being off: without it, still the convolution
        torch.testing.assert_close(features.char_vectors(char_ids), convolved.detach(), rtol=0, atol=0)
    assert looked_up.shape == convolved.shape == (3, 5, features.char_cnn.out_channels)
    torch.testing.assert_close(looked_up, convolved.detach(), rtol=1e-5, atol=1e-5)
    assert (looked_up[lengths == 0] == 0).all() and (empty == 0).all()


def test_the_lookup_path_is_taken_only_when_asked(monkeypatch):
    from mambaner_cli.model.modules.embeddings import TokenFeatures

    torch.manual_seed(0)
    features = TokenFeatures(tiny_config()).eval()
    calls = []
    lookup = features._char_vectors_by_lookup
    monkeypatch.setattr(features, "_char_vectors_by_lookup", lambda flat: calls.append(1) or lookup(flat))
    word_ids, case_ids, char_ids = torch.tensor([[5, 6]]), torch.tensor([[1, 3]]), torch.tensor([[[3, 4], [7, 0]]])
    with torch.no_grad():
        features(word_ids, char_ids, case_ids)
    assert not calls
    features(word_ids, char_ids, case_ids, infer=True)
    assert len(calls) == 1
