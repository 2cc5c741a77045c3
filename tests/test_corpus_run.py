"""`mambaner tag INPUTS -o DIR/` (issue 14, part 1): one output per input, a manifest, resumable reruns,
--workers. Inputs are written here; the model is the tiny seeded one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mambaner_cli.cli import cli
from mambaner_cli.runtime.corpus import MANIFEST_NAME, output_names
from tests.test_signals import LAUNCH, REPO, wait_until_reading

SENTENCE = "Patient {i} of {name} was treated for cystic fibrosis and gout. Asthma was ruled out."


class Said:
    """What a run printed, its lines joined (the console wraps at 80 columns)."""

    def __init__(self, output: str) -> None:
        self.output = " ".join(output.split())


def run(*args: object, code: int = 0) -> Said:
    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return Said(result.output)


def write_notes(folder: Path, name: str, count: int) -> Path:
    """A text file of ``count`` documents (one a line, for --lines)."""
    path = folder / name
    path.write_text("".join(SENTENCE.format(i=i, name=name) + "\n" for i in range(count)), encoding="utf-8")
    return path


def manifest(directory: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in (directory / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()]
    return {Path(record["input"]).name: record for record in records}


def doc_ids(directory: Path) -> Counter:
    return Counter(json.loads(line)["id"] for path in sorted(directory.glob("*.jsonl")) if path.name != MANIFEST_NAME
                   for line in path.read_text(encoding="utf-8").splitlines())


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    write_notes(folder, "a.txt", 3)
    write_notes(folder, "b.txt", 2)
    return folder


def tag_args(model: Path, *args: object) -> list[object]:
    return ["tag", *args, "--model", model, "--threads", "1"]


def test_one_output_per_input_and_a_manifest_record_each(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "tagged"
    result = run(*tag_args(tiny_model_dir, corpus / "a.txt", corpus / "b.txt", "-o", f"{out}/", "--lines"))
    assert sorted(os.listdir(out)) == ["a.parquet", "b.parquet", MANIFEST_NAME]  # parquet by default
    assert pq.read_table(out / "a.parquet").column("doc_id").unique().to_pylist() == ["a:1", "a:2", "a:3"]
    assert "2 input(s): 2 tagged, 0 skipped" in result.output
    record = manifest(out)["a.txt"]
    assert record["input"] == str(corpus / "a.txt")
    assert record["size"] == (corpus / "a.txt").stat().st_size
    assert record["mtime_ns"] == (corpus / "a.txt").stat().st_mtime_ns
    assert len(record["md5"]) == 32 and record["output"] == "a.parquet" and record["status"] == "tagged"
    assert (record["documents"], record["sentences"]) == (3, 6) and record["mentions"] >= 0
    assert record["errors"] == record["warnings"] == record["deleted_pmids"] == []
    assert record["settings"] == {"model": "tiny", "model_source": str(tiny_model_dir), "format": "parquet",
                                  "input_format": None, "lines": True, "encoding": "utf-8",
                                  "encoding_errors": "strict"}
    assert record["mambaner"] and record["seconds"] >= 0


def test_rerun_skips_every_input_and_a_changed_input_is_retagged(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "tagged"
    args = tag_args(tiny_model_dir, corpus, "-o", f"{out}/", "--format", "jsonl", "--lines")
    run(*args)
    first = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    again = run(*args)
    assert "2 input(s): 0 tagged, 2 skipped" in again.output and "5 documents" in again.output
    assert {name: (out / name).stat().st_mtime_ns for name in first if name != MANIFEST_NAME} == {
        name: mtime for name, mtime in first.items() if name != MANIFEST_NAME}  # not rewritten
    write_notes(corpus, "b.txt", 4)
    changed = run(*args)
    assert "2 input(s): 1 tagged, 1 skipped" in changed.output
    assert manifest(out)["b.txt"]["documents"] == 4 and len(manifest(out)) == 2
    assert doc_ids(out) == Counter([f"a:{i}" for i in (1, 2, 3)] + [f"b:{i}" for i in (1, 2, 3, 4)])


def test_other_settings_are_refused_without_overwrite(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "tagged"
    run(*tag_args(tiny_model_dir, corpus, "-o", f"{out}/", "--format", "jsonl"))
    refused = run(*tag_args(tiny_model_dir, corpus, "-o", out, "--format", "jsonl", "--lines"), code=2)
    assert "other settings (lines False → True" in refused.output and "--overwrite" in refused.output
    redone = run(*tag_args(tiny_model_dir, corpus, "-o", out, "--format", "jsonl", "--lines", "--overwrite"))
    assert "2 tagged, 0 skipped" in redone.output
    assert all(record["settings"]["lines"] for record in manifest(out).values())


def test_a_bad_file_among_good_ones_is_recorded_as_failed(tiny_model_dir, corpus, tmp_path):
    (corpus / "broken.xml").write_text("<PubmedArticleSet><PubmedArticle>", encoding="utf-8")
    (corpus / "empty.txt").write_text("", encoding="utf-8")
    out = tmp_path / "tagged"
    result = run(*tag_args(tiny_model_dir, corpus, "-o", f"{out}/", "--format", "jsonl"), code=1)
    assert "4 input(s): 2 tagged, 0 skipped, 2 failed" in result.output
    records = manifest(out)
    assert records["broken.xml"]["status"] == records["empty.txt"]["status"] == "failed"
    assert records["broken.xml"]["output"] is None and records["broken.xml"]["errors"]
    assert records["empty.txt"]["errors"] == [f"{corpus / 'empty.txt'}: empty file"]
    assert sorted(path.name for path in out.glob("*.jsonl")) == ["a.jsonl", "b.jsonl", MANIFEST_NAME]
    rerun = run(*tag_args(tiny_model_dir, corpus, "-o", out, "--format", "jsonl"), code=1)
    assert "4 input(s): 0 tagged, 2 skipped, 2 failed" in rerun.output  # failed inputs are tried again


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_run_resumes_with_every_document_exactly_once(tiny_model_dir, tmp_path, workers):
    """The second input is a FIFO that is never written: the run has finished the first input (its record is
    on disk) and is inside the second when SIGTERM comes (with two workers, the parent passes it on to the
    worker reading the FIFO). The rerun, with the second input now a file, skips the first and tags the
    second."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_notes(folder, "a.txt", 5)
    fifo = folder / "b.txt"
    os.mkfifo(fifo)
    out = tmp_path / "tagged"
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *map(str, tag_args(tiny_model_dir, folder / "a.txt", fifo, "-o", f"{out}/",
                                                          "--format", "jsonl", "--lines", "-q",
                                                          "--workers", workers))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = wait_until_reading(process, fifo)
    try:
        deadline = time.monotonic() + 60  # with two workers, the first input may still be finishing
        while not (out / MANIFEST_NAME).stat().st_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(manifest(out)) == ["a.txt"]
        assert [name for name in os.listdir(out) if name.endswith(".part")]  # b's output is being written
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        os.close(held)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert sorted(os.listdir(out)) == ["a.jsonl", MANIFEST_NAME]  # no .part file, no b output
    fifo.unlink()
    write_notes(folder, "b.txt", 3)
    result = run(*tag_args(tiny_model_dir, folder / "a.txt", folder / "b.txt", "-o", out, "--format", "jsonl",
                           "--lines"))
    assert "2 input(s): 1 tagged, 1 skipped" in result.output
    assert doc_ids(out) == Counter([f"a:{i}" for i in range(1, 6)] + [f"b:{i}" for i in range(1, 4)])
    assert len(manifest(out)) == 2


