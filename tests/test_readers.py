"""Input readers: PubMed XML, plain text, PubTator, BioC, and the registry that picks among them."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
from pathlib import Path

import pytest

from mambaner_cli.document import Document
from mambaner_cli.errors import InputError, MambanerError, ReadError
from mambaner_cli.formats import INPUT_FORMATS
from mambaner_cli.readers import (
    READERS,
    bioc,
    detect_format,
    expand_inputs,
    iter_documents,
    pubmed_xml,
    pubtator,
    text,
)
from mambaner_cli.readers._xml import iter_records

FIXTURES = Path(__file__).parent / "fixtures" / "readers"
EFETCH = FIXTURES / "efetch.xml"
DATA = Path(os.environ.get("MAMBANER_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

HEADER = (b'<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
          b'1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n')


def article(pmid: str | None, title: str, abstract: str = "") -> str:
    pmid_xml = f"<PMID Version='1'>{pmid}</PMID>" if pmid else ""
    abstract_xml = f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract>" if abstract else ""
    return (f"<PubmedArticle>\n<MedlineCitation>{pmid_xml}\n<Article><ArticleTitle>{title}</ArticleTitle>"
            f"{abstract_xml}</Article>\n</MedlineCitation>\n</PubmedArticle>\n")


def pubmed_file(*articles: str) -> bytes:
    return HEADER + ("<PubmedArticleSet>\n" + "".join(articles) + "</PubmedArticleSet>\n").encode()


def read_all(module, data: bytes, source: str = "in", **options) -> list[Document | ReadError]:
    return list(module.read(io.BytesIO(data), source, **options))


def check_spans(document: Document) -> None:
    for span in document.annotations:
        assert span.text == document.text[span.start:span.end]


# --- PubMed XML ---------------------------------------------------------------------------------------

def test_pubmed_efetch_fixture():
    docs = {doc.id: doc for doc in read_all(pubmed_xml, EFETCH.read_bytes(), str(EFETCH))}
    assert list(docs) == ["90000001", "90000002", "90000003", "90000004", "90000005"]  # DeleteCitation gone

    structured = docs["90000001"]
    assert structured.source == str(EFETCH)
    title, abstract = structured.passages
    assert (title.type, title.offset) == ("title", 0)
    assert title.text == "Hereditary HFE haemochromatosis and liver fibrosis."
    assert (abstract.type, abstract.offset) == ("abstract", len(title.text) + 1)
    assert abstract.text == (
        "BACKGROUND: Iron overload from HFE C282Y homozygosity may cause cirrhosis. "
        "METHODS: We measured ferritin (\u03bcg/L) and Fe3+ in 40 patients. "
        "RESULTS: Serum CO2 was normal; fibrosis was seen in 12 (30%). "
        "CONCLUSIONS: Early phlebotomy prevents liver disease.")  # no CopyrightInformation
    sections = json.loads(abstract.infons["sections"])
    assert [label for label, _, _ in sections] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    for label, start, end in sections:
        assert structured.text[start:end].startswith(label + ": ")
    assert sections[-1][2] == abstract.end

    assert [p.type for p in docs["90000002"].passages] == ["title"]  # no abstract
    assert docs["90000003"].passages[1].text == "The effect size d=0.4 was modest in obese and lean subjects."
    assert "sections" not in docs["90000003"].passages[1].infons
    assert docs["90000004"].passages[0].text == "Maladie de Parkinson chez le sujet âgé."  # VernacularTitle
    book = docs["90000005"]
    assert [p.text for p in book.passages] == [
        "Huntington Disease", "CLINICAL CHARACTERISTICS: Huntington disease is a progressive disorder."]


def test_pubmed_article_without_pmid_is_an_error_and_reading_goes_on():
    data = pubmed_file(article("1", "First."), article(None, "Lost."), article("3", "Third."))
    first, error, third = read_all(pubmed_xml, data, "set.xml")
    assert (first.id, third.id) == ("1", "3")
    assert isinstance(error, ReadError) and "PMID" in error.message
    assert error.line == data.decode().splitlines().index("<PubmedArticle>", 7) + 1
    assert str(error).startswith(f"set.xml:{error.line}:")


def test_pubmed_truncated_file_yields_the_documents_before_the_cut():
    data = pubmed_file(*(article(str(n), f"Title {n}.", "Text.") for n in range(1, 5)))
    cut = data[:data.index(b"Title 3")]
    reader = pubmed_xml.read(io.BytesIO(cut), "cut.xml")
    assert [doc.id for doc in itertools.islice(reader, 2)] == ["1", "2"]
    with pytest.raises(InputError) as raised:
        next(reader)
    assert raised.value.error.source == "cut.xml" and raised.value.error.line is not None


def test_pubmed_syntax_error_mid_file():
    data = pubmed_file(article("1", "Good."), article("2", "Bad</b>."), article("3", "Never."))
    reader = pubmed_xml.read(io.BytesIO(data), "bad.xml")
    assert next(reader).id == "1"
    with pytest.raises(InputError) as raised:
        next(reader)
    assert raised.value.error.line == data.count(b"\n", 0, data.index(b"Bad</b>")) + 1


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"  \n", "empty file"),
    (b"PMID- 12345\nTI  - Not XML at all.\n", "not well-formed XML"),
    ((FIXTURES / "sample.bioc.xml").read_bytes(), "root element is <collection>"),
    (b"<html><body>hi</body></html>", "root element is <html>"),
])
def test_pubmed_unreadable_files(data, message):
    with pytest.raises(InputError, match=message):
        read_all(pubmed_xml, data)


def test_pubmed_parser_never_reads_external_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-7f3a")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY fromdtd SYSTEM "{secret.as_uri()}">')
    data = (f'<?xml version="1.0"?>\n<!DOCTYPE PubmedArticleSet SYSTEM "{dtd.as_uri()}" [\n'
            f'<!ENTITY passwd SYSTEM "file:///etc/passwd">\n<!ENTITY secret SYSTEM "{secret.as_uri()}">\n'
            '<!ENTITY inner "INNER">\n]>\n<PubmedArticleSet>\n'
            + article("1", "Leak passwd &passwd; secret &secret; dtd &fromdtd; inner &inner; end.",
                      "x &secret; y")
            + "</PubmedArticleSet>\n").encode()
    (doc,) = read_all(pubmed_xml, data)
    assert doc.text == "Leak passwd secret dtd inner end. x y"  # text around the references is kept


def test_pubmed_billion_laughs_is_not_expanded():
    laughs = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    data = (f'<?xml version="1.0"?>\n<!DOCTYPE PubmedArticleSet [\n<!ENTITY lol0 "lol">{laughs}\n]>\n'
            + "<PubmedArticleSet>\n" + article("1", "Bomb &lol9; end.") + "</PubmedArticleSet>\n").encode()
    try:
        results = read_all(pubmed_xml, data)
    except InputError as error:  # recent libxml2 refuses the file outright
        assert "amplification" in str(error)
    else:
        assert [doc.text for doc in results] == ["Bomb end."]


class Trickle(io.BytesIO):
    """A stream that hands out at most 50 bytes a read, like a slow network or pipe."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(50)


