"""benchmarks.benchmark: the tables it prints, the subword stand-in, and the big PubMed XML it generates."""

from __future__ import annotations

import json
import os

import pytest
import torch
from lxml import etree

from benchmarks import benchmark
from benchmarks.benchmark import (
    BIG_XML_HEADER,
    FIRST_PMID,
    LENGTHS_HEADER,
    THROUGHPUT_HEADER,
    PieceTagger,
    parse_size,
    piece_count,
    piece_ids,
    write_big_pubmed_xml,
)
from mambaner_cli.readers import pubmed_xml
from mambaner_cli.runtime.spans import repair_iob

PUBTATOR = (
    "11|t|Cisplatin & <nephrotoxicity> in rats.\n"
    "11|a|Acute renal failure developed in 3 of 10 rats (p < 0.05).\n"
    "11\t0\t9\tCisplatin\tChemical\tD002945\n"
    "\n"
    "22|t|Hepatitis \"B\" and liver cancer.\n"
    "22|a|Chronic infection raises the risk of hepatocellular carcinoma.\n"
    "\n"
)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_run_prints_both_tables_for_every_model(corpus_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBANER_DATA", str(corpus_dir))
    result_file = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--tiny", "--docs", "3", "--lengths", "16,32", "--threads", "1",
                           "--json", str(result_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("command: python -m benchmarks.benchmark --quick --tiny --docs 3")
    for text in ("machine:", "load average at start:", "torch threads in the subprocesses: 1", THROUGHPUT_HEADER,
                 LENGTHS_HEADER, "docs/s", "sentences/s", "tokens/s", "peak RSS MB", "docs/s vs bert",
                 "default ms", "bert peak MB (+Δ)", "mamba130m ms", "load average at end:"):
        assert text in out, text
    throughput_rows = [line.split()[0] for line in out.split(THROUGHPUT_HEADER)[1].splitlines()[3:6]]
    assert throughput_rows == ["default", "bert", "mamba130m"]
    results = json.loads(result_file.read_text())["models"]
    for name in ("default", "bert", "mamba130m"):
        t = results[name]["throughput"]
        assert t["documents"] == t["documents_in_output"] == 3
        assert t["sentences"] > 3 and t["tokens"] > 50 and t["peak_rss_mb"] > 50
        assert [row["length"] for row in results[name]["lengths"]] == [16, 32]
        assert all(row["ms"] > 0 for row in results[name]["lengths"])
    assert results["bert"]["throughput"]["tokens"] == results["default"]["throughput"]["tokens"]
    assert 1.2 < results["bert"]["throughput"]["subwords_per_word"] < 1.6


def test_piece_rule_and_ids():
    assert [piece_count(w) for w in ("a", "kidney", "nephritis", "nephrotoxicity")] == [1, 1, 2, 3]
    ids = piece_ids("nephrotoxicity", 28996)
    assert ids == piece_ids("nephrotoxicity", 28996) and len(set(ids)) == 3
    assert all(1000 <= i < 28996 for i in ids)
    assert all(1 <= i < 50 for i in piece_ids("carcinoma", 50))


def fake_network(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Label = id mod 3 at every position (context-free, so windows must not change the answer)."""
    return torch.nn.functional.one_hot(ids % 3, 3).float() * 10


@pytest.mark.parametrize("cls_sep", [False, True])
def test_piece_tagger_tags_each_word_at_its_first_piece_across_windows(cls_sep):
    words = ["Acute", "nephrotoxicity", "and", "hepatocellular", "carcinoma", "in", "rats", "."] * 3
    vocab = 1000
    expected = [benchmark.LABELS[piece_ids(w, vocab)[0] % 3] for w in words]
    for window in (4, 7, 512):
        tagger = PieceTagger("fake", fake_network, vocab, window, cls_sep=cls_sep)
        (tags, scores), (short, _) = tagger.tag([words, ["rats"]], batch_size=2)
        assert tags == repair_iob(expected)
        assert len(scores) == len(words) and all(0.99 < s <= 1.0 for s in scores)
        assert len(short) == 1
        assert tagger.subwords == sum(piece_count(w) for w in words) + 1


def test_parse_size():
    assert parse_size("50M") == 50 * 2**20
    assert parse_size("1G") == 2**30
    assert parse_size("25k") == 25 * 2**10
    assert parse_size("1.5MiB") == int(1.5 * 2**20)
    assert parse_size("1000") == 1000
    with pytest.raises(ValueError):
        parse_size("0M")


@pytest.mark.parametrize("records", ["bare", "full"])
def test_big_xml_is_valid_pubmed_with_unique_pmids(tmp_path, records):
    source = tmp_path / "tiny.PubTator.txt"
    source.write_text(PUBTATOR, encoding="utf-8")
    xml = tmp_path / "big.xml"
    count = write_big_pubmed_xml(xml, 100_000, [source], records=records)
    size = xml.stat().st_size
    assert count > 10 and 100_000 <= size < 100_000 + 10_000
    root = etree.parse(str(xml)).getroot()  # well-formed
    assert root.tag == "PubmedArticleSet" and len(root) == count
    with open(xml, "rb") as stream:
        docs = list(pubmed_xml.read(stream, str(xml)))
    assert [doc.id for doc in docs] == [str(FIRST_PMID + k) for k in range(count)]
    # The metadata of a full record (authors, MeSH, references, copyright) is never read as text.
    assert docs[0].passages[0].text == "Cisplatin & <nephrotoxicity> in rats."
    assert docs[0].passages[1].text == "Acute renal failure developed in 3 of 10 rats (p < 0.05)."
    assert docs[3].passages[0].text == 'Hepatitis "B" and liver cancer.'


def test_full_records_are_several_times_the_bare_ones(tmp_path):
    source = tmp_path / "tiny.PubTator.txt"
    source.write_text(PUBTATOR, encoding="utf-8")
    bare = write_big_pubmed_xml(tmp_path / "bare.xml", 200_000, [source], records="bare")
    full = write_big_pubmed_xml(tmp_path / "full.xml", 200_000, [source], records="full")
    assert 3 * full < bare
    with pytest.raises(ValueError, match="records must be one of"):
        write_big_pubmed_xml(tmp_path / "x.xml", 1000, [source], records="rich")


def test_big_xml_run_checks_every_pmid(tmp_path, capsys, monkeypatch):
    (tmp_path / "bc5cdr").mkdir()
    (tmp_path / "bc5cdr" / "CDR_TestSet.PubTator.txt").write_text(PUBTATOR, encoding="utf-8")
    monkeypatch.setenv("MAMBANER_DATA", str(tmp_path))
    assert benchmark.main(["--docs", "0", "--lengths", "", "--big-xml", "4K", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert BIG_XML_HEADER in out and THROUGHPUT_HEADER not in out
    row = out.split(BIG_XML_HEADER)[1].splitlines()[3]
    assert row.split()[-1] == "yes", out
    assert "1 GiB of such XML: about" in out


def test_threads_default_to_physical_cores():
    from mambaner_cli.runtime.device import physical_cores, set_threads

    cores = physical_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert set_threads(0) == cores == torch.get_num_threads()
    assert set_threads(1) == 1 == torch.get_num_threads()
