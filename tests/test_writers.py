"""Tests for the output writers (mambaner_cli/writers).

Text formats are compared byte for byte with golden files in tests/golden/writers/; Parquet, whose bytes
embed the pyarrow version, is compared through its schema and rows (a JSON dump). To regenerate the golden
files after an intended change of format, run

    MAMBANER_REGEN_GOLDEN=1 pytest tests/test_writers.py

then read the diff of tests/golden/writers/ before committing it.
"""

from __future__ import annotations

import gc
import io
import itertools
import json
import os
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lxml import etree

from mambaner_cli.document import Document, Passage, Sentence, Span, Token, make_document
from mambaner_cli.errors import MambanerError
from mambaner_cli.formats import OUTPUT_FORMATS
from mambaner_cli.writers import (
    WRITERS,
    BiocWriter,
    ConllWriter,
    JsonlWriter,
    ParquetWriter,
    PubtatorWriter,
    Writer,
    atomic_output,
    detect_output_format,
    open_writer,
)
from mambaner_cli.writers.pubtator import split_title_abstract

GOLDEN = Path(__file__).parent / "golden" / "writers"
REGEN = os.environ.get("MAMBANER_REGEN_GOLDEN") == "1"
DTD_PATH = Path(os.environ.get("MAMBANER_BIOC_DTD",
                               Path(__file__).resolve().parents[1].parent / "shared" / "formats" / "BioC.dtd"))
DATE = "20250102"
MODEL = "mambaner-test"


# ----------------------------------------------------------------------------------------------------
# Fixture: tagged documents built by hand


def _tag(doc: Document, mentions: list[tuple[str, int, int, float]],
         sentence_breaks: dict[str, list[int]]) -> None:
    """Tokenize each passage, cut it into sentences, attach the mentions and their IOB2 tags.

    ``mentions`` are (passage type, passage-relative start, length, score); ``sentence_breaks`` gives,
    per passage type, the passage-relative offsets at which a new sentence starts.
    """
    index = 0
    for passage in doc.passages:
        breaks = [0, *sentence_breaks.get(passage.type, []), len(passage.text)]
        for lo, hi in itertools.pairwise(breaks):
            chunk = passage.text[lo:hi].rstrip()
            if not chunk.strip():
                continue
            start = passage.offset + lo
            tokens = [Token(start + m.start(), start + m.end(), m.group())
                      for m in re.finditer(r"\w+|[^\w\s]", chunk)]
            passage.sentences.append(Sentence(start, start + len(chunk), chunk, tokens, index))
            index += 1
    for passage_type, local_start, length, score in mentions:
        passage = next(p for p in doc.passages if p.type == passage_type)
        start = passage.offset + local_start
        end = start + length
        sentence = next(s for s in passage.sentences if s.start <= start < s.end)
        passage.annotations.append(Span(start, end, doc.text[start:end], "Disease", score, sentence.index))
    for passage in doc.passages:
        for sentence in passage.sentences:
            tags = []
            for token in sentence.tokens:
                span = next((s for s in passage.annotations if s.start <= token.start < s.end), None)
                if span is None:
                    tags.append("O")
                else:
                    tags.append("B-Disease" if token.start == span.start else "I-Disease")
            sentence.tags = tags


def build_documents() -> list[Document]:
    title = "Cystic fibrosis in adults: a ten-year review."
    abstract = ("Adults with CF were followed for a decade. Most developed diabetes mellitus.\n"
                "Lung function & survival <improved> after 2015.")
    cf = make_document("91001", title, abstract, source="fixture.xml")
    _tag(cf, [("title", 0, len("Cystic fibrosis"), 0.98761234),
              ("abstract", abstract.index("diabetes mellitus"), len("diabetes mellitus"), 0.9)],
         {"abstract": [abstract.index("Most"), abstract.index("Lung")]})

    plain = make_document("91002", "Seasonal patterns of clinic visits.",
                          "Visits peaked in winter. No clinical outcome was measured.", source="fixture.xml")
    _tag(plain, [], {"abstract": [len("Visits peaked in winter. ")]})

    title3 = "Müller’s cohort: dry eyes in Sjögren syndrome"
    abstract3 = "Fatigue and arthralgia were common (n = 42; ≥ 3 visits); café staff had Behçet disease."
    accented = make_document("91003", title3, abstract3, source="fixture.xml")
    _tag(accented, [("title", title3.index("Sjögren syndrome"), len("Sjögren syndrome"), 0.75),
                    ("abstract", abstract3.index("arthralgia"), len("arthralgia"), 0.5),
                    ("abstract", abstract3.index("Behçet disease"), len("Behçet disease"), 0.66666)], {})

    empty = make_document("91004", "", None, source="fixture.xml")  # no text at all: still a document
    return [cf, plain, accented, empty]


