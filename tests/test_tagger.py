"""Tests for mambaner_cli.model.models.tagger: MambaTagger (shapes, loss, decoding, padding, training).

The wall time of the toy-corpus training is measured by benchmarks/bench_wallclock.py, not asserted here."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_config, valid

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread on a shared CPU


VOCAB_WORDS = [
    "the",
    "a",
    "patient",
    "patients",
    "with",
    "had",
    "severe",
    "acute",
    "chronic",
    "and",
    "of",
    "in",
    "was",
    "were",
    "treated",
    "for",
    "developed",
    "history",
    "lung",
    "skin",
    "liver",
    "no",
    "signs",
    "hepatitis",
    "arthritis",
    "dermatitis",
    "nephritis",
    "colitis",
    "melanoma",
    "carcinoma",
    "lymphoma",
    "glioma",
    "myeloma",
    "sarcoma",
    "biopsy",
    "showed",
    "after",
    "surgery",
    "improved",
]


def tagger_inputs(sentences, config):
    from mambaner_cli.model.features import Vocabulary, encode_batch

    words = Vocabulary.build(VOCAB_WORDS)
    chars = Vocabulary.build("abcdefghijklmnopqrstuvwxyz")
    assert len(words) <= config.word_vocab_size and len(chars) <= config.char_vocab_size
    return encode_batch(sentences, words, chars, config.max_word_len)


def test_tagger_shapes_loss_and_decode():
    from mambaner_cli.model.models.tagger import MambaTagger

    for use_crf in (True, False):
        torch.manual_seed(0)
        config = tiny_config(use_crf=use_crf)
        model = MambaTagger(config)
        batch = tagger_inputs([["the", "patient", "had", "hepatitis"], ["melanoma"]], config)
        emissions = model(**batch)
        assert emissions.shape == (2, 4, 3)
        loss = model.loss(**batch, tags=torch.tensor([[0, 0, 0, 1], [1, 0, 0, 0]]))
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert model.forward_mamba.layers[0].mixer.A_log.grad is not None
        model.eval()
        tags, confidences = model.decode(**batch)
        assert [len(t) for t in tags] == [4, 1] and [len(c) for c in confidences] == [4, 1]
        assert all(valid(t, config.labels) for t in tags)
        assert all(0.0 < c <= 1.0 for row in confidences for c in row)
    assert "forward_mamba.layers.1.mixer.A_log" in model.state_dict()
    assert not any(key.startswith("crf.allowed") for key in MambaTagger(tiny_config()).state_dict())


def test_tagger_state_dict_round_trip():
    from mambaner_cli.model.models.tagger import MambaTagger

    config = tiny_config()
    torch.manual_seed(3)
    trained = MambaTagger(config).eval()
    torch.manual_seed(4)
    fresh = MambaTagger(type(config).from_dict(config.to_dict())).eval()
    fresh.load_state_dict(trained.state_dict())  # strict: same keys, no derived buffers
    batch = tagger_inputs([["the", "patient", "had", "hepatitis"]], config)
    assert fresh.decode(**batch) == trained.decode(**batch)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_tagger_is_padding_invariant(bidirectional):
    from mambaner_cli.model.models.tagger import MambaTagger

    torch.manual_seed(1)
    config = tiny_config(bidirectional=bidirectional)
    model = MambaTagger(config).eval()
    short = ["the", "patient", "had", "hepatitis"]
    long = [
        "patients",
        "with",
        "chronic",
        "arthritis",
        "and",
        "skin",
        "melanoma",
        "were",
        "treated",
        "for",
        "colitis",
        "after",
        "surgery",
    ]
    alone = tagger_inputs([short], config)
    batched = tagger_inputs([long, short, ["no"]], config)
    with torch.no_grad():
        for infer in (False, True):  # the training paths and the tagging paths
            torch.testing.assert_close(model(**batched, infer=infer)[1, :4], model(**alone, infer=infer)[0],
                                       rtol=1e-5, atol=1e-5)
    tags_alone, conf_alone = model.decode(**alone)
    tags_batched, conf_batched = model.decode(**batched)
    assert tags_batched[1] == tags_alone[0]
    assert conf_batched[1] == pytest.approx(conf_alone[0], abs=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_tagging_paths_equal_the_training_paths(bidirectional):
    """``infer=True`` (what ``decode`` runs: character look-ups, the stacks' ``infer``) gives the emissions
    of the differentiable paths."""
    from mambaner_cli.model.models.tagger import MambaTagger

    torch.manual_seed(5)
    config = tiny_config(bidirectional=bidirectional)
    model = MambaTagger(config).eval()
    batch = tagger_inputs([["patients", "with", "chronic", "arthritis"], ["the", "patient"], ["no"]], config)
    expected = model(**batch)
    assert expected.requires_grad
    with torch.no_grad():
        got = model(**batch, infer=True)
    mask = batch["mask"].bool()
    torch.testing.assert_close(got[mask], expected.detach()[mask], rtol=1e-5, atol=1e-5)


def test_backward_direction_sees_right_context():
    from mambaner_cli.model.models.tagger import MambaTagger

    sentence = ["the", "patient", "had", "severe", "acute", "hepatitis", "and", "lung", "carcinoma"]
    changed = list(sentence)
    changed[6] = "with"
    for bidirectional in (True, False):
        torch.manual_seed(2)
        config = tiny_config(bidirectional=bidirectional)
        model = MambaTagger(config).eval()
        with torch.no_grad():
            before = model(**tagger_inputs([sentence], config))[0]
            after = model(**tagger_inputs([changed], config))[0]
        earlier_changed = (after[:6] - before[:6]).abs().max() > 1e-4
        assert bool(earlier_changed) == bidirectional
        assert (after[6] - before[6]).abs().max() > 1e-4


TRAIN_SENTENCES = [
    ("the patient had hepatitis", "O O O B"),
    ("patients with chronic arthritis were treated", "O O B I O O"),
    ("a history of melanoma", "O O O B"),
    ("lung carcinoma was treated with surgery", "B I O O O O"),
    ("no signs of dermatitis", "O O O B"),
    ("the biopsy showed lymphoma", "O O O B"),
    ("acute nephritis developed after surgery", "B I O O O"),
    ("patients with glioma improved", "O O B O"),
    ("skin melanoma and colitis", "B I O B"),
    ("the patient was treated for myeloma", "O O O O O B"),
    ("severe colitis improved after surgery", "O B O O O"),
    ("a patient with sarcoma of the liver", "O O O B O O O"),
    ("chronic hepatitis and liver carcinoma", "B I O B I"),
    ("the patients developed arthritis", "O O O B"),
    ("history of acute dermatitis", "O O B I"),
    ("no history of lymphoma or glioma", "O O O B O B"),
    ("the biopsy showed carcinoma in the lung", "O O O B O O O"),
    ("patients were treated for nephritis", "O O O O B"),
    ("liver sarcoma was treated", "B I O O"),
    ("the patient improved", "O O O"),
]


def test_tagger_overfits_a_toy_disease_corpus():
    from mambaner_cli.model.models.tagger import MambaTagger

    torch.manual_seed(0)
    config = tiny_config(hidden_size=32, num_layers=1, dropout=0.0, word_vocab_size=len(VOCAB_WORDS) + 2)
    model = MambaTagger(config)
    names = {"O": "O", "B": "B-Disease", "I": "I-Disease"}
    sentences = [text.split() for text, _ in TRAIN_SENTENCES]
    gold = [[config.labels.index(names[t]) for t in tags.split()] for _, tags in TRAIN_SENTENCES]
    assert all(len(s) == len(g) for s, g in zip(sentences, gold))
    batch = tagger_inputs(sentences, config)
    tags = torch.zeros_like(batch["word_ids"])
    for i, row in enumerate(gold):
        tags[i, : len(row)] = torch.tensor(row)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)
    for _ in range(40):  # 40 full-batch steps: the 20 sentences seen 40 times
        model.train()
        loss = model.loss(**batch, tags=tags)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    predicted, _ = model.decode(**batch)

    def spans(rows):
        return {(i, j, k) for i, row in enumerate(rows) for j, k in _entity_spans(row)}

    flat_gold = [t for row in gold for t in row]
    flat_pred = [t for row in predicted for t in row]
    accuracy = sum(a == b for a, b in zip(flat_gold, flat_pred)) / len(flat_gold)
    true, found = spans(gold), spans(predicted)
    f1 = 2 * len(true & found) / (len(true) + len(found))
    assert accuracy >= 0.9 and f1 >= 0.9, (accuracy, f1)


def _entity_spans(tag_ids: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each B-Disease I-Disease* run (tag ids of tiny_config's labels)."""
    spans, start = [], None
    for i, tag in enumerate([*tag_ids, 0]):
        if start is not None and tag != 2:
            spans.append((start, i))
            start = None
        if tag == 1:
            start = i
    return spans
