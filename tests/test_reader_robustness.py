"""Readers against hostile and real-world input (issue 13): BioC offsets, real PubTator files, encodings,
whitespace-only files and format sniffing on standard input."""

from __future__ import annotations

import glob
import gzip
import io
from pathlib import Path

import pytest

from mambaner_cli import formats
from mambaner_cli.document import Document
from mambaner_cli.errors import InputError, MambanerError, ReadError
from mambaner_cli.readers import ENCODING_ERRORS, bioc, iter_documents, pubmed_xml, pubtator

FIXTURES = Path(__file__).parent / "fixtures" / "readers"


def documents(items: list[Document | ReadError]) -> list[Document]:
    return [item for item in items if isinstance(item, Document)]


def problems(items: list[Document | ReadError], warning: bool | None = None) -> list[ReadError]:
    return [item for item in items if isinstance(item, ReadError) and warning in (None, item.warning)]


def check_spans(document: Document) -> None:
    for span in document.annotations:
        assert span.text == document.text[span.start:span.end]


# --- 1. BioC offsets ----------------------------------------------------------------------------------

def bioc_document(doc_id: str, abstract_offset: str, abstract: str = "Asthma and eczema.",
                  annotation: str = "") -> str:
    return (f"<document><id>{doc_id}</id><passage><infon key='type'>title</infon><offset>0</offset>"
            f"<text>Atopy in children.</text></passage><passage><infon key='type'>abstract</infon>"
            f"<offset>{abstract_offset}</offset><text>{abstract}</text>{annotation}</passage></document>\n")


def bioc_file(*docs: str) -> bytes:
    return ("<?xml version='1.0' encoding='UTF-8'?>\n<collection><source>x</source><date/><key/>\n"
            + "".join(docs) + "</collection>\n").encode()


@pytest.mark.parametrize("offset", ["1000000000000000", "2200000000", "100000000", "-100", "1e3", "+19", "1_9",
                                    "\u0661\u0669", ""])
def test_bioc_offsets_out_of_range_cost_their_document(tmp_path, offset):
    """10**15 used to die of MemoryError (losing every document), 2.2e9 to fill 4.7 GB, 10**8 to turn 880
    bytes into 100 MB of output, -100 to give corrupt mentions: each is now a bad document, named."""
    path = tmp_path / "c.bioc.xml"
    path.write_bytes(bioc_file(bioc_document("1", "19"), bioc_document("2", offset), bioc_document("3", "19")))
    first, error, third = iter_documents([str(path)])
    assert isinstance(error, ReadError) and not error.warning
    assert (error.source, error.doc_id) == (str(path), "2") and "offset" in error.message
    assert str(error).startswith(f"{path}:")
    assert (first.id, third.id) == ("1", "3") and len(first.text) == len(third.text) == 37


def test_bioc_negative_offset_of_a_first_passage_is_a_bad_document():
    """With no passage before it to overlap, -100 used to pass: a Document at a negative offset, whose
    tagged mentions came out at offsets that do not index its text."""
    data = (b"<collection><source/><date/><key/><document><id>1</id><passage><offset>-100</offset>"
            b"<text>Asthma.</text></passage></document></collection>")
    (error,) = bioc.read(io.BytesIO(data), "n.xml")
    assert isinstance(error, ReadError) and error.doc_id == "1" and "-100" in error.message


def test_bioc_offsets_in_proportion_are_kept():
    """Gaps are legitimate (a passage left out): spaces up to the text's own length plus GAP_ALLOWANCE."""
    text_length = 2 * 18  # the title and the abstract
    last = 18 + text_length + bioc.GAP_ALLOWANCE  # the abstract's furthest offset
    annotation = (f"<annotation id='1'><infon key='type'>Disease</infon><location offset='{last}' length='6'/>"
                  "<text>Asthma</text></annotation>")
    (doc,) = bioc.read(io.BytesIO(bioc_file(bioc_document("1", str(last), annotation=annotation))), "c.xml",
                       keep_annotations=True)
    assert doc.passages[1].offset == last and len(doc.text) == last + 18
    assert [span.text for span in doc.annotations] == ["Asthma"]
    check_spans(doc)
    (error,) = bioc.read(io.BytesIO(bioc_file(bioc_document("1", str(last + 1)))), "c.xml")
    assert isinstance(error, ReadError) and "out of proportion" in error.message