@pytest.fixture
def documents() -> list[Document]:
    return build_documents()


def render(cls: type[Writer], documents: list[Document], **kwargs) -> bytes:
    buffer = io.BytesIO()
    if cls is BiocWriter:
        kwargs.setdefault("date", DATE)
    writer = cls(buffer, model=MODEL, **kwargs)
    for doc in documents:
        writer.write(doc)
    writer.close()
    assert not buffer.closed, "close() must leave the caller's stream open"
    return buffer.getvalue()


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"missing golden file {path}; run with MAMBANER_REGEN_GOLDEN=1 to create it"
    assert data == path.read_bytes(), f"output differs from {path}"


def test_fixture_is_consistent(documents):
    for doc in documents:
        for span in doc.annotations:
            assert doc.text[span.start:span.end] == span.text
    assert documents[2].annotations[1].start > documents[2].text.index("ü")


# ----------------------------------------------------------------------------------------------------
# Golden files


@pytest.mark.parametrize("cls, name", [(ConllWriter, "tagged.conll"), (BiocWriter, "tagged.bioc.xml"),
                                       (JsonlWriter, "tagged.jsonl"), (PubtatorWriter, "tagged.pubtator")])
def test_text_formats_match_golden(documents, cls, name):
    check_golden(name, render(cls, documents))