def test_pubmed_prunes_the_tree_while_streaming():
    data = pubmed_file(*(article(str(n), f"T{n}.") for n in range(1, 200)))
    sizes = [len(elem.getparent()) for elem in
             iter_records(Trickle(data), "x", pubmed_xml.RECORDS, "PubmedArticleSet")]
    assert len(sizes) == 199 and max(sizes) <= 3  # the previous, the current and the next
    assert [doc.id for doc in pubmed_xml.read(Trickle(data), "x")] == [str(n) for n in range(1, 200)]


def test_pubmed_read_bytes():
    assert [doc.id for doc in pubmed_xml.read_bytes(pubmed_file(article("7", "T.")), "pubmed")] == ["7"]


# --- plain text ---------------------------------------------------------------------------------------

def test_text_whole_file_keeps_the_text_as_is():
    raw = "\ufeff  Cystic fibrosis\r\nand asthma.\n\n"
    (doc,) = read_all(text, raw.encode(), "dir/notes.txt")
    assert doc.id == "notes" and doc.source == "dir/notes.txt"
    assert [(p.type, p.offset, p.text) for p in doc.passages] == [("text", 0, raw[1:])]
    assert read_all(text, b"x", "<stdin>")[0].id == "stdin"
    assert text.document_stem("a/notes.txt.gz") == "notes"