def test_bioc_sentence_offsets_are_checked_too():
    sentences = ("<passage><offset>0</offset><sentence><offset>0</offset><text>One.</text></sentence>"
                 "<sentence><offset>{}</offset><text>Two.</text></sentence></passage>")
    data = ("<collection><source/><date/><key/>"
            f"<document><id>1</id>{sentences.format(10**15)}</document>"
            f"<document><id>2</id>{sentences.format(3)}</document>"
            f"<document><id>3</id>{sentences.format(5)}</document></collection>").encode()
    huge, overlap, doc = bioc.read(io.BytesIO(data), "s.xml")
    assert isinstance(huge, ReadError) and huge.doc_id == "1" and "offset" in huge.message
    assert isinstance(overlap, ReadError) and overlap.doc_id == "2" and "overlaps" in overlap.message
    assert doc.text == "One. Two."


def test_bioc_annotation_with_a_negative_offset_is_a_bad_document():
    annotation = ("<annotation id='1'><infon key='type'>Disease</infon><location offset='-5' length='6'/>"
                  "<text>Asthma</text></annotation>")
    error, doc = bioc.read(io.BytesIO(bioc_file(bioc_document("1", "19", annotation=annotation),
                                                bioc_document("2", "19"))), "c.xml", keep_annotations=True)
    assert isinstance(error, ReadError) and error.doc_id == "1" and doc.id == "2"


# --- 2. real PubTator files ---------------------------------------------------------------------------

def test_pubtator_relation_lines_are_ignored_whatever_their_fields():
    """BC5CDR's CID lines and PubTator3's Association lines (numeric gene ids in the third field) are
    relations, not malformed annotations: any line whose second field is not an offset."""
    data = (b"1|t|BRCA1 and breast cancer.\n1|a|Risk.\n1\t0\t5\tBRCA1\tGene\t672\n"
            b"1\tAssociation\t672\tD001943\tNovel\n1\tCID\tD000001\tD001943\n1\tBind\t672\n1\tX\n\n"
            b"2|t|Two.\n2|a|More.\n")
    docs = list(pubtator.read(io.BytesIO(data), "r.txt", keep_annotations=True))
    assert [(d.id, [s.text for s in d.annotations]) for d in docs] == [("1", ["BRCA1"]), ("2", [])]


def test_pubtator_bad_lines_cost_the_line_not_the_document():
    data = (b"1|t|Gout and asthma.\n1|a|Rare.\n"
            b"1\t0\tfour\tGout\tDisease\n"  # a bad end
            b"1\t0\t4\tGout\n"  # no type
            b"7\t9\t15\tasthma\tDisease\n"  # another PMID
            b"just words\n"  # not PubTator at all
            b"1\t9\t15\tasthma\tDisease\n\n"
            b"2|t|Next.\n")
    items = list(pubtator.read(io.BytesIO(data), "bad.pubtator", keep_annotations=True))
    warnings = problems(items, warning=True)
    assert [(w.line, w.doc_id) for w in warnings] == [(3, "1"), (4, "1"), (5, "1"), (6, "1")]
    assert all(str(w).startswith(f"bad.pubtator:{w.line} ") for w in warnings)
    assert not problems(items, warning=False)
    assert [(d.id, [s.text for s in d.annotations]) for d in documents(items)] == [("1", ["asthma"]), ("2", [])]


