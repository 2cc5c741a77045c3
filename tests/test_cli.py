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
from mambaner_cli.corpora import ENTITY_TYPES
from mambaner_cli.document import make_document
from mambaner_cli.errors import MambanerError
from mambaner_cli.formats import INPUT_FORMATS, OUTPUT_FORMATS
from mambaner_cli.runtime import run as tag_runtime
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
    """Every command and group, found by walking the CLI (a new command is covered without listing it)."""
    import click

    from mambaner_cli.cli import cli as root

    def paths(group: click.Group, prefix: list[str]):
        yield prefix
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from paths(command, [*prefix, name])
            else:
                yield [*prefix, name]

    found = list(paths(root, []))
    assert ["pubmed", "download"] in found and ["train", "pretrain"] in found
    for command in found:
        assert "Usage" in run(*command, "--help").output, command


def test_format_choices_and_help_come_from_the_registry():
    from mambaner_cli.cli.tag import tag

    choices = {param.name: getattr(param.type, "choices", None) for param in tag.params}
    assert list(choices["fmt"]) == list(OUTPUT_FORMATS)
    assert list(choices["input_format"]) == list(INPUT_FORMATS)
    help_text = run("tag", "--help").output
    for fmt in [*INPUT_FORMATS.values(), *OUTPUT_FORMATS.values()]:
        assert f"  {fmt.name} (" in help_text and fmt.help in help_text, fmt.name
        assert all(extension in help_text for extension in fmt.extensions), fmt.name
    assert "jsonl for -" in help_text and "text for -" in help_text


def test_usage_errors_exit_with_status_2(tmp_path):
    result = run("tag", "-o", tmp_path / "out.jsonl", code=2)
    assert "Give input files, directories, globs or - for stdin, or --pmid/--pmid-file/--query." in result.output
    assert "Give --pmid, --pmid-file or --query." in run("fetch", "-o", tmp_path / "x.xml", code=2).output
    assert "'csv' is not one of" in run("tag", "-", "-o", "-", "--format", "csv", code=2).output
    assert not list(tmp_path.iterdir())


class OutsideTagger:
    """Tags every token O, with full confidence: the writing side of a run, without a model."""

    name = label = "outside"
    convention = None
    num_parameters = 0

    def tag(self, sentences, batch_size: int = 32):
        return [(["O"] * len(sentence), [1.0] * len(sentence)) for sentence in sentences]


def test_tag_to_file_writes_through_open_writer(tmp_path):
    documents = [make_document("1", "A title.", "An abstract."), make_document("2", "Another.", None)]
    out = tmp_path / "out.jsonl"
    summary = tag_runtime.tag_to_file(documents, OutsideTagger(), str(out), "jsonl")
    assert summary.documents == 2 and [r["id"] for r in read_jsonl(out)] == ["1", "2"]
    assert {r["model"] for r in read_jsonl(out)} == {"outside"}
    with pytest.raises(MambanerError, match="unknown output format 'csv'"):
        tag_runtime.tag_to_file(documents, OutsideTagger(), str(tmp_path / "out.csv"), "csv")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.jsonl"]  # no part file left behind