def _parquet_dump(data: bytes) -> bytes:
    table = pq.read_table(pa.BufferReader(data))
    rows = table.to_pylist()
    for row in rows:  # float32 round trip: compare at the precision the column holds
        if row["score"] is not None:
            row["score"] = round(row["score"], 6)
    dump = {"schema": [f"{field.name}: {field.type}" for field in table.schema], "rows": rows}
    return (json.dumps(dump, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def test_parquet_matches_golden(documents):
    check_golden("tagged.parquet.json", _parquet_dump(render(ParquetWriter, documents)))


# ----------------------------------------------------------------------------------------------------
# Parquet


def test_parquet_rows_agree_with_documents(documents):
    table = pq.read_table(pa.BufferReader(render(ParquetWriter, documents)))
    assert table.schema.names == ["doc_id", "source", "passage", "sentence", "start", "end", "text",
                                  "label", "score", "model"]
    assert table.schema.field("start").type == pa.int32()
    assert table.schema.field("score").type == pa.float32()
    rows = table.to_pylist()
    by_id = {doc.id: doc for doc in documents}
    assert {row["doc_id"] for row in rows} == set(by_id)
    assert len(rows) == sum(max(len(doc.annotations), 1) for doc in documents)
    for row in rows:
        doc = by_id[row["doc_id"]]
        assert row["model"] == MODEL and row["source"] == "fixture.xml"
        if doc.annotations:
            assert row["text"] == doc.text[row["start"]:row["end"]]
            assert row["label"] == "Disease" and row["passage"] in {"title", "abstract"}
            span = next(s for s in doc.annotations if s.start == row["start"])
            assert row["sentence"] == span.sentence_index
            assert row["score"] == pytest.approx(span.score, abs=1e-6)
        else:  # the single placeholder row of a document without mentions
            assert all(row[c] is None for c in ("passage", "sentence", "start", "end", "text", "label",
                                                "score"))


def test_parquet_streams_in_row_groups(documents):
    many = [doc for _ in range(5) for doc in build_documents()]
    data = render(ParquetWriter, many, row_group_rows=4)
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert metadata.num_rows == 5 * sum(max(len(doc.annotations), 1) for doc in documents) == 35
    assert metadata.num_row_groups >= 35 // (4 + 2)
    # a group is flushed once it reaches 4 rows, so it holds at most 3 + the largest document's rows
    assert all(metadata.row_group(i).num_rows <= 3 + 3 for i in range(metadata.num_row_groups))
    rows = pq.read_table(pa.BufferReader(data)).to_pylist()
    assert [row["doc_id"] for row in rows[:7]] == ["91001", "91001", "91002", "91003", "91003", "91003",
                                                   "91004"]


def test_parquet_with_no_document_is_a_valid_empty_file():
    table = pq.read_table(pa.BufferReader(render(ParquetWriter, [])))
    assert table.num_rows == 0
    assert table.schema.names[0] == "doc_id"


def test_parquet_to_a_pipe_like_stream(documents):
    """Standard output is usually a pipe: no seek, no tell."""

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.data += bytes(b)
            return len(b)

        def tell(self):
            raise OSError("Illegal seek")

    pipe = Pipe()
    writer = ParquetWriter(pipe)
    for doc in documents:
        writer.write(doc)
    writer.close()
    assert pq.read_table(pa.BufferReader(bytes(pipe.data))).num_rows == 7


def test_unknown_sentence_is_null_in_parquet_and_jsonl():
    doc = make_document("1", "Gout.", None)
    doc.passages[0].annotations.append(Span(0, 4, "Gout", "Disease", 0.5))  # sentence_index -1
    row = pq.read_table(pa.BufferReader(render(ParquetWriter, [doc]))).to_pylist()[0]
    assert row["sentence"] is None and row["text"] == "Gout"
    record = json.loads(render(JsonlWriter, [doc]))
    assert record["mentions"][0]["sentence"] is None


# ----------------------------------------------------------------------------------------------------
# BioC


def _bioc_dtd() -> etree.DTD:
    if not DTD_PATH.exists():
        pytest.skip(f"BioC DTD not found at {DTD_PATH} (set MAMBANER_BIOC_DTD)")
    return etree.DTD(str(DTD_PATH))


def _parse(data: bytes) -> etree._ElementTree:
    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False)
    return etree.parse(io.BytesIO(data), parser)


def test_parquet_tells_pandas_that_offsets_are_integers(documents):
    """pandas makes an integer column with a null float64 (the row of a document without a mention); the
    file carries the metadata pandas writes for its nullable Int32, so those columns stay integers."""
    schema = pq.read_schema(pa.BufferReader(render(ParquetWriter, documents)))
    metadata = json.loads(schema.metadata[b"pandas"])
    columns = {column["field_name"]: column for column in metadata["columns"]}
    assert set(columns) == {"sentence", "start", "end"}
    for name, column in columns.items():
        assert column["numpy_type"] == "Int32" and schema.field(name).type == pa.int32()
    assert metadata["index_columns"] == []  # no index column is expected in the file


def test_pandas_reads_exact_integers_and_every_document(documents):
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(io.BytesIO(render(ParquetWriter, documents)))
    for name in ("sentence", "start", "end"):
        assert str(frame[name].dtype) == "Int32", name
    assert sorted(frame["doc_id"].unique()) == ["91001", "91002", "91003", "91004"]
    empty = frame[frame["doc_id"] == "91002"]
    assert len(empty) == 1 and empty["start"].isna().all()
    mentions = frame[frame["start"].notna()]
    by_id = {doc.id: doc for doc in documents}
    for row in mentions.itertuples():
        assert by_id[row.doc_id].text[row.start:row.end] == row.text


def test_an_interrupted_parquet_writer_writes_nothing_more(documents, tmp_path):
    """A run stopped halfway discards its writer: pyarrow must not write a footer into the stream later
    (into a closed temporary file: an "Exception ignored" traceback; into stdout: garbage)."""
    buffer = io.BytesIO()
    writer = ParquetWriter(buffer, model=MODEL, row_group_rows=1)
    writer.write(documents[0])
    written = len(buffer.getvalue())
    writer.discard()
    del writer
    gc.collect()
    assert len(buffer.getvalue()) == written
    with pytest.raises(KeyboardInterrupt), open_writer(str(tmp_path / "out.parquet"), model=MODEL) as writer:
        writer.write(documents[0])
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_bioc_is_dtd_valid_and_offsets_hold(documents):
    data = render(BiocWriter, documents)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM \"BioC.dtd\">")
    tree = _parse(data)
    dtd = _bioc_dtd()
    assert dtd.validate(tree), dtd.error_log.filter_from_errors()
    root = tree.getroot()
    assert root.findtext("source") == "mambaner" and root.findtext("date") == DATE
    assert root.findtext("key") == "mambaner.key"
    assert [d.findtext("id") for d in root.iter("document")] == [doc.id for doc in documents]
    for element, doc in zip(root.iter("document"), documents):
        ids = [a.get("id") for a in element.iter("annotation")]
        assert ids == [str(i) for i in range(len(doc.annotations))]
        for passage_element, passage in zip(element.iter("passage"), doc.passages):
            assert passage_element.findtext("infon[@key='type']") == passage.type
            assert int(passage_element.findtext("offset")) == passage.offset
            assert passage_element.findtext("text") == passage.text
        for annotation in element.iter("annotation"):
            location = annotation.find("location")
            start, length = int(location.get("offset")), int(location.get("length"))
            assert doc.text[start:start + length] == annotation.findtext("text")
            assert annotation.findtext("infon[@key='type']") == "Disease"
            assert re.fullmatch(r"[01]\.\d{4}", annotation.findtext("infon[@key='score']"))