def test_pubtator_text_problems_cost_their_document_only():
    data = (b"1|t|One.\n1|t|One again.\n1|a|Abstract.\n1\t0\t3\tOne\tX\n\n"
            b"2|t|Two.\n3|a|An abstract whose title line is missing.\n")
    error, two, three = pubtator.read(io.BytesIO(data), "p.txt")
    assert isinstance(error, ReadError) and not error.warning and (error.line, error.doc_id) == (2, "1")
    assert (two.id, two.text) == ("2", "Two.")
    assert (three.id, three.passages[1].text) == ("3", "An abstract whose title line is missing.")


def test_pubtator_every_mismatch_is_named_and_the_document_kept():
    data = (b"5|t|Lung cancer.\n5|a|Cancer of the lung.\n5\t0\t11\tLung cancer\tDisease\n"
            b"5\t0\t4\tLUNG\tDisease\n5\t13\t19\tCancer\tDisease\n5\t13\t99\tCancer\tDisease\n5\t30\t13\tx\tDisease\n")
    items = list(pubtator.read(io.BytesIO(data), "m.txt", keep_annotations=True))
    assert [(w.line, w.doc_id, w.warning) for w in problems(items)] == [
        (4, "5", True), (6, "5", True), (7, "5", True)]
    (doc,) = documents(items)
    assert [s.text for s in doc.annotations] == ["Lung cancer", "Cancer"]
    check_spans(doc)


class OutsideTagger:
    """A stand-in tagger: every token O."""

    name, convention, label, num_parameters = "stub", None, "stub", 0

    def tag(self, sentences, batch_size: int = 32):
        return [(["O"] * len(tokens), [1.0] * len(tokens)) for tokens in sentences]


def test_pubtator_warnings_reach_the_run_summary_and_the_documents_are_tagged(tmp_path):
    from mambaner_cli.runtime.pipeline import RunSummary, tag_documents

    path = tmp_path / "w.pubtator"
    path.write_bytes(b"1|t|Gout.\n1|a|Rare.\nnot a PubTator line\n1\t0\t4\tGout\tDisease\n\n2|t|Asthma.\n")
    summary = RunSummary()
    tagged = list(tag_documents(iter_documents([str(path)]), OutsideTagger(), summary, prefetch=0))
    assert [doc.id for doc in tagged] == ["1", "2"] and summary.documents == 2
    assert [(warning.line, warning.warning) for warning in summary.warnings] == [(3, True)]
    assert summary.errors == []  # a warning costs no document: it is no failure


def corpus_files(corpus_dir: Path) -> list[str]:
    return sorted(glob.glob(str(corpus_dir / "multitype" / "*.PubTator.txt"))
                  + glob.glob(str(corpus_dir / "bc5cdr" / "*.PubTator.txt")))


def test_real_pubtator_files_lose_no_document(corpus_dir):
    """Every document of the multitype and BC5CDR files is read (as many as ``|t|`` lines), with its
    annotations; the files' known defects (35 offset mismatches in gnormplus_train) are warnings."""
    files = corpus_files(corpus_dir)
    assert len(files) >= 3
    for path in files:
        with open(path, "rb") as stream:
            expected = sum(1 for line in stream if b"|t|" in line.split(b"\t", 1)[0])
        items = list(iter_documents([path], keep_annotations=True))
        docs = documents(items)
        assert len(docs) == expected, path
        assert all(item.warning and item.line for item in problems(items)), path
        assert sum(len(d.annotations) for d in docs) > 0
        for doc in docs:
            check_spans(doc)
        if path.endswith("gnormplus_train.PubTator.txt"):
            assert len(problems(items)) == 35


# --- 3. encodings -------------------------------------------------------------------------------------