@pytest.mark.skipif("default" not in shipped_models(), reason="no embedded default model")
def test_default_model_tags_examples(tmp_path):
    """The README's main job: the embedded model on the examples, Parquet out, every document present."""
    out = tmp_path / "out.parquet"
    run("tag", *sorted(EXAMPLES.iterdir()), "-o", out, "-q")
    table = pq.read_table(out).to_pylist()
    assert {row["doc_id"] for row in table} == {"90000001", "90000002", "90000003", "clinical_note"}
    mentions = [row for row in table if row["text"] is not None]
    assert any("Wilson disease" in row["text"] for row in mentions)  # the trained model finds mentions
    # the default tags several entity types in one pass (the examples name diseases, a gene and a drug)
    assert {"Disease", "Gene", "Chemical"} <= {row["label"] for row in mentions} <= set(ENTITY_TYPES)
    assert all(0 < row["score"] <= 1 for row in mentions)
    assert {row["model"] for row in table} == {"default"}
    # the disease-only model tags by the convention its README documents, and says so in the output
    ncbi = tmp_path / "ncbi.parquet"
    run("tag", *sorted(EXAMPLES.iterdir()), "-o", ncbi, "-q", "--model", "disease", "--convention", "ncbi")
    disease = pq.read_table(ncbi).to_pylist()
    assert {row["model"] for row in disease} == {"disease (ncbi convention)"}
    assert {row["label"] for row in disease if row["text"] is not None} == {"Disease"}


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
    result = run("tag", EXAMPLES / "clinical_note.txt", "-o", tmp_path / "x.out", code=2)  # a usage error
    assert "--format" in result.stderr
    result = run("tag", EXAMPLES / "clinical_note.txt", "-o", tmp_path / "x.jsonl", "--model",
                 tmp_path / "nowhere", code=2)  # a usage error
    assert "nowhere" in result.stderr
    result = run("tag", EXAMPLES / "clinical_note.txt", "-o", tmp_path / "x.jsonl", "--model", "disease",
                 "--convention", "nope", code=2)
    assert "has no convention 'nope'" in result.stderr
    result = run("tag", EXAMPLES / "clinical_note.txt", "-o", tmp_path / "x.jsonl", "--convention", "ncbi", code=2)
    assert "has no annotation conventions (--convention ncbi)" in result.stderr  # the default has none


def test_help_names_output_extensions_shipped_models_and_the_data_fallback():
    tag_help = " ".join(run("tag", "--help").output.split())
    for fmt in OUTPUT_FORMATS.values():  # the -o help names each format's extension, PubTator's too
        assert fmt.extensions[0] in tag_help.split("-f, --format")[0].split("-o, --output")[1], fmt.name
    assert ".pubtator" in tag_help
    assert f"A shipped model ({', '.join(shipped_models())})" in tag_help
    evaluate_help = " ".join(run("evaluate", "--help").output.split())
    assert "Default: $MAMBANER_DATA if set, else ~/.cache/mambaner/data" in evaluate_help


@pytest.mark.skipif("default" not in shipped_models(), reason="no embedded default model")
def test_encoding_options_reach_the_readers(tiny_model_dir, tmp_path, tag_jobs):
    """--encoding and --encoding-errors go through TagOptions to every reader, end to end."""
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Patients with Wilson disease and Ménière disease were seen.\n".encode("latin-1"))
    out = tmp_path / "out.jsonl"
    run("tag", latin1, "-o", out, "--encoding", "latin-1", "-q")
    (record,) = read_jsonl(out)
    assert "Ménière" in record["text"] and record["mentions"]  # the shipped model finds the diseases
    assert_offsets([record])
    assert any("Wilson disease" in mention["text"] for mention in record["mentions"])
    result = run("tag", latin1, "-o", tmp_path / "strict.jsonl", "--model", tiny_model_dir, code=1)
    assert f"{latin1}:1" in result.stderr  # strict by default: the file is an input error
    run("tag", latin1, "-o", tmp_path / "replaced.jsonl", "--encoding-errors", "replace", "--model",
        tiny_model_dir, "-q")
    assert "M\ufffdni\ufffdre" in read_jsonl(tmp_path / "replaced.jsonl")[0]["text"]
    assert [(o.encoding, o.encoding_errors) for o in tag_jobs] == [
        ("latin-1", "strict"), ("utf-8", "strict"), ("utf-8", "replace")]
    result = run("tag", latin1, "-o", tmp_path / "x.jsonl", "--encoding", "no-such-codec", code=2)
    assert "no-such-codec" in result.stderr


def test_encoding_error_choices_are_the_runtimes():
    from mambaner_cli.cli.tag import tag

    choices = {param.name: getattr(param.type, "choices", None) for param in tag.params}
    assert tuple(choices["encoding_errors"]) == tag_runtime.ENCODING_ERRORS


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


@pytest.fixture
def tag_jobs(monkeypatch) -> list:
    """The TagOptions of every run_tag_job call that `mambaner tag` makes (the job itself still runs)."""
    calls = []
    real_job = tag_runtime.run_tag_job

    def recording_job(options, observer=None):
        calls.append(options)
        return real_job(options, observer)

    monkeypatch.setattr(tag_runtime, "run_tag_job", recording_job)
    return calls