def test_text_lines():
    docs = read_all(text, "\ufefffirst line\r\n\n  \nfourth line\nlast".encode(), "notes.txt", lines=True)
    assert [(d.id, d.passages[0].offset, d.text) for d in docs] == [
        ("notes:1", 0, "first line"), ("notes:4", 0, "fourth line"), ("notes:5", 0, "last")]


def test_text_bad_utf8_names_the_line():
    with pytest.raises(InputError) as raised:
        read_all(text, b"one\ntwo\nth\xffree\n", "bad.txt")
    assert raised.value.error.line == 3 and "bad.txt:3" in str(raised.value) and "0xff" in str(raised.value)
    # one document per line: the bad line is lost and named, the others are read (issue 13)
    one, error, four = read_all(text, b"one\ntwo\nth\xffree\nfour\n", "bad.txt", lines=True)[1:]
    assert (one.id, four.id) == ("bad:2", "bad:4")
    assert isinstance(error, ReadError) and error.line == 3 and "bad.txt:3" in str(error) and "0xff" in str(error)


# --- PubTator -----------------------------------------------------------------------------------------

def test_pubtator_keep_annotations():
    docs = read_all(pubtator, (FIXTURES / "sample.PubTator.txt").read_bytes(), "s.txt", keep_annotations=True)
    assert [d.id for d in docs] == ["91000001", "91000002", "91000003"]
    first = docs[0]
    assert first.passages[1].offset == len(first.passages[0].text) + 1
    assert [(s.text, s.label) for s in first.passages[0].annotations] == [
        ("Fabry disease", "SpecificDisease"), ("renal failure", "DiseaseClass")]
    assert [s.text for s in first.passages[1].annotations] == ["Fabry disease", "lysosomal disorder",
                                                                 "Renal failure"]
    assert [len(d.annotations) for d in docs] == [5, 0, 3]
    for doc in docs:
        check_spans(doc)
    plain = read_all(pubtator, (FIXTURES / "sample.PubTator.txt").read_bytes(), "s.txt")
    assert [len(d.annotations) for d in plain] == [0, 0, 0]


def test_pubtator_crlf_and_no_trailing_blank_line():
    data = (FIXTURES / "sample.PubTator.txt").read_bytes().rstrip().replace(b"\n", b"\r\n")
    docs = read_all(pubtator, data, "s.txt", keep_annotations=True)
    assert [len(d.annotations) for d in docs] == [5, 0, 3]
    assert docs[-1].passages[1].text == "Gout flares were treated."
    for doc in docs:
        check_spans(doc)


def test_pubtator_malformed_line_costs_only_the_line():
    data = (b"1|t|Title one.\n1|a|Abstract.\ngarbage line\n1\t0\t5\tTitle\tX\tY\n\n"
            b"2|t|Title two.\n2|a|Fine.\n3|t|Three without blank line.\n")
    warning, *docs = read_all(pubtator, data, "p.txt", keep_annotations=True)
    assert isinstance(warning, ReadError) and warning.warning and (warning.line, warning.doc_id) == (3, "1")
    assert [(d.id, d.passages[0].text) for d in docs] == [
        ("1", "Title one."), ("2", "Title two."), ("3", "Three without blank line.")]
    assert [s.text for s in docs[0].annotations] == ["Title"]  # the line after the bad one still counts


def test_pubtator_wrong_offsets_cost_the_annotation():
    data = b"1|t|Gout.\n1\t0\t3\tGout\tDisease\tD1\n1\t0\t4\tGout\tDisease\tD1\n\n2|t|Next.\n"
    warning, doc, following = read_all(pubtator, data, "p.txt", keep_annotations=True)
    assert isinstance(warning, ReadError) and warning.warning and warning.line == 2 and warning.doc_id == "1"
    assert str(warning).startswith("p.txt:2 (PMID 1): annotation 0-3 'Gout' does not match")
    assert (doc.id, [s.text for s in doc.annotations], following.id) == ("1", ["Gout"], "2")
    assert [d.id for d in read_all(pubtator, data, "p.txt")] == ["1", "2"]  # not checked unless kept