def test_bioc_illegal_characters_keep_offsets_and_validity():
    nasty = "A\x00B\x07C\x1bD\x0cE\r\nF\tG & <H> ]]> \"I\" 'J' \ufffe K\ud800 fever"
    doc = make_document("n1", "Title\x01 x", nasty)
    doc.infons["note\x02 \"q\""] = "v\x03<&>"
    start = doc.text.index("fever")
    doc.passages[1].annotations.append(Span(start, start + 5, "fever", "Disease\x04", 0.5, 1))
    data = render(BiocWriter, [doc])
    data.decode("utf-8")  # encodable and decodable: no lone surrogate made it through
    tree = _parse(data)
    dtd = _bioc_dtd()
    assert dtd.validate(tree), dtd.error_log.filter_from_errors()
    passages = tree.getroot().findall("document/passage")
    assert passages[0].findtext("text") == "Title  x"
    text = passages[1].findtext("text")
    assert len(text) == len(nasty)  # same length: offsets stay valid
    assert text == "A B C D E\r\nF\tG & <H> ]]> \"I\" 'J'   K\ufffd fever"
    location = passages[1].find("annotation/location")
    offset = int(location.get("offset")) - int(passages[1].findtext("offset"))
    assert text[offset:offset + int(location.get("length"))] == "fever"


def test_bioc_document_without_passage_stays_valid():
    data = render(BiocWriter, [Document("lonely", [])])
    tree = _parse(data)
    dtd = _bioc_dtd()
    assert dtd.validate(tree), dtd.error_log.filter_from_errors()
    assert tree.getroot().findtext("document/id") == "lonely"


def test_bioc_with_no_document_is_well_formed_and_only_breaks_document_plus():
    data = render(BiocWriter, [])
    root = _parse(data).getroot()  # well-formed
    assert root.tag == "collection" and root.findtext("source") == "mambaner"
    assert root.findall("document") == []
    dtd = _bioc_dtd()
    assert not dtd.validate(root)  # the DTD demands document+; that is the one documented exception
    # ... and adding a single valid document would make it valid: nothing else is wrong
    document = etree.SubElement(root, "document")
    etree.SubElement(document, "id").text = "1"
    passage = etree.SubElement(document, "passage")
    etree.SubElement(passage, "offset").text = "0"
    assert dtd.validate(root), dtd.error_log.filter_from_errors()


def test_bioc_date_defaults_to_today():
    data = BiocWriter(io.BytesIO()).date
    assert re.fullmatch(r"\d{8}", data)


# ----------------------------------------------------------------------------------------------------
# JSONL and PubTator parse back


def test_jsonl_parses_back(documents):
    data = render(JsonlWriter, documents)
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == len(documents) + 1
    for line, doc in zip(lines, documents):
        record = json.loads(line)
        assert record["id"] == doc.id and record["text"] == doc.text and record["model"] == MODEL
        assert record["source"] == doc.source
        assert [p["type"] for p in record["passages"]] == [p.type for p in doc.passages]
        for passage in record["passages"]:
            assert record["text"][passage["offset"]:passage["offset"] + len(passage["text"])] == passage["text"]
        assert len(record["mentions"]) == len(doc.annotations)
        for mention, span in zip(record["mentions"], doc.annotations):
            assert record["text"][mention["start"]:mention["end"]] == mention["text"] == span.text
            assert mention["sentence"] == span.sentence_index
    assert "Sjögren".encode() in data  # ensure_ascii=False