def test_two_workers_write_what_one_writes(tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, count in (("a.txt", 40), ("b.txt", 25), ("c.txt", 1)):
        write_notes(folder, name, count)
    for fmt in ("jsonl", "parquet"):
        one, two = tmp_path / f"one-{fmt}", tmp_path / f"two-{fmt}"
        run(*tag_args(tiny_model_dir, folder, "-o", f"{one}/", "--format", fmt, "--lines"))
        if fmt == "jsonl":
            run(*tag_args(tiny_model_dir, folder, "-o", f"{two}/", "--format", fmt, "--lines", "--workers", 2))
        else:  # the same outputs however the inputs were shared out: here, resumed by two workers
            run(*tag_args(tiny_model_dir, folder / "a.txt", "-o", f"{two}/", "--format", fmt, "--lines"))
            run(*tag_args(tiny_model_dir, folder, "-o", f"{two}/", "--format", fmt, "--lines", "--workers", 2))
        names = sorted(name for name in os.listdir(one) if name != MANIFEST_NAME)
        assert names == sorted(name for name in os.listdir(two) if name != MANIFEST_NAME) and len(names) == 3
        for name in names:
            if fmt == "jsonl":
                assert (one / name).read_bytes() == (two / name).read_bytes(), name
            else:
                assert pq.read_table(one / name).equals(pq.read_table(two / name)), name
        assert [name for name in os.listdir(two) if name.endswith(".part")] == []


def test_delete_citation_pmids_are_recorded(tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "update0001.xml").write_text(
        "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>11</PMID><Article><ArticleTitle>Gout in "
        "cystic fibrosis.</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
        "<DeleteCitation><PMID Version='1'>7</PMID><PMID Version='1'>8</PMID></DeleteCitation>"
        "</PubmedArticleSet>", encoding="utf-8")
    out = tmp_path / "tagged"
    run(*tag_args(tiny_model_dir, folder, "-o", f"{out}/"))
    record = manifest(out)["update0001.xml"]
    assert record["deleted_pmids"] == ["7", "8"] and record["documents"] == 1


def test_standard_input_and_pubmed_records_are_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "tagged"
    assert "standard input (-) cannot be tagged into a directory" in run("tag", "-", "-o", f"{out}/", code=2).output
    refused = run("tag", "--pmid", "1", "-o", f"{out}/", "--email", "a@b.c", code=2)
    assert "cannot be tagged into a directory" in refused.output
    assert "--overwrite applies to a directory output" in run(
        "tag", "x.txt", "-o", tmp_path / "x.jsonl", "--overwrite", code=2).output
    assert not out.exists()


def test_output_names_are_stems_and_collisions_get_a_path_hash():
    names = output_names(["in/pubmed25n0001.xml.gz", "x/doc.txt", "y/doc.txt", "z/doc.bioc.xml", "q/manifest.txt",
                          "r/note.PubTator.txt"], "jsonl")
    assert names["in/pubmed25n0001.xml.gz"] == "pubmed25n0001.jsonl"
    assert names["r/note.PubTator.txt"] == "note.jsonl"
    colliding = [names[path] for path in ("x/doc.txt", "y/doc.txt", "z/doc.bioc.xml")]
    assert len(set(colliding)) == 3 and all(name.startswith("doc-") and len(name) == len("doc-12345678.jsonl")
                                            for name in colliding)
    assert names["q/manifest.txt"].startswith("manifest-")  # never the manifest's own name
    assert output_names(["y/doc.txt", "x/doc.txt"], "jsonl") == {path: names[path] for path in ("y/doc.txt",
                                                                                              "x/doc.txt")}
