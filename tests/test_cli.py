"""The `mambaner` command line, end to end with CliRunner (a tiny seeded model; the shipped default in
one test), including bad inputs among good ones and fetching from a local E-utilities server."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from lxml import etree

from mambaner_cli.cli import cli
from mambaner_cli.runtime.model_dir import shipped_models
from tests.eutils_server import Article, EutilsServer, Fault

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DTD = REPO.parent / "shared" / "formats" / "BioC.dtd"


def run(*args: str, input: bytes | str | None = None, code: int | None = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, result.output + (result.stderr if result.stderr_bytes else "")
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_offsets(records: list[dict]) -> None:
    for record in records:
        for mention in record["mentions"]:
            assert record["text"][mention["start"]:mention["end"]] == mention["text"]


def test_every_command_has_help():
    for command in (["--help"], ["tag", "--help"], ["fetch", "--help"], ["train", "--help"],
                    ["train", "scratch", "--help"], ["train", "finetune", "--help"], ["evaluate", "--help"]):
        assert "Usage" in run(*command).output


@pytest.mark.skipif("default" not in shipped_models(), reason="no embedded default model")
def test_default_model_tags_examples(tmp_path):
    """The README's main job: the embedded model on the examples, Parquet out, every document present."""
    out = tmp_path / "out.parquet"
    run("tag", *sorted(EXAMPLES.iterdir()), "-o", out, "-q")
    table = pq.read_table(out).to_pylist()
    assert {row["doc_id"] for row in table} == {"90000001", "90000002", "90000003", "clinical_note"}
    mentions = [row for row in table if row["text"] is not None]
    assert any("Wilson disease" in row["text"] for row in mentions)  # the trained model finds mentions
    for row in mentions:
        assert row["label"] == "Disease" and 0 < row["score"] <= 1
    # the shipped default tags by the convention its README documents, and says so in the output
    assert {row["model"] for row in table} == {"default (bc5cdr-disease convention)"}
    ncbi = tmp_path / "ncbi.parquet"
    run("tag", *sorted(EXAMPLES.iterdir()), "-o", ncbi, "-q", "--convention", "ncbi")
    assert {row["model"] for row in pq.read_table(ncbi).to_pylist()} == {"default (ncbi convention)"}


def test_tag_all_formats(tiny_model_dir, tmp_path):
    inputs = [EXAMPLES / "pubmed_sample.xml", EXAMPLES / "clinical_note.txt"]
    for name in ("out.jsonl", "out.parquet", "out.conll", "out.bioc.xml", "out.pubtator"):
        run("tag", *inputs, "-o", tmp_path / name, "--model", tiny_model_dir, "-q", "--batch-size", "3")
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in records] == ["90000001", "90000002", "90000003", "clinical_note"]
    structured = records[0]["passages"][1]["text"]
    assert structured.startswith("BACKGROUND: Wilson disease") and "ATP7B expression" in structured
    assert_offsets(records)
    assert set(pq.read_table(tmp_path / "out.parquet").column("doc_id").to_pylist()) == {r["id"] for r in records}
    tree = etree.parse(str(tmp_path / "out.bioc.xml"))
    if DTD.is_file():
        assert etree.DTD(str(DTD)).validate(tree)
    assert len(tree.findall("document")) == 4
    conll = (tmp_path / "out.conll").read_text(encoding="utf-8")
    assert conll.count("# doc_id = ") == 4 and "Wilson\t" in conll


