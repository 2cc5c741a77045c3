"""Tests for mambaner_cli.model.features: vocabularies, word normalisation, case ids, batch encoding."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread on a shared CPU


def test_vocabulary_build_encode_and_round_trip():
    from collections import Counter

    from mambaner_cli.model.features import Vocabulary

    vocab = Vocabulary.build(Counter({"cancer": 3, "tumour": 1, "aids": 3, "of": 2}), min_count=2)
    assert vocab.to_list() == ["<pad>", "<unk>", "aids", "cancer", "of"]  # by count, ties alphabetically
    assert len(vocab) == 5 and vocab.encode("cancer") == 3 and vocab.encode("tumour") == Vocabulary.UNK
    assert Vocabulary.build(["b", "a", "b"]).to_list() == ["<pad>", "<unk>", "b", "a"]
    again = Vocabulary.from_list(vocab.to_list())
    assert again.to_list() == vocab.to_list() and again.encode("of") == 4
    with pytest.raises(ValueError, match="start with"):
        Vocabulary.from_list(["cancer", "<pad>"])
    with pytest.raises(ValueError, match="repeats"):
        Vocabulary.from_list(["<pad>", "<unk>", "a", "a"])


def test_normalize_word_and_case_id():
    from mambaner_cli.model import features as f

    assert f.normalize_word("IL-6") == "il-0" and f.normalize_word("COVID19") == "covid00"
    cases = {
        "cancer": f.CASE_LOWER,
        "DNA": f.CASE_UPPER,
        "Crohn": f.CASE_TITLE,
        "mRNA": f.CASE_MIXED,
        "BRCA1": f.CASE_DIGIT,
        "1998": f.CASE_DIGIT,
        "(": f.CASE_PUNCT,
        "--": f.CASE_PUNCT,
        "+": f.CASE_PUNCT,
        "T-cell": f.CASE_TITLE,
        "α": f.CASE_LOWER,
        "": f.CASE_OTHER,
        "\u00b2\u00b3": f.CASE_DIGIT,
    }
    assert {word: f.case_id(word) for word in cases} == cases
    assert all(0 < f.case_id(w) < f.NUM_CASE_IDS for w in ["x", "X", "Xx", "x1", ".", "™", "\u0301"])


def test_encode_batch_pads_right_and_keeps_suffixes():
    from mambaner_cli.model.features import CASE_TITLE, Vocabulary, clip_word, encode_batch

    words = Vocabulary.build(["the", "il-0", "hepatitis"])
    chars = Vocabulary.build("abcdefghijklmnopqrstuvwxyz")
    batch = encode_batch(
        [["The", "IL-6", "hepatitis"], [], ["glomerulonephritis"]], words, chars, max_word_len=10
    )
    assert batch["word_ids"].shape == (3, 3) and batch["char_ids"].shape == (3, 3, 10)
    assert batch["mask"].tolist() == [[True, True, True], [False] * 3, [True, False, False]]
    assert batch["word_ids"][0].tolist() == [
        words.encode("the"),
        words.encode("il-0"),
        words.encode("hepatitis"),
    ]
    assert batch["word_ids"][2, 0] == Vocabulary.UNK and batch["case_ids"][0, 0] == CASE_TITLE
    assert batch["case_ids"][1].tolist() == [0, 0, 0] and batch["char_ids"][1].sum() == 0
    assert clip_word("glomerulonephritis", 10) == "glomeritis"
    assert batch["char_ids"][2, 0].tolist() == [chars.encode(c) for c in "glomeritis"]
    assert batch["char_ids"][0, 0, 0] == Vocabulary.UNK  # "T": characters keep their case
    empty = encode_batch([], words, chars, 20)
    assert empty["word_ids"].shape == (0, 1) and empty["char_ids"].shape == (0, 1, 1)


def test_encode_batch_memo_is_per_vocabulary_and_length():
    """Token encodings are memoised; a memo must never answer for other vocabularies or clip lengths."""
    from mambaner_cli.model import features as f

    words = f.Vocabulary.build(["cancer", "the"])
    lower, upper = f.Vocabulary.build("abcdefghijklmnopqrstuvwxyz"), f.Vocabulary.build("ZYXCANER")
    sentences = [["The", "cancer", "Cancer"], ["cancer"]]
    first = f.encode_batch(sentences, words, lower, 20)
    again = f.encode_batch(sentences, words, lower, 20)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert first["char_ids"][0, 1].tolist() == [lower.encode(c) for c in "cancer"]
    assert f.encode_batch(sentences, words, upper, 20)["char_ids"][0, 2].tolist() == \
        [upper.encode(c) for c in "Cancer"]
    assert f.encode_batch(sentences, words, lower, 3)["char_ids"][0, 1].tolist() == \
        [lower.encode(c) for c in "car"]
    other_words = f.Vocabulary.build(["the", "cancer"])
    assert f.encode_batch(sentences, other_words, lower, 20)["word_ids"][0].tolist() == \
        [other_words.encode("the"), other_words.encode("cancer")] * 1 + [other_words.encode("cancer")]
    f._token_memo(words, lower, 20).update({str(i): (1, 1, bytes(80), 0) for i in range(f._MEMO_SIZE + 1)})
    f.encode_batch([["cancer"]], words, lower, 20)
    assert len(f._token_memo(words, lower, 20)) == 1  # an outgrown memo starts afresh


def test_features_read_the_ascii_form_of_a_token():
    """The corpora are ASCII ("beta-thalassemia"): a token written with the letter gets the same word,
    character and case ids as the corpora's spelling of it, so the network sees what it was trained on."""
    from collections import Counter

    from mambaner_cli.model.features import Vocabulary, encode_batch, normalize_word

    words = Vocabulary.build(Counter({"beta": 2, "tnfalpha": 2, "thalassemia": 2, "sjogren": 2}), 1)
    chars = Vocabulary.build(Counter("betalphTNFSjogrnsi-'"), 1)
    written = [["β", "-", "thalassemia", "TNFα", "Sjögren", "’"]]
    spelled = [["beta", "-", "thalassemia", "TNFalpha", "Sjogren", "'"]]
    unicode_ids, ascii_ids = encode_batch(written, words, chars, 20), encode_batch(spelled, words, chars, 20)
    for key in ("word_ids", "char_ids", "case_ids", "mask"):
        assert torch.equal(unicode_ids[key], ascii_ids[key]), key
    assert normalize_word("IFN-γ2") == "ifn-gamma0"