def test_ncbi_disease_test_set_offsets():
    path = DATA / "ncbi-disease" / "NCBItestset_corpus.txt"
    if not path.exists():
        pytest.skip(f"{path} not found (set MAMBANER_DATA)")
    with path.open("rb") as stream:
        docs = list(itertools.islice(pubtator.read(stream, str(path), keep_annotations=True), 20))
    assert len(docs) == 20 and all(isinstance(d, Document) for d in docs)
    assert sum(len(d.annotations) for d in docs) > 100
    for doc in docs:
        check_spans(doc)


# --- BioC ---------------------------------------------------------------------------------------------

def test_bioc_fixture():
    data = (FIXTURES / "sample.bioc.xml").read_bytes()
    first, second = read_all(bioc, data, "s.xml", keep_annotations=True)
    assert first.id == "92000001" and first.infons == {"journal": "Invented J"}
    assert [(p.type, p.offset, p.infons) for p in first.passages] == [
        ("title", 0, {}), ("abstract", 39, {"section": "ABSTRACT"})]
    assert first.passages[1].text == "Aortic dissection  is   the main risk."  # whitespace kept
    assert [(s.start, s.end, s.text, s.label) for s in first.annotations] == [
        (0, 15, "Marfan syndrome", "Disease"), (39, 56, "Aortic dissection", "Disease")]
    check_spans(first)
    assert [(p.type, p.text) for p in second.passages] == [("text", "Asthma is common.  Eczema too.")]
    assert not read_all(bioc, data, "s.xml")[0].annotations


def test_bioc_document_without_id_and_wrong_root():
    data = (b"<collection><source/><date/><key/>\n"
            b"<document><passage><offset>0</offset><text>a</text></passage></document>\n<document><id>2</id><passage><offset>0</offset><text>b</text></passage></document>"
            b"</collection>")
    error, doc = read_all(bioc, data, "b.xml")
    assert isinstance(error, ReadError) and error.line == 2 and doc.id == "2"
    with pytest.raises(InputError, match="PubmedArticleSet"):
        read_all(bioc, EFETCH.read_bytes())


# --- registry -----------------------------------------------------------------------------------------

def test_detect_format(tmp_path):
    (tmp_path / "a.xml").write_bytes(EFETCH.read_bytes())
    (tmp_path / "b.xml").write_bytes((FIXTURES / "sample.bioc.xml").read_bytes())
    (tmp_path / "c.xml.gz").write_bytes(gzip.compress((FIXTURES / "sample.bioc.xml").read_bytes()))
    (tmp_path / "corpus.txt").write_bytes((FIXTURES / "sample.PubTator.txt").read_bytes())
    (tmp_path / "notes.txt").write_text("Just text | with bars.\n")
    expected = {"a.xml": "pubmed", "b.xml": "bioc", "c.xml.gz": "bioc", "x.bioc.xml": "bioc",
                "missing.xml": "pubmed", "CDR.PubTator.txt": "pubtator", "x.pubtator.txt.gz": "pubtator",
                "x.pubtator": "pubtator", "corpus.txt": "pubtator", "notes.txt": "text", "n.txt.gz": "text"}
    assert {name: detect_format(str(tmp_path / name)) for name in expected} == expected
    with pytest.raises(MambanerError, match="--input-format"):
        detect_format("paper.pdf")


