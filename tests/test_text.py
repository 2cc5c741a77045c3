"""Sentence splitting and tokenization: IOB token convention, abbreviations, offsets, numbering."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mambaner_cli.document import Document, Passage, make_document
from mambaner_cli.text.sentences import (
    RuleSplitter,
    SentenceSplitter,
    default_splitter,
    segment_document,
    split_passage,
)
from mambaner_cli.text.tokens import token_spans, tokenize


def sentences_of(text: str) -> list[str]:
    return [text[start:end] for start, end in default_splitter().split(text)]


def check_spans(text: str, spans: list[tuple[int, int]]) -> None:
    """Spans are stripped, in order, and cover every non-space character, with only space between."""
    position = 0
    for start, end in spans:
        assert position <= start < end <= len(text)
        assert text[position:start].strip() == ""
        assert not text[start].isspace() and not text[end - 1].isspace()
        position = end
    assert text[position:].strip() == ""
    if text.strip():
        assert spans


# --- tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # letters and digits stay together; every other character is a token of its own
    ("Loss of BRCA2, a tumour-suppressor gene.",
     ["Loss", "of", "BRCA2", ",", "a", "tumour", "-", "suppressor", "gene", "."]),
    ("a 2p13-p16 deletion (n=12)",
     ["a", "2p13", "-", "p16", "deletion", "(", "n", "=", "12", ")"]),
    ("1.5 mg/kg i.p.", ["1", ".", "5", "mg", "/", "kg", "i", ".", "p", "."]),
    ("Huntington's disease", ["Huntington", "'", "s", "disease"]),
    ("mean +/- SD, P<0.001", ["mean", "+", "/", "-", "SD", ",", "P", "<", "0", ".", "001"]),
    ("[3H]thymidine and Ca(2+)", ["[", "3H", "]", "thymidine", "and", "Ca", "(", "2", "+", ")"]),
    ("G6PD-deficient; IVS8+2T>C", ["G6PD", "-", "deficient", ";", "IVS8", "+", "2T", ">", "C"]),
    ("x_y", ["x", "_", "y"]),
])
def test_tokens_follow_the_iob_convention(text: str, expected: list[str]) -> None:
    assert [token.text for token in tokenize(text)] == expected


def test_token_offsets_are_shifted_by_the_offset() -> None:
    text = "  Hereditary ataxia\t(type 2)."
    tokens = tokenize(text, offset=100)
    assert [token.text for token in tokens] == ["Hereditary", "ataxia", "(", "type", "2", ")", "."]
    for token in tokens:
        assert text[token.start - 100:token.end - 100] == token.text
    assert token_spans(text) == [(token.start - 100, token.end - 100) for token in tokens]


def test_non_ascii_letters_stay_in_their_word() -> None:
    text = "Sjögren’s syndrome, β-catenin ≥ 5 µg; TNFα; Sjo\u0308gren; naïve\u00a0cells"
    tokens = tokenize(text)
    assert [token.text for token in tokens] == [
        "Sjögren", "’", "s", "syndrome", ",", "β", "-", "catenin", "≥", "5", "µg", ";", "TNFα", ";",
        "Sjo\u0308gren", ";", "naïve", "cells"]
    for token in tokens:
        assert text[token.start:token.end] == token.text


def test_invisible_joiners_stay_inside_a_word_and_nowhere_else() -> None:
    text = "glio\u200bblastoma and hypo\u00adthyroidism end\u200b of \u200b x"
    assert [token.text for token in tokenize(text)] == [
        "glio\u200bblastoma", "and", "hypo\u00adthyroidism", "end", "\u200b", "of", "\u200b", "x"]


@pytest.mark.parametrize(("token", "form"), [
    ("β", "beta"), ("TNFα", "TNFalpha"), ("Δ", "Delta"), ("ς", "sigma"), ("ά", "alpha"), ("µg", "mug"),
    ("Sjögren", "Sjogren"), ("Sjo\u0308gren", "Sjogren"), ("naïve", "naive"), ("ﬁbrosis", "fibrosis"),
    ("–", "-"), ("\u2212", "-"), ("’", "'"), ("”", '"'), ("″", "''"), ("glio\u200bblastoma", "glioblastoma"),
    ("hypo\u00adthyroidism", "hypothyroidism"),
    ("≥", "≥"), ("漢字", "漢字"), ("\u200b", "\u200b"),  # no ASCII form: as it is, never empty
    ("IL-6", "IL-6"), ("beta", "beta"),  # ASCII: unchanged
])
def test_ascii_form_spells_tokens_as_the_corpora_do(token: str, form: str) -> None:
    from mambaner_cli.text.ascii import ascii_form

    assert ascii_form(token) == form


def test_tokens_cover_every_non_space_character() -> None:
    generator = random.Random(7)
    alphabet = "aZ9 .,()-/'\"é\u0301β\n\t_\u200b\u00ad"
    for _ in range(200):
        text = "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 40)))
        tokens = tokenize(text)
        assert "".join(token.text for token in tokens) == "".join(text.split())
        for token in tokens:
            assert text[token.start:token.end] == token.text and not token.text[0].isspace()


def test_ascii_fast_path_tokenizes_as_the_general_rule() -> None:
    """ASCII text takes a simpler pattern; it must cut every ASCII text exactly as the Unicode rule does."""
    from mambaner_cli.text import tokens as module

    generator = random.Random(5)
    alphabet = [chr(c) for c in range(128)]
    for _ in range(500):
        text = "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 60)))
        assert text.isascii()
        expected = [m.span() for m in module._TOKEN.finditer(text)]
        assert token_spans(text) == expected
        assert [(t.start, t.end) for t in tokenize(text)] == expected
    # One non-ASCII character anywhere sends the whole text to the general rule.
    assert [t.text for t in tokenize("Sjo\u0308gren syndrome_x")] == ["Sjo\u0308gren", "syndrome", "_", "x"]


# --- sentences ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Carriers (e.g. those with two alleles) were included in the study.",
    "This was first reported by Smith et al. in a large family.",
    "The mutation was described by Smith et al. (1992) in two families.",
    "Mice vs. rats showed no difference in tumour incidence.",
    "As shown in Fig. 2, the levels of the enzyme rose, i.e. doubled.",
    "The dose was approx. 5 mg per day for ca. 30 days.",
    "Patient No. 3 had a severe ataxia.",
    "Dr. Jones examined all probands.",
    "They received 1.5 mg of the drug and p < 0.05 was significant.",
    "The pedigree was drawn by Wolff, R. R. and Lee, J. K. in the clinic.",
    "Rats were given 5 mg/kg i.p. twice daily for two weeks.",
    "Escherichia coli and E. coli K-12 strains were compared.",
    "The values (mean 3. 5, SD 1. 2) were higher than in controls.",
    "Levels were low (see above. The next section) in all cases.",
])
def test_abbreviations_and_decimals_are_not_split(text: str) -> None:
    assert sentences_of(text) == [text]


@pytest.mark.parametrize(("text", "expected"), [
    ("The effect was significant (p < 0.05). Further work is needed.",
     ["The effect was significant (p < 0.05).", "Further work is needed."]),
    ("The gene was mapped by Smith et al. The protein is large.",
     ["The gene was mapped by Smith et al.", "The protein is large."]),
    ("Patients lacked vitamin D. The deficiency was treated.",
     ["Patients lacked vitamin D.", "The deficiency was treated."]),
    ("Protein levels fell. mRNA levels rose. p53 was mutated. beta-Catenin was stable.",
     ["Protein levels fell.", "mRNA levels rose.", "p53 was mutated.", "beta-Catenin was stable."]),
    ("Is the disorder hereditary? We studied ten families! Most were affected.",
     ["Is the disorder hereditary?", "We studied ten families!", "Most were affected."]),
    ("The cohort was followed until 1990. 25 patients died.",
     ["The cohort was followed until 1990.", "25 patients died."]),
    ('It was named "the ataxia gene." The name stuck.',
     ['It was named "the ataxia gene."', "The name stuck."]),
    ('We call it " familial ataxia. " We conclude that it is rare.',
     ['We call it " familial ataxia.', '" We conclude that it is rare.']),
    ("Rats were dosed 5 mg/kg i.v. Controls got saline.",
     ["Rats were dosed 5 mg/kg i.v.", "Controls got saline."]),
    ("No mutation was found. (ABSTRACT TRUNCATED AT 250 WORDS)",
     ["No mutation was found.", "(ABSTRACT TRUNCATED AT 250 WORDS)"]),
    ("  Leading space.  Trailing space.  ", ["Leading space.", "Trailing space."]),
    ("BACKGROUND\n\nNo punctuation before the blank line", ["BACKGROUND", "No punctuation before the blank line"]),
    ("A line\nwrapped in the middle. Next one.", ["A line\nwrapped in the middle.", "Next one."]),
])
def test_real_sentence_ends_are_split(text: str, expected: list[str]) -> None:
    assert sentences_of(text) == expected


@pytest.mark.parametrize("text", ["", "   \n\t ", "no final mark", "....", "?!", "a.b.c", "(((x. Y"])
def test_degenerate_texts_keep_the_span_invariants(text: str) -> None:
    check_spans(text, default_splitter().split(text))


def test_random_texts_keep_the_span_invariants_and_never_cut_a_token() -> None:
    generator = random.Random(11)
    words = ["The", "gene", "e.g.", "et", "al.", "Fig.", "2.", "1.5", "mRNA", "p53", "(", ")", '"', "?",
             "!", ".", "A.", "vs.", "i.p.", "mg.", "\n\n", "\n", "  ", "β.", "No.", "3"]
    for _ in range(300):
        text = " ".join(generator.choice(words) for _ in range(generator.randint(0, 30)))
        spans = default_splitter().split(text)
        check_spans(text, spans)
        whole = token_spans(text)
        pieces = [(start + a, start + b) for start, end in spans for a, b in token_spans(text[start:end])]
        assert pieces == whole  # every token lies inside one sentence


def test_long_runs_of_marks_stay_fast() -> None:
    """Their wall time (no backtracking blow-up) is measured by benchmarks/bench_guards.py."""
    for text in ("." * 50_000, ".?" * 25_000 + '"' * 10_000, "a." * 50_000, "x" * 100_000):
        check_spans(text, default_splitter().split(text))


def test_splitting_is_fast() -> None:
    text = " ".join(
        f"In 1999 we studied {n} families with e.g. ataxia (p < 0.05; Fig. {n}). mRNA levels fell by 1.5-fold."
        for n in range(1000))
    splitter = default_splitter()
    assert len(splitter.split(text)) == 2000  # sentences per second: benchmarks/bench_guards.py


# --- passages and documents ---------------------------------------------------------------------


def test_split_passage_uses_document_offsets() -> None:
    title = "Ataxia in a large kindred."
    abstract = "We studied 12 patients (e.g. two sibs). Mutations in ATM were found. Sjögren’s syndrome was absent."
    doc = make_document("42", title, abstract)
    passage = doc.passages[1]
    assert passage.offset == len(title) + 1
    sentences = split_passage(passage, start_index=5)
    assert [sentence.index for sentence in sentences] == [5, 6, 7]
    assert [sentence.text for sentence in sentences] == [
        "We studied 12 patients (e.g. two sibs).", "Mutations in ATM were found.",
        "Sjögren’s syndrome was absent."]
    text = doc.text
    for sentence in sentences:
        assert sentence.text == text[sentence.start:sentence.end]
        assert passage.offset <= sentence.start < sentence.end <= passage.end
        assert sentence.tokens and sentence.tags == []
        for token in sentence.tokens:
            assert token.text == text[token.start:token.end]
            assert sentence.start <= token.start < token.end <= sentence.end
    assert [token.text for token in sentences[2].tokens] == ["Sjögren", "’", "s", "syndrome", "was", "absent", "."]


def test_segment_document_numbers_sentences_across_passages() -> None:
    doc = make_document("7", "Ataxia? A case report.", "First finding. Second finding. Third finding.")
    assert segment_document(doc) is doc
    assert [len(passage.sentences) for passage in doc.passages] == [2, 3]
    assert [sentence.index for sentence in doc.sentences] == [0, 1, 2, 3, 4]
    assert [sentence.text for sentence in doc.sentences] == [
        "Ataxia?", "A case report.", "First finding.", "Second finding.", "Third finding."]
    text = doc.text
    for passage in doc.passages:
        for sentence in passage.sentences:
            assert passage.offset <= sentence.start and sentence.end <= passage.end  # never crosses
            assert sentence.text == text[sentence.start:sentence.end]
            assert all(token.text == text[token.start:token.end] for token in sentence.tokens)


def test_a_sentence_never_crosses_passages_even_without_a_final_mark() -> None:
    doc = Document("9", [Passage("title", 0, "Title without a period"),
                         Passage("abstract", 30, "lower-case start of the abstract. Second.")])
    segment_document(doc)
    assert [sentence.text for sentence in doc.sentences] == [
        "Title without a period", "lower-case start of the abstract.", "Second."]
    assert [sentence.index for sentence in doc.sentences] == [0, 1, 2]
    assert doc.sentences[1].start == 30


def test_empty_passages_have_no_sentences() -> None:
    doc = segment_document(make_document("1", "", None))
    assert doc.sentences == []
    doc = segment_document(make_document("2", "  ", "Only the abstract."))
    assert [(sentence.index, sentence.text) for sentence in doc.sentences] == [(0, "Only the abstract.")]


def test_a_custom_splitter_can_be_passed() -> None:
    class WholePassage(SentenceSplitter):
        def split(self, text: str) -> list[tuple[int, int]]:
            stripped = text.strip()
            start = text.find(stripped[:1]) if stripped else 0
            return [(start, start + len(stripped))] if stripped else []

    doc = segment_document(make_document("3", "One. Two.", "Three. Four."), WholePassage())
    assert [sentence.text for sentence in doc.sentences] == ["One. Two.", "Three. Four."]


# --- against the benchmark sentences ------------------------------------------------------------


def _data_dir() -> Path:
    if os.environ.get("MAMBANER_DATA"):
        return Path(os.environ["MAMBANER_DATA"])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.mark.parametrize(("corpus", "minimum_f1"), [("ncbi", 0.99), ("bc5cdr", 0.99)])
def test_boundaries_and_tokens_match_the_iob_devel_sentences(corpus: str, minimum_f1: float) -> None:
    from benchmarks.splitter_eval import CORPUS_FILES, load_gold, score

    root = _data_dir()
    if not all((root / name).is_file() for name in CORPUS_FILES[corpus]["devel"]):
        pytest.skip(f"benchmark corpora not found under {root} (set MAMBANER_DATA)")
    result = score(RuleSplitter().split, load_gold(root, corpus, "devel"))
    assert result.f1 >= minimum_f1, (result.precision, result.recall)
    assert result.token_agreement >= 0.999
    assert result.cuts_in_tokens == 0