def test_stdin_to_stdout(tiny_model_dir):
    result = run("tag", "-", "-o", "-", "--format", "jsonl", "--model", tiny_model_dir, "-q",
                 input="Cystic fibrosis is common. Asthma too.\n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ["stdin"]
    assert records[0]["text"] == "Cystic fibrosis is common. Asthma too.\n"


def test_text_lines_and_directory(tiny_model_dir, tmp_path):
    folder = tmp_path / "abstracts"
    folder.mkdir()
    (folder / "a.txt").write_text("First note.\n\nSecond note about gout.\n", encoding="utf-8")
    (folder / "b.txt").write_text("Another one.", encoding="utf-8")
    run("tag", folder, "--lines", "-o", tmp_path / "out.jsonl", "--model", tiny_model_dir, "-q")
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["a:1", "a:3", "b:1"]


def test_bad_inputs_among_good_ones(tiny_model_dir, tmp_path):
    """Each bad file is named, the good documents are all written, the exit status is non-zero."""
    sample = (EXAMPLES / "pubmed_sample.xml").read_bytes()
    (tmp_path / "truncated.xml").write_bytes(sample[:sample.index(b"90000002")])  # inside the 2nd article
    (tmp_path / "notxml.xml").write_text("this is not XML at all", encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes("ok line\nbad \xe9 line\n".encode("latin-1"))
    good = tmp_path / "good.txt"
    good.write_text("Patients with lupus nephritis were treated.", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run("tag", tmp_path / "truncated.xml", tmp_path / "notxml.xml", tmp_path / "missing.txt",
                 tmp_path / "empty.txt", tmp_path / "latin1.txt", good, EXAMPLES / "pubmed_sample.xml",
                 "-o", out, "--model", tiny_model_dir, code=1)
    for name in ("truncated.xml", "notxml.xml", "missing.txt", "empty.txt", "latin1.txt:2"):
        assert name in result.stderr, name
    ids = [r["id"] for r in read_jsonl(out)]
    # the truncated file's first article is complete and kept; all good documents are there
    assert ids == ["90000001", "good", "90000001", "90000002", "90000003"]


def test_fail_fast_writes_nothing(tiny_model_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous run\n", encoding="utf-8")
    result = run("tag", tmp_path / "missing.txt", EXAMPLES / "clinical_note.txt", "-o", out,
                 "--model", tiny_model_dir, "--fail-fast", "-q", code=1)
    assert "missing.txt" in result.stderr
    assert out.read_text(encoding="utf-8") == "previous run\n"  # untouched: the run stopped first
    assert list(tmp_path.glob("*.part")) == []


def test_unknown_model_and_output_format(tmp_path):
    result = run("tag", EXAMPLES / "clinical_note.txt", "-o", tmp_path / "x.out", code=1)
    assert "--format" in result.stderr
    result = run("tag", EXAMPLES / "clinical_note.txt", "-o", tmp_path / "x.jsonl", "--model",
                 tmp_path / "nowhere", code=1)
    assert "nowhere" in result.stderr


@pytest.fixture
def eutils():
    articles = [Article(str(31000000 + i), f"Invented report {i} of sarcoidosis",
                        f"Case {i}: fever, arthritis and uveitis resolved.") for i in range(5)]
    server = EutilsServer(articles)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_fetch_and_tag_equals_tagging_the_file(eutils, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NCBI_EMAIL", "tester@example.org")
    monkeypatch.setenv("NCBI_EUTILS_URL", eutils.base_url)
    pmids = "31000000,31000001,31000004"
    run("fetch", "--pmid", pmids, "-o", tmp_path / "fetched.xml.gz", "-q")
    with gzip.open(tmp_path / "fetched.xml.gz") as handle:
        assert etree.parse(handle).getroot().tag == "PubmedArticleSet"
    run("tag", "--pmid", pmids, "-o", tmp_path / "direct.jsonl", "--model", tiny_model_dir, "-q")
    run("tag", tmp_path / "fetched.xml.gz", "-o", tmp_path / "file.jsonl", "--model", tiny_model_dir, "-q")
    direct, from_file = read_jsonl(tmp_path / "direct.jsonl"), read_jsonl(tmp_path / "file.jsonl")
    assert [r["id"] for r in direct] == pmids.split(",")
    for record in direct + from_file:
        record.pop("source")
    assert direct == from_file


def test_fetch_reports_missing_and_failed_pmids(eutils, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NCBI_EMAIL", "tester@example.org")
    (tmp_path / "pmids.txt").write_text("31000000\n# a comment\n39999999\n", encoding="utf-8")
    common = ["--eutils-url", eutils.base_url, "--model", tiny_model_dir, "--retries", "0"]
    result = run("tag", "--pmid-file", tmp_path / "pmids.txt", "-o", tmp_path / "out.jsonl",
                 "--missing", tmp_path / "missing.txt", *common, code=1)
    assert "39999999" in result.stderr  # PubMed did not return it: listed, exit status 1
    assert (tmp_path / "missing.txt").read_text().split() == ["39999999"]
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["31000000"]

    eutils.faults.append(Fault(status=500, times=None))
    result = run("tag", "--pmid", "31000001,31000002", "-o", tmp_path / "failed.jsonl", *common, code=1)
    assert "31000001, 31000002" in result.stderr and "500" in result.stderr
    assert read_jsonl(tmp_path / "failed.jsonl") == []