def test_jsonl_line_separators_do_not_split_records():
    doc = make_document("s1", "a\u2028b\x85c\u2029d", "e\nf\ud800")
    data = render(JsonlWriter, [doc])
    text = data.decode("utf-8")
    assert text.splitlines() == [text.rstrip("\n")]  # one line for every notion of line
    assert json.loads(text)["text"] == doc.text


def parse_pubtator(data: bytes) -> list[dict]:
    """A minimal PubTator reader, independent of the writer."""
    docs = []
    for block in data.decode("utf-8").split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        doc_id, kind, title = lines[0].split("|", 2)
        assert kind == "t"
        doc_id2, kind, abstract = lines[1].split("|", 2)
        assert (doc_id2, kind) == (doc_id, "a")
        mentions = []
        for line in lines[2:]:
            fields = line.split("\t")
            assert len(fields) == 6 and fields[0] == doc_id and fields[5] == "-"
            mentions.append((int(fields[1]), int(fields[2]), fields[3], fields[4]))
        docs.append({"id": doc_id, "title": title, "abstract": abstract, "mentions": mentions})
    return docs


def test_pubtator_parses_back(documents):
    data = render(PubtatorWriter, documents)
    assert data.endswith(b"\n\n")
    parsed = parse_pubtator(data)
    assert [d["id"] for d in parsed] == [doc.id for doc in documents]
    for record, doc in zip(parsed, documents):
        full = record["title"] + " " + record["abstract"]
        assert len(full) == len(doc.text) or (not record["abstract"] and full == doc.text + " ")
        assert len(record["mentions"]) == len(doc.annotations)
        for (start, end, text, label), span in zip(record["mentions"], doc.annotations):
            assert full[start:end] == text == doc.text[start:end]
            assert label == "Disease"


def test_pubtator_line_breaks_in_text_keep_offsets():
    doc = make_document("7", "Line\none", "Tab\there\r\nand\u2028asthma.")
    start = doc.text.index("asthma")
    doc.passages[1].annotations.append(Span(start, start + 6, "asthma", "Disease", 0.8, 1))
    record = parse_pubtator(render(PubtatorWriter, [doc]))[0]
    assert record["title"] == "Line one"
    full = record["title"] + " " + record["abstract"]
    assert len(full) == len(doc.text)
    assert full[start:start + 6] == "asthma"


def test_pubtator_split_for_other_layouts():
    text_only = Document("x", [Passage("text", 0, "Whole text here.")])
    assert split_title_abstract(text_only) == ("Whole text here.", "")
    three = Document("y", [Passage("title", 0, "T"), Passage("abstract", 2, "A"), Passage("text", 5, "B")])
    title, abstract = split_title_abstract(three)
    assert title + " " + abstract == three.text == "T A  B"
    glued = Document("z", [Passage("title", 0, "T"), Passage("abstract", 1, "A")])
    assert split_title_abstract(glued) == ("TA", "")


# ----------------------------------------------------------------------------------------------------
# CoNLL


def test_conll_structure(documents):
    text = render(ConllWriter, documents).decode("utf-8")
    blocks = text.split("# doc_id = ")[1:]
    assert [b.split("\n", 1)[0] for b in blocks] == [doc.id for doc in documents]
    assert blocks[-1] == "91004\n\n"  # no sentence: comment line and a blank line
    for block, doc in zip(blocks, documents):
        sentences = [s for s in block.split("\n", 1)[1].split("\n\n") if s]
        if not doc.sentences:
            continue
        assert len(sentences) == len(doc.sentences)
        for chunk, sentence in zip(sentences, doc.sentences):
            rows = [line.split("\t") for line in chunk.split("\n")]
            assert [r[0] for r in rows] == [t.text for t in sentence.tokens]
            assert [r[1] for r in rows] == sentence.tags


def test_conll_derives_tags_from_annotations_when_untagged(documents):
    tagged = render(ConllWriter, documents)
    for doc in documents:
        for sentence in doc.sentences:
            sentence.tags = []
    assert render(ConllWriter, documents) == tagged