def test_iter_documents_checks_encoding_and_errors_first(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(MambanerError, match="encoding 'klingon'"):
        next(iter_documents([str(tmp_path / "a.txt")], encoding="klingon"))
    with pytest.raises(MambanerError, match="encoding 'base64'"):
        next(iter_documents([str(tmp_path / "a.txt")], encoding="base64"))
    with pytest.raises(MambanerError, match="strict, replace"):
        next(iter_documents([str(tmp_path / "a.txt")], errors="surrogateescape"))
    assert ENCODING_ERRORS == ("strict", "replace", "ignore", "backslashreplace")


def test_lines_lose_only_the_bad_line(tmp_path):
    """Before, the first bad byte raised and every later line of the file was lost, silently."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"first\nsecond \xe9t\xe9\nthird\n\xff\nfifth\n")
    items = list(iter_documents([str(path)], lines=True))
    assert [d.id for d in documents(items)] == ["notes:1", "notes:3", "notes:5"]
    assert [(e.line, e.warning) for e in problems(items)] == [(2, False), (4, False)]
    assert "0xe9 at column 8" in problems(items)[0].message and "--encoding" in problems(items)[0].message
    replaced = list(iter_documents([str(path)], lines=True, errors="replace"))
    assert [d.text for d in replaced] == ["first", "second \ufffdt\ufffd", "third", "\ufffd", "fifth"]
    latin = list(iter_documents([str(path)], lines=True, encoding="latin-1"))
    assert latin[1].text == "second été"


def test_whole_text_file_names_the_byte_offset_and_encoding(tmp_path):
    path = tmp_path / "note.txt"
    path.write_bytes("Café au lait spots.\nNeuro".encode() + b"fibromatosis \xe9.\n")
    (error,) = iter_documents([str(path)])
    assert isinstance(error, ReadError) and error.line == 2
    assert "byte 0xe9 at byte offset 39" in error.message and "--encoding" in error.message
    (doc,) = iter_documents([str(path)], errors="replace")
    assert doc.text == "Café au lait spots.\nNeurofibromatosis \ufffd.\n"
    (doc,) = iter_documents([str(path)], errors="ignore")
    assert doc.text.endswith("fibromatosis .\n")


def with_bom(raw: str, encoding: str) -> bytes:
    if encoding in ("utf-8-sig", "utf-16", "utf-32"):  # these write a mark of their own
        return raw.encode(encoding)
    return ("\ufeff" + raw).encode(encoding)


@pytest.mark.parametrize("bom_encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_byte_order_mark_decides_whatever_encoding_says(tmp_path, bom_encoding):
    raw = "Maladie de Crohn, café\n2|x\n"
    (tmp_path / "n.txt").write_bytes(with_bom(raw, bom_encoding))
    (doc,) = iter_documents([str(tmp_path / "n.txt")], encoding="latin-1")
    assert doc.text == raw
    lines = list(iter_documents([str(tmp_path / "n.txt")], lines=True, encoding="latin-1"))
    assert [d.text for d in lines] == raw.splitlines()
    (tmp_path / "p.txt").write_bytes(with_bom("7|t|Maladie de Crohn\n7|a|Café.\n7\t11\t16\tCrohn\tDisease\n",
                                              bom_encoding))
    (doc,) = iter_documents([str(tmp_path / "p.txt")], keep_annotations=True, encoding="latin-1")
    assert (doc.id, doc.text, [s.text for s in doc.annotations]) == ("7", "Maladie de Crohn Café.", ["Crohn"])


def test_pubtator_offsets_count_code_points_of_the_decoded_text():
    data = "9|t|Caf\u00e9 disease\n9\t5\t12\tdisease\tDisease\n".encode("latin-1")
    items = list(pubtator.read(io.BytesIO(data), "l.txt", keep_annotations=True))
    error, = items
    assert isinstance(error, ReadError) and not error.warning and "--encoding" in error.message
    (doc,) = pubtator.read(io.BytesIO(data), "l.txt", keep_annotations=True, errors="replace")
    assert doc.text == "Caf\ufffd disease" and [(s.start, s.text) for s in doc.annotations] == [(5, "disease")]
    (doc,) = pubtator.read(io.BytesIO(data), "l.txt", keep_annotations=True, encoding="cp1252")
    assert doc.text == "Café disease" and [s.text for s in doc.annotations] == ["disease"]


def test_pubtator_bad_byte_in_an_annotation_line_costs_the_line():
    data = b"1|t|Gout.\n1\t0\t4\tGo\xfft\tDisease\n1\t0\t4\tGout\tDisease\n\n2|t|Two.\n"
    items = list(pubtator.read(io.BytesIO(data), "p.txt", keep_annotations=True))
    assert [(e.line, e.warning) for e in problems(items)] == [(2, True)]
    assert [(d.id, len(d.annotations)) for d in documents(items)] == [("1", 1), ("2", 0)]


def pubmed_article(pmid: str, title: str) -> str:
    return (f"<PubmedArticle><MedlineCitation><PMID Version='1'>{pmid}</PMID><Article><ArticleTitle>{title}"
            "</ArticleTitle></Article></MedlineCitation></PubmedArticle>\n")


def pubmed_set(declaration: str = '<?xml version="1.0"?>\n', titles: tuple[str, ...] = (
        "Gout.", "Café au lait.", "Asthma.")) -> str:
    return (declaration + "<PubmedArticleSet>\n"
            + "".join(pubmed_article(str(n), title) for n, title in enumerate(titles, 1)) + "</PubmedArticleSet>\n")


def test_pubmed_bad_byte_costs_its_article_only():
    """libxml2 stops at the first bad byte: before, that lost the rest of the file."""
    data = pubmed_set().encode().replace("Café".encode(), b"Caf\xe9")
    one, error, three = pubmed_xml.read(io.BytesIO(data), "p.xml")
    assert (one.id, three.id) == ("1", "3")
    assert isinstance(error, ReadError) and (error.doc_id, error.line) == ("2", 4)
    assert "0xe9" in error.message and "--encoding" in error.message
    assert [d.text for d in pubmed_xml.read(io.BytesIO(data), "p.xml", errors="replace")] == [
        "Gout.", "Caf\ufffd au lait.", "Asthma."]


def test_pubmed_bad_byte_in_markup_is_a_file_error_that_names_the_encoding():
    data = pubmed_set().encode().replace(b"<ArticleTitle>Caf", b"<Article\xffTitle>Caf")
    reader = pubmed_xml.read(io.BytesIO(data), "p.xml")
    assert next(reader).id == "1"
    with pytest.raises(InputError, match="0xff.*--encoding") as raised:
        next(reader)
    assert raised.value.error.line == 4


def test_xml_declaration_then_encoding_decide():
    latin = pubmed_set('<?xml version="1.0" encoding="ISO-8859-1"?>\n').encode("latin-1")
    assert [d.text for d in pubmed_xml.read(io.BytesIO(latin), "p.xml")][1] == "Café au lait."
    # the declaration wins over the caller's encoding …
    utf8 = pubmed_set('<?xml version="1.0" encoding="UTF-8"?>\n').encode()
    assert [d.text for d in pubmed_xml.read(io.BytesIO(utf8), "p.xml", encoding="latin-1")][1] == "Café au lait."
    # … which decides only without one (XML would say UTF-8)
    bare = pubmed_set("").encode("cp1252")
    assert [d.text for d in pubmed_xml.read(io.BytesIO(bare), "p.xml", encoding="cp1252")][1] == "Café au lait."
    for encoding in ("utf-16", "utf-8-sig"):
        assert [d.text for d in pubmed_xml.read(io.BytesIO(pubmed_set().encode(encoding)), "p.xml",
                                                 encoding="latin-1")][1] == "Café au lait."


def test_bioc_bad_byte_costs_its_document_only():
    data = bioc_file(bioc_document("1", "19"), bioc_document("2", "19", "Ecz\u00e9ma."), bioc_document("3", "19"))
    data = data.replace("Ecz\u00e9ma".encode(), b"Ecz\xe9ma")
    one, error, three = bioc.read(io.BytesIO(data), "b.xml")
    assert (one.id, three.id) == ("1", "3") and isinstance(error, ReadError) and error.doc_id == "2"
    assert [d.passages[1].text for d in bioc.read(io.BytesIO(data), "b.xml", errors="replace")][1] == "Ecz\ufffdma."


# --- 4. empty and whitespace-only files ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["a.pubtator", "a.PubTator.txt", "a.txt", "a.xml", "a.bioc.xml", "a.txt.gz"])
@pytest.mark.parametrize("content", [b"", b" \n\n\t \r\n", b"\xef\xbb\xbf\n  \n", "\ufeff \n".encode("utf-16-le")])
@pytest.mark.parametrize("lines", [False, True])
def test_whitespace_only_files_are_input_errors(tmp_path, name, content, lines):
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    (error,) = iter_documents([str(path)], lines=lines)
    assert isinstance(error, ReadError) and (error.source, error.message, error.doc_id) == (str(path), "empty file",
                                                                                           None)


def test_pubtator_without_any_document_is_an_input_error():
    with pytest.raises(InputError, match="no PubTator document"):
        list(pubtator.read(io.BytesIO(b"1\tCID\tD1\tD2\n"), "r.pubtator"))


# --- 5. standard input is sniffed ---------------------------------------------------------------------

class Trickle(io.BytesIO):
    """A pipe that hands out a few bytes a read."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


@pytest.mark.parametrize("wrap", [bytes, gzip.compress, Trickle])
def test_stdin_is_sniffed_like_a_file(wrap):
    pubmed = (FIXTURES / "efetch.xml").read_bytes()
    assert [d.id for d in iter_documents(["-"], stdin=io.BytesIO(wrap(pubmed)) if wrap is not Trickle
                                         else Trickle(pubmed))] == [
        "90000001", "90000002", "90000003", "90000004", "90000005"]
    bioc_data = (FIXTURES / "sample.bioc.xml").read_bytes()
    stream = Trickle(bioc_data) if wrap is Trickle else io.BytesIO(wrap(bioc_data))
    assert [d.id for d in iter_documents(["-"], stdin=stream)] == ["92000001", "92000002"]
    pubtator_data = (FIXTURES / "sample.PubTator.txt").read_bytes()
    stream = Trickle(pubtator_data) if wrap is Trickle else io.BytesIO(wrap(pubtator_data))
    docs = list(iter_documents(["-"], stdin=stream, keep_annotations=True))
    assert [(d.id, d.source, len(d.annotations)) for d in docs] == [
        ("91000001", "<stdin>", 5), ("91000002", "<stdin>", 0), ("91000003", "<stdin>", 3)]


def test_stdin_is_text_unless_its_first_bytes_say_otherwise():
    for data in [b"Plain words | bars.", b"<b>Bold</b> tags in text", b"  12 |t| no", b"x" * 5000]:
        (doc,) = iter_documents(["-"], stdin=io.BytesIO(data))
        assert (doc.id, doc.text) == ("stdin", data.decode())
    utf16 = pubmed_set().encode("utf-16")
    assert [d.id for d in iter_documents(["-"], stdin=io.BytesIO(utf16))] == ["1", "2", "3"]
    # --input-format still decides
    (doc,) = iter_documents(["-"], "text", stdin=io.BytesIO(pubmed_set().encode()))
    assert doc.text.startswith("<?xml")


def test_detect_stream_format():
    doctype = (b'<?xml version="1.0"?>\n<!-- c -->\n<!DOCTYPE collection SYSTEM "BioC.dtd" [ <!ENTITY a "b"> ]>\n'
               b"<?pi x?>\n")
    assert formats.detect_stream_format(doctype + b"<collection>") == "bioc"
    assert formats.detect_stream_format(doctype + b"<PubmedArticleSet>") == "pubmed"
    assert formats.detect_stream_format(doctype + b"<html>") == "text"
    assert formats.detect_stream_format(doctype) == "text"  # the root beyond the first bytes
    assert formats.detect_stream_format(b"\n 12|t|Title") == "pubtator"
    assert formats.detect_stream_format("12|t|Title".encode("utf-16")) == "pubtator"
    assert formats.xml_root(b"<bioc:collection xmlns:bioc='x'>") == "collection"
    assert formats.detect_stream_format(b"") == formats.STDIN_FORMAT == "text"
