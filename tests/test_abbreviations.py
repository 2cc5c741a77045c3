"""The document-level rule: a defined short form takes the type of its long form's mention."""

from __future__ import annotations

import pytest

from mambaner_cli.document import make_document
from mambaner_cli.runtime.abbreviations import definitions, propagate_abbreviations
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.pipeline import tag_chunk
from mambaner_cli.runtime.run import TypeFilter
from tests.tiny_models import write_tiny_model

# What a sentence-at-a-time network might say of each word, and how sure it is.
NETWORK = {"nitroglycerin": ("B-Chemical", 0.9), "angina": ("B-Disease", 0.8), "NTG": ("B-Disease", 0.3),
           "folic": ("B-Chemical", 0.9), "acid": ("I-Chemical", 0.9), "Fanconi": ("B-Disease", 0.9),
           "anaemia": ("I-Disease", 0.9), "BMI": ("B-Disease", 0.4)}

TEXT = ("Patients received nitroglycerin (NTG) for angina. Headache followed NTG, and NTG-induced hypotension "
        "was rare. The folic acid (FA) arm was small. FA mattered with Fanconi anaemia (FA) in mind. "
        "The body mass index (BMI) and BMI rose.")


class WordTagger:
    """Tags each word as :data:`NETWORK` says; its document step is the rule under test."""

    name = label = "words"
    convention = None
    num_parameters = 0
    labels = ("O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease")

    def tag(self, sentences, batch_size=32):
        return [([NETWORK.get(w, ("O", 1.0))[0] for w in s], [NETWORK.get(w, ("O", 1.0))[1] for w in s])
                for s in sentences]

    def finish_document(self, text, sentences, scores):
        propagate_abbreviations(text, sentences, scores)


def mentions(doc):
    for span in doc.annotations:
        assert doc.text[span.start:span.end] == span.text  # offsets are sacred
    return [(span.text, span.label, span.start, span.score) for span in doc.annotations]


def test_definitions_give_the_offsets_of_long_and_short_form():
    text = "Patients given nitroglycerin (NTG) had less angina than with isosorbide dinitrate (ISDN)."
    found = [(text[a:b], text[c:d]) for a, b, c, d in definitions(text)]
    assert found == [("nitroglycerin", "NTG"), ("isosorbide dinitrate", "ISDN")]
    assert definitions("an unbalanced ( bracket (NTG is not a definition") == []
    assert definitions("no bracket at all") == []


def test_short_forms_take_the_type_and_confidence_of_their_long_form():
    doc = make_document("1", TEXT, None)
    tag_chunk([doc], WordTagger(), batch_size=8)
    found = mentions(doc)
    ntg = [(label, score) for text, label, _, score in found if text == "NTG"]
    # "(NTG)" and "followed NTG," become chemicals with nitroglycerin's confidence; "NTG-induced" is part of a
    # bigger word and keeps the network's reading
    assert ntg == [("Chemical", 0.9), ("Chemical", 0.9), ("Disease", 0.3)]
    assert TEXT.index("NTG-induced") in [start for text, label, start, _ in found if label == "Disease"]
    # FA is defined twice in different words: left to the network (which tagged it nowhere)
    assert "FA" not in [text for text, *_ in found]
    assert ("folic acid", "Chemical") in [(text, label) for text, label, *_ in found]
    # the long form of BMI is no mention: the network's reading of the short form stands
    assert [(label, score) for text, label, _, score in found if text == "BMI"] == [("Disease", 0.4)] * 2


def test_the_type_filter_runs_after_the_rule():
    """--types Disease keeps what an unfiltered run calls a disease: NTG is a chemical here, so it goes."""
    doc = make_document("1", TEXT, None)
    tag_chunk([doc], TypeFilter(WordTagger(), ("Disease",)), batch_size=8)
    assert [text for text, *_ in mentions(doc)] == ["angina", "NTG", "Fanconi anaemia", "BMI", "BMI"]


def test_without_the_rule_the_network_reading_stands():
    tagger = WordTagger()
    tagger.finish_document = lambda text, sentences, scores: None
    doc = make_document("1", TEXT, None)
    tag_chunk([doc], tagger, batch_size=8)
    assert [label for text, label, *_ in mentions(doc) if text == "NTG"] == ["Disease"] * 3


@pytest.mark.parametrize("rules", [True, False])
def test_a_loaded_model_runs_the_rule_unless_network_only(tmp_path, rules):
    model_dir = write_tiny_model(tmp_path / "tiny")
    assert load_tagger(model_dir, device="cpu", rules=rules).abbreviations is rules
