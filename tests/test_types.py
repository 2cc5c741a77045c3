"""`mambaner tag --types`: only the mentions of the chosen entity types, in every output format, and a
usage error, before any input is read, for a type the model does not tag (a tiny seeded multi-type model)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from lxml import etree

from mambaner_cli.cli import cli
from mambaner_cli.document import make_document
from mambaner_cli.errors import MambanerUsageError
from mambaner_cli.runtime import run as tag_runtime
from mambaner_cli.runtime.pipeline import tag_chunk
from mambaner_cli.runtime.run import TagOptions, TypeFilter, run_tag_job, select_types
from tests.tiny_models import write_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

# Made up for these tests: genes, diseases and chemicals side by side.
NOTE = ("Mice without the kinase gene Zorb1 developed chronic renal failure after oral doses of lithium carbonate. "
        "Knockout animals also showed hepatic fibrosis, which ibuprofen did not prevent.\n")


@pytest.fixture(scope="module")
def multitype_model(tmp_path_factory) -> Path:
    # seed 10: the untrained network happens to predict all three types on NOTE (checked in the test)
    return write_tiny_model(tmp_path_factory.mktemp("models") / "multi", conventions=["ncbi", "bc5cdr"], seed=10)


@pytest.fixture
def note(tmp_path) -> Path:
    path = tmp_path / "note.txt"
    path.write_text(NOTE, encoding="utf-8")
    return path


def run(*args: object, code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output + (result.stderr if result.stderr_bytes else "")
    return result


def jsonl_mentions(path: Path) -> list[tuple[int, int, str, str]]:
    (record,) = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(m["start"], m["end"], m["text"], m["label"]) for m in record["mentions"]]


def parquet_mentions(path: Path) -> list[tuple[int, int, str, str]]:
    return [(r["start"], r["end"], r["text"], r["label"]) for r in pq.read_table(path).to_pylist()
            if r["label"] is not None]


def bioc_mentions(path: Path) -> list[tuple[int, int, str, str]]:
    found = []
    for annotation in etree.parse(str(path)).iter("annotation"):
        location = annotation.find("location")
        start = int(location.get("offset"))
        found.append((start, start + int(location.get("length")), annotation.findtext("text"),
                      annotation.findtext("infon[@key='type']")))
    return found


def pubtator_mentions(path: Path) -> list[tuple[int, int, str, str]]:
    lines = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
    return [(int(start), int(end), text, label) for _, start, end, text, label, _ in lines]


def conll_mentions(path: Path) -> list[tuple[str, str]]:
    """(mention text, type) from the B-TYPE/I-TYPE tags, tokens joined by a space."""
    found: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        token, tag = line.split("\t")
        if tag.startswith("B-"):
            found.append((token, tag[2:]))
        elif tag.startswith("I-"):
            assert found and found[-1][1] == tag[2:], line  # continues a mention of its own type
            found[-1] = (f"{found[-1][0]} {token}", tag[2:])
    return found


def test_types_keep_only_those_mentions_in_every_format(multitype_model, note, tmp_path):
    everything = tmp_path / "all.jsonl"
    run("tag", note, "-o", everything, "--model", multitype_model, "--device", "cpu", "-q")
    mentions = jsonl_mentions(everything)
    predicted = sorted({label for *_, label in mentions})
    assert len(predicted) >= 2, f"the seeded model should predict several types on NOTE, got {predicted}"
    dropped, kept = predicted[0], predicted[1:]
    expected = [m for m in mentions if m[3] in kept]
    assert expected and len(expected) < len(mentions)

    readers = {"jsonl": jsonl_mentions, "parquet": parquet_mentions, "bioc.xml": bioc_mentions,
               "pubtator": pubtator_mentions}
    for extension in (*readers, "conll"):
        out = tmp_path / f"kept.{extension}"
        run("tag", note, "-o", out, "--model", multitype_model, "--device", "cpu", "-q", "--types", ",".join(kept))
        if extension == "conll":  # no offsets: the mentions' tokens and types
            found = conll_mentions(out)
            assert [label for _, label in found] == [m[3] for m in expected]
            assert [text.replace(" ", "") for text, _ in found] == [m[2].replace(" ", "") for m in expected]
        else:  # the same mentions, at the same offsets, each carrying its type
            assert readers[extension](out) == expected, extension
        assert dropped not in out.read_text(encoding="utf-8", errors="replace"), extension


def test_types_are_matched_without_case_and_spelled_as_the_model_does(multitype_model, note, tmp_path):
    out = tmp_path / "out.jsonl"
    run("tag", note, "-o", out, "--model", multitype_model, "--device", "cpu", "-q", "--types", "disease, CHEMICAL")
    assert {label for *_, label in jsonl_mentions(out)} <= {"Disease", "Chemical"}


def test_a_type_the_model_does_not_tag_is_a_usage_error_before_any_input_is_read(multitype_model, tmp_path):
    missing, out = tmp_path / "missing.txt", tmp_path / "out.jsonl"  # read first, it would fail the run (1)
    result = run("tag", missing, "-o", out, "--model", multitype_model, "--types", "Disease,Species", code=2)
    assert "the model multi (ncbi convention) does not tag Species; it tags Gene, Disease, Chemical" in result.stderr
    assert "no such file" not in result.stderr and not out.exists()
    result = run("tag", missing, "-o", out, "--model", multitype_model, "--types", "Protein", code=2)
    assert "unknown entity type 'Protein'" in result.stderr
    assert "the model multi (ncbi convention) tags Gene, Disease, Chemical" in result.stderr
    assert "no such file" not in result.stderr and not out.exists()
    assert "--types names no type" in run("tag", missing, "-o", out, "--types", " , ", code=2).stderr


def test_a_directory_run_keeps_only_those_types_and_reruns_when_they_change(multitype_model, note, tmp_path):
    single = tmp_path / "single.jsonl"
    run("tag", note, "-o", single, "--model", multitype_model, "--types", "Disease")
    folder = tmp_path / "out"
    for workers in ("1", "2"):  # in this process and in the pool's workers
        run("tag", note, "-o", f"{folder}/", "--model", multitype_model, "--types", "Disease", "--format", "jsonl",
            "--workers", workers, "--overwrite")
        assert jsonl_mentions(folder / "note.jsonl") == jsonl_mentions(single)
    (record,) = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert record["settings"]["types"] == ["Disease"]
    other = run("tag", note, "-o", f"{folder}/", "--model", multitype_model, "--types", "Gene", "--format", "jsonl",
                code=2)  # other settings: refused without --overwrite, never skipped as done
    assert "--overwrite" in other.stderr


def test_the_library_call_checks_the_types_too(multitype_model, note, tmp_path):
    options = TagOptions(output=str(tmp_path / "out.jsonl"), inputs=(str(note),), model=str(multitype_model),
                         types=("CellLine",), threads=1)
    with pytest.raises(MambanerUsageError, match="does not tag CellLine"):
        run_tag_job(options)
    assert not (tmp_path / "out.jsonl").exists()


class FixedTagger:
    """Tags every sentence with the same tags (sentences of ``len(tags)`` tokens)."""

    name = label = "fixed"
    convention = None
    num_parameters = 0
    labels = ("O", "B-Gene", "I-Gene", "B-Disease", "I-Disease")

    def __init__(self, tags: list[str]) -> None:
        self.tags = tags

    def tag(self, sentences, batch_size=32):
        return [(list(self.tags), [0.5] * len(self.tags)) for _ in sentences]


def test_the_filter_drops_whole_mentions_and_keeps_the_rest_as_they_are():
    tagger = FixedTagger(["B-Gene", "I-Gene", "B-Disease", "I-Disease", "O", "B-Gene"])
    only = TypeFilter(tagger, select_types(["Disease"], tagger))
    doc = make_document("1", "aa bb cc dd ee ff", None)
    tag_chunk([doc], only, batch_size=8)
    assert doc.sentences[0].tags == ["O", "O", "B-Disease", "I-Disease", "O", "O"]
    assert [(span.text, span.label, span.score) for span in doc.annotations] == [("cc dd", "Disease", 0.5)]
    assert (only.name, only.label, only.labels) == ("fixed", "fixed", ["O", "B-Disease", "I-Disease"])
    assert select_types(["gene", "Gene", "disease"], tagger) == ("Gene", "Disease")  # once each, model's spelling
    with pytest.raises(MambanerUsageError, match="does not tag Chemical; it tags Gene, Disease"):
        select_types(["Chemical"], tagger)


def test_every_run_loads_its_model_through_the_one_filter(monkeypatch, multitype_model):
    """Directory outputs and Ray actors load the model with _load_tagger too: the filter is there, once."""
    tagger = tag_runtime._load_tagger(TagOptions(output="-", model=str(multitype_model), device="cpu",
                                                 types=("Gene",), threads=1))
    assert isinstance(tagger, TypeFilter) and tagger.types == {"Gene"}
    doc = make_document("1", NOTE, None)
    tag_chunk([doc], tagger, batch_size=8)
    assert {tag[2:] for s in doc.sentences for tag in s.tags if tag != "O"} <= {"Gene"}
