"""The format registry: detection of every input and output format, its invariants, and that it (and the
command line built on it) stays light to import."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from mambaner_cli import formats
from mambaner_cli.errors import MambanerError
from mambaner_cli.formats import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    STDOUT_FORMAT,
    detect_input_format,
    detect_output_format,
    is_input_file,
)

FIXTURES = Path(__file__).parent / "fixtures" / "readers"
PUBMED = (FIXTURES / "efetch.xml").read_bytes()
BIOC = (FIXTURES / "sample.bioc.xml").read_bytes()
PUBTATOR = (FIXTURES / "sample.PubTator.txt").read_bytes()
TEXT = b"Just text | with a bar, and a line that looks like nothing else.\n"
REPO = Path(__file__).resolve().parent.parent

# file name, content, the format it must be read as; content None: the file does not exist
INPUT_CASES = [
    ("a.xml", PUBMED, "pubmed"),
    ("a.xml.gz", gzip.compress(PUBMED), "pubmed"),
    ("b.xml", BIOC, "bioc"),  # .xml with a <collection> root: BioC by content
    ("b.xml.gz", gzip.compress(BIOC), "bioc"),  # sniffed after decompression
    ("B.XML", BIOC, "bioc"),
    ("gzipped-but-named.xml", gzip.compress(BIOC), "bioc"),  # gzip is told by content, not name
    ("c.bioc.xml", PUBMED, "bioc"),  # .bioc.xml says BioC by name alone: the content is not consulted
    ("c.bioc.xml.gz", None, "bioc"),
    ("missing.xml", None, "pubmed"),  # unreadable: by name (reading it will report the problem)
    ("d.pubtator", TEXT, "pubtator"),
    ("d.pubtator.gz", None, "pubtator"),
    ("CDR.PubTator.txt", TEXT, "pubtator"),  # .pubtator.txt by name, whatever the content
    ("corpus.txt", PUBTATOR, "pubtator"),  # .txt whose first line is PMID|t|: PubTator by content
    ("corpus.txt.gz", gzip.compress(PUBTATOR), "pubtator"),
    ("abstract-line.txt", b"  123|a|An abstract first.\n", "pubtator"),
    ("notes.txt", TEXT, "text"),
    ("notes.txt.gz", gzip.compress(TEXT), "text"),
    ("empty.txt", b"", "text"),
    ("missing.txt", None, "text"),
]


# ids by file name: gzip output holds a time stamp, so content in the ids would differ between pytest-xdist's
# workers, which then refuse to run
@pytest.mark.parametrize("name, content, expected", INPUT_CASES, ids=[name for name, _, _ in INPUT_CASES])
def test_detect_input_format(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert detect_input_format(str(path)) == expected


def test_every_input_format_is_detected_by_some_case():
    assert {expected for _name, _content, expected in INPUT_CASES} == set(INPUT_FORMATS)


def test_detect_input_format_takes_a_head_instead_of_reading_the_file():
    assert detect_input_format("nowhere/x.xml", head=BIOC[:200]) == "bioc"
    assert detect_input_format("nowhere/x.txt", head=PUBTATOR[:50]) == "pubtator"
    assert detect_input_format("nowhere/x.txt", head=TEXT) == "text"


@pytest.mark.parametrize("path", ["paper.pdf", "notes.md", "archive.gz", "xml", "dir/.txt.bak"])
def test_unknown_input_name_says_use_input_format(path):
    with pytest.raises(MambanerError, match=r"--input-format \(pubmed\|text\|pubtator\|bioc\)"):
        detect_input_format(path)


@pytest.mark.parametrize("fmt", list(OUTPUT_FORMATS))
def test_every_output_extension_picks_its_format(fmt):
    for extension in OUTPUT_FORMATS[fmt].extensions:
        assert detect_output_format(f"dir/out{extension}") == fmt
        assert detect_output_format(f"OUT{extension.upper()}") == fmt


@pytest.mark.parametrize("path, fmt", [
    ("a/b.bioc.xml", "bioc"), ("out.pubtator", "pubtator"), ("out.txt", "pubtator"), ("out.tsv", "conll"),
    ("out.json", "jsonl"), ("-", STDOUT_FORMAT), ("-", "jsonl"),
])
def test_detect_output_format(path, fmt):
    assert detect_output_format(path) == fmt


def test_longest_output_extension_wins(monkeypatch):
    """".bioc.xml" beats ".xml" by length, not by the order formats or extensions are listed in."""
    claims = {"short": (".xml",), "long": (".bioc.xml",)}
    for order in (["short", "long"], ["long", "short"]):
        registry = {name: formats.FileFormat(name=name, extensions=claims[name], help="", module="x")
                    for name in order}
        monkeypatch.setattr(formats, "OUTPUT_FORMATS", registry)
        assert detect_output_format("a.bioc.xml") == "long"
        assert detect_output_format("a.xml") == "short"


@pytest.mark.parametrize("path", ["out.csv", "out", "dir.parquet/out", ".parquet", "out.xml.gz"])
def test_unknown_output_extension_says_pass_format(path):
    with pytest.raises(MambanerError, match=r"pass --format with one of: parquet \(\.parquet\)"):
        detect_output_format(path)


def test_directory_expansion_keeps_every_input_extension_and_nothing_else():
    for fmt in INPUT_FORMATS.values():
        for extension in fmt.extensions:
            assert is_input_file(f"a{extension}") and is_input_file(f"A{extension.upper()}.gz")
    for name in ("readme.md", "model.safetensors", "out.parquet", "x.gz", "x.xml.bz2"):
        assert not is_input_file(name)
    assert set(formats.INPUT_EXTENSIONS) == {ext for fmt in INPUT_FORMATS.values() for ext in fmt.extensions}


def test_registry_invariants():
    for registry in (INPUT_FORMATS, OUTPUT_FORMATS):
        for name, fmt in registry.items():
            assert fmt.name == name and fmt.extensions and fmt.help and "\n" not in fmt.help
            assert all(extension.startswith(".") and extension == extension.lower() for extension in fmt.extensions)
            assert set(fmt.sniffed_extensions) <= set(fmt.extensions)
    for fmt in INPUT_FORMATS.values():
        for extension in fmt.sniffed_extensions:  # a sniffed extension needs a format to fall back on
            assert any(extension in other.named_extensions for other in INPUT_FORMATS.values()), extension
    assert not any(fmt.sniffed_extensions for fmt in OUTPUT_FORMATS.values())  # an output has no content yet


def test_implementations_carry_the_registry_interface():
    for name, fmt in INPUT_FORMATS.items():
        reader = fmt.load()
        assert (reader.name, reader.extensions) == (name, fmt.extensions)
        assert callable(getattr(reader, "read", None))
        assert callable(getattr(reader, "sniff", None)) == bool(fmt.sniffed_extensions)
    for name, fmt in OUTPUT_FORMATS.items():
        writer_class = fmt.load()
        assert (writer_class.name, writer_class.extensions) == (name, fmt.extensions)
        # the registry is the one list of extensions: no writer class keeps its own
        assert "extensions" not in vars(writer_class)


def test_implementations_view_loads_lazily_and_reads_like_a_dict():
    view = formats.Implementations(OUTPUT_FORMATS)
    assert list(view) == list(OUTPUT_FORMATS) and len(view) == len(OUTPUT_FORMATS)
    assert view["jsonl"].__name__ == "JsonlWriter" and "csv" not in view
    with pytest.raises(KeyError):
        view["csv"]


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (this one has imported everything already); its stdout."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return result.stdout.strip()


HEAVY = ("pyarrow", "torch", "lxml")


@pytest.mark.parametrize("module", ["mambaner_cli.formats", "mambaner_cli.cli"])
def test_importing_the_registry_and_the_command_line_stays_light(module):
    loaded = python(f"import {module}, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert loaded == "[]"


def test_format_names_and_help_do_not_load_implementations():
    code = ("import sys; from mambaner_cli.readers import READERS; from mambaner_cli.writers import WRITERS\n"
            "names = list(READERS) + list(WRITERS)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "WRITERS['parquet']; print('pyarrow' in sys.modules)")
    assert python(code).splitlines() == ["[]", "True"]