def test_files_and_pmids_are_one_run_into_one_output(eutils, tiny_model_dir, tmp_path, monkeypatch, tag_jobs):
    """A PubMed fetch is one more document source after the files: one job, one output, files first."""
    monkeypatch.setenv("NCBI_EMAIL", "tester@example.org")
    note = str(EXAMPLES / "clinical_note.txt")
    out = tmp_path / "out.jsonl"
    run("tag", note, "--pmid", "31000001,31000003", "--eutils-url", eutils.base_url, "-o", out,
        "--model", tiny_model_dir, "-q")
    assert [(r["id"], r["source"]) for r in read_jsonl(out)] == [
        ("clinical_note", note), ("31000001", "pubmed"), ("31000003", "pubmed")]
    assert_offsets(read_jsonl(out))
    (options,) = tag_jobs
    assert options.inputs == (note,) and options.output == str(out) and options.quiet
    assert options.pubmed.pmid_lists == ("31000001,31000003",) and options.pubmed.eutils_url == eutils.base_url


def test_a_file_run_and_a_pmid_run_take_the_same_path(eutils, tiny_model_dir, tmp_path, monkeypatch, tag_jobs):
    monkeypatch.setenv("NCBI_EMAIL", "tester@example.org")
    monkeypatch.setenv("NCBI_EUTILS_URL", eutils.base_url)
    common = ["--model", tiny_model_dir, "-q", "--batch-size", "7", "--input-format", "text"]
    run("tag", EXAMPLES / "clinical_note.txt", "-o", tmp_path / "file.jsonl", *common)
    run("tag", "--pmid", "31000002", "-o", tmp_path / "pubmed.jsonl", *common)
    assert [(bool(o.inputs), o.pubmed.requested, o.batch_size, o.input_format) for o in tag_jobs] == [
        (True, False, 7, "text"), (False, True, 7, "text")]
    assert [r["id"] for r in read_jsonl(tmp_path / "pubmed.jsonl")] == ["31000002"]


def test_bad_files_and_missing_pmids_are_one_summary(eutils, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NCBI_EMAIL", "tester@example.org")
    monkeypatch.setenv("COLUMNS", "1000")  # rich wraps stderr lines at the console's width
    missing = tmp_path / "missing.txt"
    result = run("tag", missing, EXAMPLES / "clinical_note.txt", "--pmid", "31000000,39999999",
                 "--eutils-url", eutils.base_url, "-o", tmp_path / "out.jsonl", "--model", tiny_model_dir, code=1)
    assert f"error: {missing}: no such file" in result.stderr
    assert "2 problem(s) in 1 input(s):" in result.stderr
    assert f"  {missing}: no such file\n  PMID 39999999: not returned by PubMed" in result.stderr
    assert "2 documents, " in result.stderr and "model tiny" in result.stderr
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["clinical_note", "31000000"]


def test_run_tag_job_as_a_library_call(tiny_model_dir, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Patients with gout were treated.", encoding="utf-8")
    out = tmp_path / "out.conll"
    options = tag_runtime.TagOptions(output=str(out), inputs=(str(good), str(tmp_path / "gone.txt")),
                                     model=str(tiny_model_dir), threads=1)
    result = tag_runtime.run_tag_job(options)  # a silent observer: nothing on stderr, all in the result
    assert (result.summary.documents, result.model_label) == (1, "tiny")
    assert result.problems == [f"{tmp_path / 'gone.txt'}: no such file"]
    assert out.read_text(encoding="utf-8").startswith("# doc_id = good\n")


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


def test_a_malformed_pmid_is_a_clear_error_not_a_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["tag", "--pmid", "12,x", "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert "'x' is not a PMID" in result.output and "Traceback" not in result.output


def test_a_malformed_annotation_line_is_a_warning_not_a_failure(tiny_model_dir, tmp_path):
    """A PubTator annotation line that cannot be read costs that line: the document is tagged, the line is
    named as a warning, and the run succeeds (exit 0)."""
    source = tmp_path / "two.pubtator"
    source.write_text("7|t|Gout in a child.\n7|a|No fever.\n7\t0\t4\n\n"
                      "8|t|Asthma again.\n8|a|Rare.\n\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["tag", str(source), "-o", str(tmp_path / "out.jsonl"), "--model",
                                      str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "two.pubtator:3" in result.output
    assert "1 warning(s)" in result.output
    documents = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [d["id"] for d in documents] == ["7", "8"]