def test_readers_are_the_registry_s_input_formats():
    """READERS is a view of the format registry; each reader module has the writers' small interface
    (name, extensions) and a sniff where the content decides between formats sharing an extension."""
    assert list(READERS) == list(INPUT_FORMATS) == ["pubmed", "text", "pubtator", "bioc"]
    for name, reader in READERS.items():
        assert reader.name == name and reader.extensions == INPUT_FORMATS[name].extensions
    assert (READERS["pubmed"], READERS["text"], READERS["pubtator"], READERS["bioc"]) == (
        pubmed_xml, text, pubtator, bioc)
    assert bioc.sniff((FIXTURES / "sample.bioc.xml").read_bytes()[:2048])
    assert not bioc.sniff(EFETCH.read_bytes()[:2048]) and not bioc.sniff(b"<collections>")
    assert pubtator.sniff((FIXTURES / "sample.PubTator.txt").read_bytes()[:2048])
    assert pubtator.sniff(b"\n 12|a|abstract first") and not pubtator.sniff(b"a | b | c\n12|t|late")
    assert not hasattr(text, "sniff") and not hasattr(pubmed_xml, "sniff")  # chosen by name alone


def test_expand_inputs(tmp_path):
    for name in ["d/b.xml", "d/sub/a.txt.gz", "d/sub/z.pubtator", "d/readme.md", "d/.hidden.xml", "top1.txt",
                 "top2.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = expand_inputs([str(tmp_path / "d"), str(tmp_path / "top*.txt"), "-", str(tmp_path / "gone.xml"),
                           str(tmp_path / "none*.xml")])
    assert [os.path.relpath(p, tmp_path) if p != "-" else p for p in found] == [
        "d/b.xml", "d/sub/a.txt.gz", "d/sub/z.pubtator", "top1.txt", "top2.txt", "-", "gone.xml", "none*.xml"]


def test_iter_documents_goes_on_after_bad_inputs(tmp_path):
    good = tmp_path / "good.xml.gz"
    good.write_bytes(gzip.compress(pubmed_file(article("1", "One."), article("2", "Two."))))
    truncated = tmp_path / "trunc.xml.gz"
    truncated.write_bytes(good.read_bytes()[:-30])
    disguised = tmp_path / "plain.xml"  # gzip content without the .gz name
    disguised.write_bytes(gzip.compress(pubmed_file(article("3", "Three."))))
    (tmp_path / "not.xml").write_text("this is not XML\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xc3\x28\n")
    (tmp_path / "doc.txt").write_text("Some text.")
    (tmp_path / "odd.docx").write_text("x")
    names = ["missing.xml", "trunc.xml.gz", "good.xml.gz", "not.xml", "empty.txt", "bad.txt", "plain.xml",
             "odd.docx", "doc.txt"]
    results = list(iter_documents([str(tmp_path / name) for name in names]))
    summary = [(Path(r.source).name, r.message) if isinstance(r, ReadError) else r.id for r in results]
    assert summary[0] == ("missing.xml", "no such file")
    assert summary[1][0] == "trunc.xml.gz" and "gzip" in summary[1][1]
    assert summary[2:4] == ["1", "2"]
    assert summary[4][0] == "not.xml" and "XML" in summary[4][1]
    assert summary[5] == ("empty.txt", "empty file")
    assert summary[6][0] == "bad.txt" and results[6].line == 2
    assert summary[7] == "3"
    assert summary[8][0] == "odd.docx" and "--input-format" in summary[8][1]
    assert summary[9:] == ["doc"]


def test_iter_documents_stdin_and_forced_format(tmp_path):
    pubtator_bytes = (FIXTURES / "sample.PubTator.txt").read_bytes()
    docs = list(iter_documents(["-"], "pubtator", stdin=io.BytesIO(pubtator_bytes), keep_annotations=True))
    assert [d.id for d in docs] == ["91000001", "91000002", "91000003"] and docs[0].source == "<stdin>"
    assert len(docs[0].annotations) == 5
    (doc,) = iter_documents(["-"], stdin=io.BytesIO(gzip.compress(b"Plain words.")))
    assert (doc.id, doc.text) == ("stdin", "Plain words.")
    lines = list(iter_documents(["-"], lines=True, stdin=io.BytesIO(b"a\nb\n")))
    assert [d.id for d in lines] == ["stdin:1", "stdin:2"]
    assert set(READERS) == {"pubmed", "text", "pubtator", "bioc"}
    with pytest.raises(MambanerError, match="pubmed, text"):
        next(iter_documents(["-"], "medline", stdin=io.BytesIO(b"x")))