def test_conll_rejects_mismatched_tags(documents):
    documents[0].sentences[0].tags.pop()
    with pytest.raises(ValueError, match="91001"):
        render(ConllWriter, documents)


# ----------------------------------------------------------------------------------------------------
# Writer life cycle, registry, format detection


def test_registry_names():
    assert set(WRITERS) == {"parquet", "conll", "bioc", "jsonl", "pubtator"}
    assert list(WRITERS) == list(OUTPUT_FORMATS)  # a view of the format registry, in its order
    for name, cls in WRITERS.items():
        assert cls.name == name and cls.extensions == OUTPUT_FORMATS[name].extensions
    # the package's class names resolve (lazily) to the registry's classes
    assert (BiocWriter, ConllWriter, JsonlWriter, ParquetWriter, PubtatorWriter) == tuple(
        WRITERS[name] for name in ("bioc", "conll", "jsonl", "parquet", "pubtator"))


@pytest.mark.parametrize("path, fmt", [
    ("out.parquet", "parquet"), ("out.conll", "conll"), ("OUT.TSV", "conll"), ("a/b.bioc.xml", "bioc"),
    ("out.xml", "bioc"), ("out.jsonl", "jsonl"), ("out.json", "jsonl"), ("out.pubtator", "pubtator"),
    ("out.txt", "pubtator"), ("-", "jsonl"),
])
def test_detect_output_format(path, fmt):
    assert detect_output_format(path) == fmt


@pytest.mark.parametrize("path", ["out.csv", "out", "dir.parquet/out", ".parquet"])
def test_detect_output_format_unknown_says_pass_format(path):
    with pytest.raises(MambanerError, match="--format"):
        detect_output_format(path)


def test_write_after_close_fails_and_close_is_idempotent(documents):
    buffer = io.BytesIO()
    writer = JsonlWriter(buffer)
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(documents[0])


# ----------------------------------------------------------------------------------------------------
# atomic_output / open_writer


def test_atomic_output_replaces_on_success(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with atomic_output(str(target)) as stream:
        stream.write(b"new\n")
        assert target.read_text() == "old\n"  # not visible until the block ends
    assert target.read_text() == "new\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_output_failure_leaves_existing_file(tmp_path, exc):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(exc), atomic_output(str(target)) as stream:
        stream.write(b"partial")
        raise exc()
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no .part file left behind


def test_atomic_output_failure_creates_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(str(tmp_path / "new.parquet")):
        raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_atomic_output_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output(str(tmp_path / "fresh.txt")) as stream:
            stream.write(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o644
    kept = tmp_path / "kept.txt"
    kept.write_text("a")
    kept.chmod(0o640)
    with atomic_output(str(kept)) as stream:
        stream.write(b"b")
    assert kept.stat().st_mode & 0o777 == 0o640


def test_atomic_output_bad_paths(tmp_path):
    with pytest.raises(MambanerError, match="does not exist"), atomic_output(str(tmp_path / "no" / "x.jsonl")):
        pass
    with pytest.raises(MambanerError, match="directory"), atomic_output(str(tmp_path)):
        pass


def test_atomic_output_stdout(monkeypatch):
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer))
    with atomic_output("-") as stream:
        assert stream is sys.stdout.buffer
        stream.write(b"hello\n")
    assert buffer.getvalue() == b"hello\n"


def test_open_writer_end_to_end(tmp_path, documents):
    path = tmp_path / "run.bioc.xml"
    with open_writer(str(path), model=MODEL, date=DATE) as writer:
        assert isinstance(writer, BiocWriter)
        for doc in documents:
            writer.write(doc)
    assert path.read_bytes() == render(BiocWriter, documents)

    parquet = tmp_path / "run.parquet"
    with open_writer(str(parquet)) as writer:
        pass  # zero documents
    assert pq.read_table(str(parquet)).num_rows == 0

    with pytest.raises(MambanerError, match="unknown output format"), open_writer(str(tmp_path / "x"), "csv"):
        pass

    with pytest.raises(RuntimeError), open_writer(str(tmp_path / "half.jsonl")) as writer:
        writer.write(documents[0])
        raise RuntimeError
    assert not (tmp_path / "half.jsonl").exists()
    assert sorted(os.listdir(tmp_path)) == ["run.bioc.xml", "run.parquet"]
