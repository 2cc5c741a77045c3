"""`mambaner evaluate`: scores checked by hand and against seqeval called directly, document-level
matching, the report and JSON, and the command end to end (tiny seeded model; the real NCBI devel split
when the corpora are present)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from mambaner_cli.cli import cli
from mambaner_cli.corpora import read_conll
from mambaner_cli.errors import MambanerError
from mambaner_cli.evaluate import (
    PAPER_TABLE_1,
    EvalArgs,
    benchmark_level,
    entities,
    error_analysis,
    evaluate,
    markdown_report,
    match_scores,
)
from mambaner_cli.metrics import entity_scores
from mambaner_cli.runtime.load import load_tagger
from tests.tiny_models import MULTITYPE_LABELS, write_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


class ScriptedTagger:
    """A stand-in for `Tagger` whose predictions are written in the test: the tags of a sentence are
    looked up by its tokens (all ``O`` for a sentence not in the script)."""

    name = "scripted"
    convention = None
    label = "scripted"
    num_parameters = 8

    def __init__(self, script: dict[tuple[str, ...], list[str]]) -> None:
        self.script = script
        self.calls = 0

    def tag(self, sentences, batch_size=32):
        self.calls += 1
        return [(list(self.script.get(tuple(tokens), ["O"] * len(tokens))), [1.0] * len(tokens))
                for tokens in sentences]


class PhraseTagger:
    """A stand-in for `Tagger` that tags every (case-insensitive) occurrence of known phrases as Disease,
    whatever the sentence splitting and tokenization: for the document level."""

    name = "phrases"
    convention = None
    label = "phrases"
    num_parameters = 3

    def __init__(self, phrases: list[str]) -> None:
        self.phrases = [phrase.lower().split() for phrase in phrases]

    def tag(self, sentences, batch_size=32):
        results = []
        for tokens in sentences:
            words = [t.lower() for t in tokens]
            tags = ["O"] * len(words)
            for phrase in self.phrases:
                for i in range(len(words) - len(phrase) + 1):
                    if words[i:i + len(phrase)] == phrase and tags[i] == "O":
                        tags[i:i + len(phrase)] = ["B-Disease"] + ["I-Disease"] * (len(phrase) - 1)
            results.append((tags, [1.0] * len(tags)))
        return results


# Five gold mentions, six predicted: three exact, one boundary error (fibrosis for cystic fibrosis), one
# type error (Aspirin as a Disease), one spurious (findings).
GOLD = [
    (["Patients", "with", "breast", "cancer", "and", "cystic", "fibrosis", "."],
     ["O", "O", "B-Disease", "I-Disease", "O", "B-Disease", "I-Disease", "O"]),
    (["Aspirin", "reduced", "the", "risk", "of", "colon", "cancer", "."],
     ["B-Chemical", "O", "O", "O", "O", "B-Disease", "I-Disease", "O"]),
    (["No", "findings", "were", "reported", "."], ["O", "O", "O", "O", "O"]),
    (["Autosomal", "dominant", "polycystic", "kidney", "disease", "is", "inherited", "."],
     ["B-Disease", "I-Disease", "I-Disease", "I-Disease", "I-Disease", "O", "O", "O"]),
]
PREDICTED = [
    ["O", "O", "B-Disease", "I-Disease", "O", "O", "B-Disease", "O"],
    ["B-Disease", "O", "O", "O", "O", "B-Disease", "I-Disease", "O"],
    ["O", "B-Disease", "O", "O", "O"],
    ["B-Disease", "I-Disease", "I-Disease", "I-Disease", "I-Disease", "O", "O", "O"],
]


def scripted() -> ScriptedTagger:
    return ScriptedTagger({tuple(tokens): tags for (tokens, _), tags in zip(GOLD, PREDICTED)})


def write_conll(path: Path, sentences) -> Path:
    path.write_text("\n\n".join("\n".join(f"{t}\t{g}" for t, g in zip(tokens, tags)) for tokens, tags in sentences)
                    + "\n", encoding="utf-8")
    return path


def test_benchmark_scores_by_hand_and_by_seqeval(tmp_path):
    data = read_conll(write_conll(tmp_path / "gold.tsv", GOLD))
    assert data == GOLD
    result = benchmark_level(scripted(), data, batch_size=2, top=10)

    # By hand: 3 of 6 predictions right, 3 of 5 gold mentions found.
    assert result["precision"] == pytest.approx(50.0)
    assert result["recall"] == pytest.approx(60.0)
    assert result["f1"] == pytest.approx(100 * 2 * 0.5 * 0.6 / 1.1)
    disease, chemical = result["per_type"]["Disease"], result["per_type"]["Chemical"]
    assert (disease["precision"], disease["recall"], disease["support"]) == (pytest.approx(50.0), 75.0, 4)
    assert disease["f1"] == pytest.approx(60.0)
    assert (chemical["precision"], chemical["recall"], chemical["f1"], chemical["support"]) == (0, 0, 0, 1)
    assert (result["gold_mentions"], result["predicted_mentions"], result["sentences"]) == (5, 6, 4)
    assert result["tokens"] == sum(len(tokens) for tokens, _ in GOLD)
    assert result["sentences_per_s"] > 0 and result["tokens_per_s"] > result["sentences_per_s"]

    # And seqeval, called directly on the same predictions.
    report = classification_report([tags for _, tags in GOLD], PREDICTED, mode="strict", scheme=IOB2,
                                   output_dict=True, zero_division=0)
    assert result["precision"] == pytest.approx(100 * report["micro avg"]["precision"])
    assert result["recall"] == pytest.approx(100 * report["micro avg"]["recall"])
    assert result["f1"] == pytest.approx(100 * report["micro avg"]["f1-score"])
    for label in ("Disease", "Chemical"):
        assert result["per_type"][label]["f1"] == pytest.approx(100 * report[label]["f1-score"])
        assert result["per_type"][label]["support"] == report[label]["support"]


def test_a_boundary_error_is_both_a_false_positive_and_a_false_negative():
    gold = [["B-Disease", "I-Disease", "O", "B-Disease"]]
    assert entity_scores(gold, [["B-Disease", "I-Disease", "O", "B-Disease"]])["f1"] == 100.0
    partial = entity_scores(gold, [["O", "B-Disease", "O", "B-Disease"]])
    assert (partial["precision"], partial["recall"]) == (50.0, 50.0)
    longer = entity_scores(gold, [["B-Disease", "I-Disease", "I-Disease", "I-Disease"]])
    assert (longer["precision"], longer["recall"], longer["f1"]) == (0.0, 0.0, 0.0)


def test_entities_are_those_of_seqeval_strict_mode():
    assert entities(["B-D", "I-D", "O", "B-C", "B-C", "I-C"]) == [(0, 2, "D"), (3, 4, "C"), (4, 6, "C")]
    # A mention cannot start with I- in strict IOB2; seqeval drops it, so must the error analysis.
    assert entities(["I-D", "I-D", "O", "B-D", "I-C"]) == [(3, 4, "D")]
    assert entities([]) == []


def test_error_analysis_lists_counts_and_length_buckets():
    errors = error_analysis(GOLD, PREDICTED, top=10)
    assert sorted((e["mention"], e["type"], e["count"]) for e in errors["false_positives"]) == \
        [("Aspirin", "Disease", 1), ("fibrosis", "Disease", 1), ("findings", "Disease", 1)]
    assert sorted((e["mention"], e["type"], e["count"]) for e in errors["false_negatives"]) == \
        [("Aspirin", "Chemical", 1), ("cystic fibrosis", "Disease", 1)]
    assert errors["false_positive_kinds"] == {"wrong type": 1, "wrong boundaries": 1, "spurious": 1}
    by_length = errors["f1_by_length"]
    assert list(by_length) == ["1", "2", "4+"]  # no mention of 3 tokens
    assert {k: (v["gold"], v["predicted"], v["correct"]) for k, v in by_length.items()} == \
        {"1": (1, 3, 0), "2": (3, 2, 2), "4+": (1, 1, 1)}
    assert by_length["2"]["precision"] == 100.0 and by_length["2"]["recall"] == pytest.approx(200 / 3)
    assert by_length["2"]["f1"] == pytest.approx(80.0)
    assert by_length["1"]["f1"] == 0.0 and by_length["4+"]["f1"] == 100.0
    # The buckets add up to the totals that seqeval scores.
    assert sum(v["correct"] for v in by_length.values()) == 3
    assert sum(v["predicted"] for v in by_length.values()) == 6


def test_error_analysis_counts_repeats_and_keeps_the_top():
    data = [(["flu"], ["O"])] * 3 + [(["cold"], ["O"])]
    errors = error_analysis(data, [["B-Disease"]] * 4, top=1)
    assert errors["false_positives"] == [{"mention": "flu", "type": "Disease", "count": 3}]
    assert errors["false_negatives"] == []


def test_match_scores_exact_and_overlap():
    gold = [{(0, 13, "Disease"), (17, 32, "Disease"), (40, 47, "Chemical")}, {(5, 10, "Disease")}, set()]
    predicted = [
        {(0, 13, "Disease"),  # exact
         (24, 32, "Disease"),  # inside a gold mention: overlap only
         (40, 47, "Disease")},  # right place, wrong type: no match at all
        {(0, 6, "Disease"), (9, 20, "Disease")},  # both overlap the one gold mention
        {(3, 4, "Disease")},  # spurious
    ]
    exact = match_scores(gold, predicted, overlap=False)
    assert (exact["gold"], exact["predicted"]) == (4, 6)
    assert exact["precision"] == pytest.approx(100 / 6) and exact["recall"] == pytest.approx(25.0)
    assert exact["f1"] == pytest.approx(20.0)
    near = match_scores(gold, predicted, overlap=True)
    assert near["precision"] == pytest.approx(400 / 6)  # 4 of 6 predictions overlap a gold of their type
    assert near["recall"] == pytest.approx(75.0)  # 3 of 4 gold mentions are overlapped
    assert near["f1"] == pytest.approx(100 * 2 * (4 / 6) * 0.75 / (4 / 6 + 0.75))
    # Touching is not overlapping (ends are exclusive); nothing predicted scores 0, not an error.
    assert match_scores([{(0, 5, "D")}], [{(5, 9, "D")}], overlap=True)["f1"] == 0.0
    assert match_scores([set()], [set()], overlap=False) == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                              "gold": 0, "predicted": 0}


# --- a whole evaluation on a small data folder of our own ------------------------------------------------

TITLE = "Breast cancer in cystic fibrosis carriers."
ABSTRACT = "Colon cancer was rare. Aspirin was given."


@pytest.fixture
def small_data(tmp_path) -> Path:
    """A data folder laid out like the real one: NCBI devel as IOB sentences and as a PubTator document."""
    root = tmp_path / "data"
    text = TITLE + " " + ABSTRACT
    mentions = [("Breast cancer", "SpecificDisease"), ("cystic fibrosis", "Modifier"),
                ("Colon cancer", "DiseaseClass"), ("Aspirin", "Chemical")]  # not an NCBI type: left out
    lines = [f"101|t|{TITLE}", f"101|a|{ABSTRACT}"]
    for mention, kind in mentions:
        start = text.index(mention)
        lines.append(f"101\t{start}\t{start + len(mention)}\t{mention}\t{kind}\tD0")
    (root / "ncbi-disease").mkdir(parents=True)
    (root / "ncbi-disease" / "NCBIdevelopset_corpus.txt").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    (root / "iob" / "NCBI-disease-IOB").mkdir(parents=True)
    write_conll(root / "iob" / "NCBI-disease-IOB" / "devel.tsv", [
        (["Breast", "cancer", "in", "cystic", "fibrosis", "carriers", "."],
         ["B-Disease", "I-Disease", "O", "B-Disease", "I-Disease", "O", "O"]),
        (["Colon", "cancer", "was", "rare", "."], ["B-Disease", "I-Disease", "O", "O", "O"]),
        (["Aspirin", "was", "given", "."], ["O", "O", "O", "O"]),
    ])
    return root


def test_evaluate_both_levels_with_known_answers(small_data):
    tagger = PhraseTagger(["breast cancer", "fibrosis", "colon cancer", "rare"])
    result = evaluate(EvalArgs(dataset="ncbi", split="devel", data_dir=str(small_data)), tagger=tagger)
    assert (result["model"], result["dataset"], result["split"]) == ("phrases", "ncbi", "devel")
    b = result["benchmark"]  # 2 of 4 predictions right, 2 of 3 gold mentions found
    assert (b["precision"], b["recall"]) == (pytest.approx(50.0), pytest.approx(200 / 3))
    d = result["document"]
    assert (d["documents"], d["sentences"]) == (1, 3)
    assert (d["exact"]["gold"], d["exact"]["predicted"]) == (3, 4)
    assert d["exact"]["precision"] == pytest.approx(50.0) and d["exact"]["recall"] == pytest.approx(200 / 3)
    assert d["overlap"]["precision"] == pytest.approx(75.0) and d["overlap"]["recall"] == pytest.approx(100.0)
    e = result["efficiency"]
    assert e["parameters"] == e["trainable_parameters"] == 3
    assert e["peak_rss_mb"] > 10 and e["wall_seconds"] > 0 and e["machine"]["cores"] >= 1
    report = markdown_report(result, "mambaner evaluate --dataset ncbi --split devel")
    assert "| mambaner `phrases` | 57.14 | – | 3 |" in report  # F1 of P=50, R=66.67, in the NCBI column
    assert "| exact | 50.00 | 66.67 | 57.14 | 3 | 4 |" in report
    assert "| overlap | 75.00 | 100.00 | 85.71 | 3 | 4 |" in report


def test_evaluate_fails_early_and_clearly(small_data, tmp_path):
    tagger = ScriptedTagger({})
    with pytest.raises(MambanerError, match=r"Unknown dataset 'NCBI'; choose from ncbi, bc5cdr-disease, "
                                            r"bc5cdr-chem, bc5cdr"):
        evaluate(EvalArgs(dataset="NCBI", data_dir=str(small_data)), tagger=tagger)
    with pytest.raises(MambanerError, match=r"NCBItestset_corpus\.txt|test\.tsv is missing"):
        evaluate(EvalArgs(dataset="ncbi", split="test", data_dir=str(small_data)), tagger=tagger)
    (small_data / "ncbi-disease" / "NCBIdevelopset_corpus.txt").unlink()
    with pytest.raises(MambanerError, match=r"NCBIdevelopset_corpus\.txt is missing.*--no-documents skips it"):
        evaluate(EvalArgs(dataset="ncbi", split="devel", data_dir=str(small_data)), tagger=tagger)
    assert tagger.calls == 0  # every error came before any tagging
    result = evaluate(EvalArgs(dataset="ncbi", split="devel", data_dir=str(small_data), document_level=False),
                      tagger=tagger)
    assert "document" not in result and result["benchmark"]["f1"] == 0.0


def test_paper_table_matches_the_paper():
    """The published rows are copied from the paper's Table 1; check them against its text."""
    paper = Path(__file__).resolve().parent.parent.parent / "shared" / "seed" / "mambaner-paper.txt"
    if not paper.is_file():
        pytest.skip("the paper's text is not here")
    text = paper.read_text(encoding="utf-8")
    table = text[text.index("Table 1."):text.index("CONCLUSION")]
    for model, ncbi, bc5, params, ram in PAPER_TABLE_1:
        name = model.removesuffix(" (paper)")
        mantissa, exponent = params.split("×10^")
        # The text extraction lost the superscripts (1.1×10^8 reads 1.1×108); RAM follows, or is absent.
        ram_pattern = rf"\s*{re.escape(ram)}" if ram else r" ?\n\n(?!>)"
        assert re.search(rf"{name} {ncbi:.2f} {bc5:.2f} {re.escape(mantissa)}×10{exponent}{ram_pattern}", table), model


# --- the command ----------------------------------------------------------------------------------------

def run(*args: object, code: int = 0, env: dict | None = None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert result.exit_code == code, result.output + (result.stderr if result.stderr_bytes else "")
    return result


def test_command_on_a_gold_file_agrees_with_seqeval(tiny_model_dir, tmp_path):
    gold = write_conll(tmp_path / "gold.tsv", GOLD)
    out_json, out_md = tmp_path / "out.json", tmp_path / "out.md"
    result = run("evaluate", "--conll", gold, "--model", tiny_model_dir, "--device", "cpu",
                 "--json", out_json, "--report", out_md)
    numbers = json.loads(out_json.read_text(encoding="utf-8"))
    assert (numbers["model"], numbers["dataset"], numbers["split"], numbers["gold"]) == \
        ("tiny", None, None, str(gold))
    assert "document" not in numbers

    # Independently: the same model's predictions, scored by seqeval directly.
    predicted = [tags for tags, _ in load_tagger(tiny_model_dir, device="cpu").tag([t for t, _ in GOLD])]
    report = classification_report([tags for _, tags in GOLD], predicted, mode="strict", scheme=IOB2,
                                    output_dict=True, zero_division=0)
    b = numbers["benchmark"]
    assert b["f1"] == pytest.approx(100 * report["micro avg"]["f1-score"])
    assert b["precision"] == pytest.approx(100 * report["micro avg"]["precision"])
    assert b["recall"] == pytest.approx(100 * report["micro avg"]["recall"])
    assert b["gold_mentions"] == 5 and b["sentences"] == 4

    e = numbers["efficiency"]
    tiny = load_tagger(tiny_model_dir, device="cpu")
    assert e["parameters"] == tiny.num_parameters == e["trainable_parameters"]
    assert e["peak_rss_mb"] > 10 and e["wall_seconds"] > 0 and e["peak_gpu_mb"] is None
    assert {"cpu", "cores", "torch", "torch_threads", "gpu"} <= set(e["machine"])

    md = out_md.read_text(encoding="utf-8")
    assert md.startswith(f"# mambaner evaluate: {gold}\n")
    for model, ncbi, bc5, params, _ in PAPER_TABLE_1:
        assert f"| {model} | {ncbi:.2f} | {bc5:.2f} | {params} |" in md
    assert "| mambaner `tiny` | – | – |" in md and "measured here" in md
    for heading in ("## Benchmark level", "## Efficiency", "## Error analysis", "Most frequent false positives",
                    "Most frequent false negatives", "Strict scores by mention length"):
        assert heading in md
    assert "strict micro" in result.stderr and "published" in result.stderr


def test_command_errors(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("Fever\tB-Disease\nchills\tX-Disease\n", encoding="utf-8")
    result = run("evaluate", "--conll", bad, "--model", tiny_model_dir, code=1)
    assert f"{bad}:2: 'X-Disease' is not an IOB2 tag" in result.stderr
    result = run("evaluate", "--dataset", "ncbi-disease", "--model", tmp_path / "no-model", code=1)
    assert "Unknown dataset 'ncbi-disease'; choose from ncbi, bc5cdr-disease, bc5cdr-chem, bc5cdr" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("evaluate", "--model", tiny_model_dir, code=1, env={"MAMBANER_DATA": str(empty)})
    assert f"looked in: {empty} ($MAMBANER_DATA)" in result.stderr
    assert "Set MAMBANER_DATA=" in result.stderr


def test_command_on_the_real_ncbi_devel_split(tiny_model_dir, corpus_dir, tmp_path):
    out_json, out_md = tmp_path / "out.json", tmp_path / "out.md"
    run("evaluate", "--dataset", "ncbi", "--split", "devel", "--model", tiny_model_dir, "--device", "cpu",
        "--batch-size", "64", "--json", out_json, "--report", out_md, "--quiet",
        env={"MAMBANER_DATA": str(corpus_dir)})
    numbers = json.loads(out_json.read_text(encoding="utf-8"))
    assert (numbers["dataset"], numbers["split"]) == ("ncbi", "devel")
    b, d = numbers["benchmark"], numbers["document"]
    assert b["sentences"] == 923 and b["gold_mentions"] == b["per_type"]["Disease"]["support"] > 700
    assert set(b["per_type"]) == {"Disease"}
    assert {"false_positives", "false_negatives", "false_positive_kinds", "f1_by_length"} <= set(b["errors"])
    assert d["documents"] == 100 and d["exact"]["gold"] > 700
    assert 0 <= d["exact"]["f1"] <= d["overlap"]["f1"] <= 100
    md = out_md.read_text(encoding="utf-8")
    assert md.startswith("# mambaner evaluate: ncbi (devel)")
    assert f"| mambaner `tiny` | {b['f1']:.2f} | – |" in md
    assert all(f"| {row[0]} | {row[1]:.2f} | {row[2]:.2f} |" in md for row in PAPER_TABLE_1)
    assert "## Document level" in md


# --- every corpus of the registry, only the types it annotates, the convention, published figures --------

class TypedPhraseTagger(PhraseTagger):
    """:class:`PhraseTagger` with a type per phrase, and the labels a multi-type model has."""

    name = label = "typed"
    labels = tuple(MULTITYPE_LABELS)

    def __init__(self, phrases: dict[str, str]) -> None:
        self.typed = [(phrase.lower().split(), kind) for phrase, kind in phrases.items()]

    def tag(self, sentences, batch_size=32):
        results = []
        for tokens in sentences:
            words, tags = [t.lower() for t in tokens], ["O"] * len(tokens)
            for phrase, kind in self.typed:
                for i in range(len(words) - len(phrase) + 1):
                    if words[i:i + len(phrase)] == phrase and tags[i] == "O":
                        tags[i:i + len(phrase)] = [f"B-{kind}"] + [f"I-{kind}"] * (len(phrase) - 1)
            results.append((tags, [1.0] * len(tags)))
        return results


# Made up: a chemical, two diseases and a gene, the way BC5CDR's files would carry them.
CDR_TITLE = "Lithium and renal failure."
CDR_ABSTRACT = "Renal failure followed lithium use in two patients with the Zorb1 variant."
CDR_MENTIONS = [("Lithium", "Chemical"), ("renal failure", "Disease"), ("Renal failure", "Disease"),
                ("lithium", "Chemical")]
CDR_SENTENCES = [(["Lithium", "and", "renal", "failure", "."], ["B-Chemical", "O", "B-Disease", "I-Disease", "O"]),
                 (["Renal", "failure", "followed", "lithium", "use", "in", "two", "patients", "with", "the",
                   "Zorb1", "variant", "."],
                  ["B-Disease", "I-Disease", "O", "B-Chemical"] + ["O"] * 9)]


def pubtator_document(doc_id: str, title: str, abstract: str, mentions: list[tuple[str, str]]) -> list[str]:
    """The lines of one PubTator document; each mention is found at its first occurrence after the last."""
    text, lines, at = f"{title} {abstract}", [f"{doc_id}|t|{title}", f"{doc_id}|a|{abstract}"], 0
    for mention, kind in mentions:
        start = text.index(mention, at) if mention in text[at:] else text.index(mention)
        at = start + len(mention)
        lines.append(f"{doc_id}\t{start}\t{at}\t{mention}\t{kind}\tD0")
    return lines


@pytest.fixture
def cdr_data(tmp_path) -> Path:
    """BC5CDR's devel and test splits, one made-up document each, as IOB files (the disease view, the
    chemical view and both) and as PubTator files."""
    root = tmp_path / "data"
    (root / "bc5cdr").mkdir(parents=True)
    lines = pubtator_document("201", CDR_TITLE, CDR_ABSTRACT, CDR_MENTIONS)
    for split, name in (("devel", "CDR_DevelopmentSet.PubTator.txt"), ("test", "CDR_TestSet.PubTator.txt")):
        (root / "bc5cdr" / name).write_text("\n".join(lines) + "\n\n", encoding="utf-8")
        for folder, kinds in (("BC5CDR-disease-IOB", {"Disease"}), ("BC5CDR-chem-IOB", {"Chemical"}),
                              ("BC5CDR-IOB", {"Disease", "Chemical"})):
            (root / "iob" / folder).mkdir(parents=True, exist_ok=True)
            write_conll(root / "iob" / folder / f"{split}.tsv",
                        [(tokens, [t if t == "O" or t[2:] in kinds else "O" for t in tags])
                         for tokens, tags in CDR_SENTENCES])
    return root


# Every phrase right; Zorb1 a gene that no BC5CDR view marks.
CDR_TAGGER = {"lithium": "Chemical", "renal failure": "Disease", "zorb1": "Gene"}


def test_predictions_of_types_the_corpus_does_not_annotate_are_not_scored(cdr_data):
    for dataset, scored in (("bc5cdr-disease", ["Disease"]), ("bc5cdr-chem", ["Chemical"]),
                            ("bc5cdr", ["Chemical", "Disease"])):
        result = evaluate(EvalArgs(dataset=dataset, split="devel", data_dir=str(cdr_data)),
                          tagger=TypedPhraseTagger(CDR_TAGGER))
        assert result["scored_types"] == scored
        assert result["not_scored_types"] == [t for t in ("Gene", "Disease", "Chemical") if t not in scored]
        b, d = result["benchmark"], result["document"]
        # every prediction of a scored type is right; the others (Zorb1 always) are not counted as wrong
        assert (b["precision"], b["recall"], b["predicted_mentions"]) == (100.0, 100.0, 2 * len(scored)), dataset
        assert set(b["per_type"]) == set(scored)
        for kind in ("exact", "overlap"):
            assert (d[kind]["precision"], d[kind]["recall"], d[kind]["predicted"]) == (100.0, 100.0, 2 * len(scored))
            assert set(d[kind]["per_type"]) == set(scored)
            assert all(d[kind]["per_type"][t]["f1"] == 100.0 for t in scored)


def test_a_gold_file_scores_every_type(tmp_path):
    gold = write_conll(tmp_path / "gold.tsv", CDR_SENTENCES)
    result = evaluate(EvalArgs(conll=str(gold)), tagger=TypedPhraseTagger(CDR_TAGGER))
    assert result["scored_types"] is None and result["not_scored_types"] == []
    assert result["benchmark"]["predicted_mentions"] == 5  # Zorb1 counts: a false positive here
    assert set(result["benchmark"]["per_type"]) == {"Chemical", "Disease", "Gene"}


def test_the_convention_is_the_corpus_own_else_one_on_the_same_documents_else_the_default():
    from mambaner_cli.corpora import covering_corpora
    from mambaner_cli.evaluate import choose_convention

    assert covering_corpora("bc5cdr-disease") == covering_corpora("bc5cdr-chem") == ("bc5cdr",)
    assert covering_corpora("bc5cdr") == covering_corpora("ncbi") == covering_corpora("bc2gm") == ()
    conventions = ["ncbi", "bc5cdr", "gnormplus"]
    assert choose_convention("ncbi", conventions)[0] == "ncbi"
    assert choose_convention("gnormplus", conventions)[0] == "gnormplus"
    chosen, why = choose_convention("bc5cdr-disease", conventions)
    assert chosen == "bc5cdr" and "same documents" in why
    assert choose_convention("bc5cdr-chem", conventions)[0] == "bc5cdr"
    assert choose_convention("bc5cdr-chem", ["bc5cdr-disease", "ncbi"])[0] is None  # it does not mark chemicals
    assert choose_convention("bc2gm", conventions) == (None, "the model's default: it has no convention for bc2gm")
    assert choose_convention("ncbi", [])[0] is None
    assert choose_convention("ncbi", conventions, asked="bc5cdr") == ("bc5cdr", "asked for (--convention)")
    assert choose_convention(None, conventions)[0] is None  # a gold file


def test_published_figures_are_those_the_issue_lists():
    """Only the figures issue 16 gives; a new one needs its source, not a guess."""
    from mambaner_cli.evaluate import PUBLISHED_F1

    assert {name: [(p.system, p.f1, p.approximate) for p in rows] for name, rows in PUBLISHED_F1.items()} == {
        "ncbi": [("PubMedBERT", 87.82, False), ("BioLinkBERT-base", 88.18, False),
                 ("BiLSTM-CNN-char (Spark NLP)", 89.13, False)],
        "bc5cdr-disease": [("PubMedBERT", 85.62, False), ("BioLinkBERT-base", 86.10, False)],
        "bc5cdr-chem": [("BioBERT", 93.47, False), ("PubMedBERT", 93.33, False)],
        "bc2gm": [("PubMedBERT", 84.52, False)],
        "bc5cdr": [("scispaCy (chemicals and diseases together)", 84, True)],
    }


def test_the_report_puts_published_figures_beside_ours(cdr_data):
    result = evaluate(EvalArgs(dataset="bc5cdr-disease", split="test", data_dir=str(cdr_data)),
                      tagger=TypedPhraseTagger(CDR_TAGGER))
    assert [p["system"] for p in result["published"]] == ["PubMedBERT", "BioLinkBERT-base"]
    md = markdown_report(result, "mambaner evaluate --dataset bc5cdr-disease")
    published = md[md.index("## Published figures"):md.index("## Comparison with the paper")]
    assert "| PubMedBERT | 85.62 | published |" in published
    assert "| BioLinkBERT-base | 86.10 | published |" in published
    assert "| mambaner `typed` | 100.00 | measured here (test split," in published
    assert "not comparable" not in published
    assert "Scored types: Disease (what bc5cdr-disease annotates); the model's predictions of Gene, Chemical " \
           "are not scored" in md
    assert "| exact: Disease | 100.00 | 100.00 | 100.00 | 2 | 2 |" in md and "| exact | 100.00 |" in md
    both = evaluate(EvalArgs(dataset="bc5cdr", split="devel", data_dir=str(cdr_data)),
                    tagger=TypedPhraseTagger(CDR_TAGGER))
    md = markdown_report(both, "mambaner evaluate --dataset bc5cdr --split devel")
    assert "| scispaCy (chemicals and diseases together) | ≈84 | published |" in md
    assert "Ours is on the devel split; the published figures are on test: not comparable." in md


@pytest.fixture
def gene_data(tmp_path) -> Path:
    """GNormPlus's train and test files (multitype/), made-up documents: enough train documents that a
    devel split is carved from them."""
    from mambaner_cli.corpora import carved_split

    root = tmp_path / "data"
    (root / "multitype").mkdir(parents=True)
    title, abstract = "The Zorb1 kinase.", "Zorb1 binds the Quix family of proteins in yeast."
    mentions = [("Zorb1", "Gene"), ("Zorb1", "Gene"), ("Quix family", "FamilyName")]
    ids = [str(300 + n) for n in range(40)]
    assert {carved_split(i) for i in ids} == {"train", "devel"}
    for name, split_ids in (("gnormplus_train", ids), ("gnormplus_test", ids[:2])):
        lines = [line for i in split_ids for line in [*pubtator_document(i, title, abstract, mentions), ""]]
        (root / "multitype" / f"{name}.PubTator.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_a_pubtator_only_corpus_with_a_carved_devel_split(gene_data):
    from mambaner_cli.corpora import carved_split

    devel = [str(300 + n) for n in range(40) if carved_split(str(300 + n)) == "devel"]
    tagger = TypedPhraseTagger({"zorb1": "Gene", "yeast": "Chemical"})  # yeast: not a GNormPlus type
    result = evaluate(EvalArgs(dataset="gnormplus", split="devel", data_dir=str(gene_data)), tagger=tagger)
    assert result["gold"].endswith("gnormplus_train.PubTator.txt (devel: one of every 10 documents, by the "
                                   "SHA-256 of the document id)")
    b, d = result["benchmark"], result["document"]
    assert (b["gold_mentions"], b["precision"], b["recall"]) == (2 * len(devel), 100.0, 100.0)  # FamilyName: O
    assert d["documents"] == len(devel) and d["exact"]["f1"] == 100.0
    assert result["not_scored_types"] == ["Disease", "Chemical"]
    md = markdown_report(result, "mambaner evaluate --dataset gnormplus --split devel")
    assert "No published figure listed for GNormPlus." in md
    assert "published figures on it are not directly comparable" in md
    assert "has no standard IOB split" in md
    with pytest.raises(MambanerError, match="has no devel split"):
        evaluate(EvalArgs(dataset="drugprot", split="devel", data_dir=str(gene_data)), tagger=tagger)


def test_an_iob_only_corpus_skips_the_document_level(tmp_path):
    root = tmp_path / "data"
    (root / "iob" / "BC2GM-IOB").mkdir(parents=True)
    write_conll(root / "iob" / "BC2GM-IOB" / "test.tsv", [(["The", "Zorb1", "gene", "."], ["O", "B-GENE", "O", "O"])])
    result = evaluate(EvalArgs(dataset="bc2gm", data_dir=str(root)), tagger=TypedPhraseTagger({"zorb1": "Gene"}))
    assert "document" not in result and "only its IOB split" in result["document_skipped"]
    assert result["benchmark"]["f1"] == 100.0 and result["benchmark"]["per_type"]["Gene"]["support"] == 1
    md = markdown_report(result, "mambaner evaluate --dataset bc2gm")
    assert "| PubMedBERT | 84.52 | published |" in md and "Document level: not run" in md


def test_command_with_a_multitype_model_picks_the_convention_of_the_same_documents(cdr_data, tmp_path):
    model = write_tiny_model(tmp_path / "multi", conventions=["ncbi", "bc5cdr", "gnormplus"])
    out_json, out_md = tmp_path / "out.json", tmp_path / "out.md"
    result = run("evaluate", "--dataset", "bc5cdr-disease", "--split", "devel", "--data-dir", cdr_data, "--model",
                 model, "--device", "cpu", "--json", out_json, "--report", out_md,
                 env={"COLUMNS": "1000"})  # rich wraps stderr lines at the console's width
    numbers = json.loads(out_json.read_text(encoding="utf-8"))
    assert numbers["convention"] == "bc5cdr" and "same documents" in numbers["convention_source"]
    assert numbers["scored_types"] == ["Disease"] and numbers["not_scored_types"] == ["Gene", "Chemical"]
    assert set(numbers["benchmark"]["per_type"]) <= {"Disease"}
    assert set(numbers["document"]["exact"]["per_type"]) <= {"Disease"}
    md = out_md.read_text(encoding="utf-8")
    assert "Convention: `bc5cdr` (bc5cdr's: the same documents" in md
    assert "convention bc5cdr: bc5cdr's: the same documents" in result.stderr
    assert "published strict F1 on bc5cdr-disease (test): 85.62 PubMedBERT, 86.10 BioLinkBERT-base" in result.stderr


def test_command_on_the_real_gnormplus_carved_devel_split(corpus_dir, tmp_path):
    """A PubTator-only corpus of the real data: the devel documents carved from train, at both levels."""
    from mambaner_cli.corpora import carved_split, pubtator_path

    model = write_tiny_model(tmp_path / "multi", conventions=["ncbi", "gnormplus"])
    out_json = tmp_path / "out.json"
    run("evaluate", "--dataset", "gnormplus", "--split", "devel", "--model", model, "--device", "cpu", "--quiet",
        "--json", out_json, env={"MAMBANER_DATA": str(corpus_dir)})
    numbers = json.loads(out_json.read_text(encoding="utf-8"))
    assert (numbers["convention"], numbers["scored_types"]) == ("gnormplus", ["Gene"])
    train = pubtator_path("gnormplus", "train", corpus_dir).read_text(encoding="utf-8")
    ids = {line.split("|")[0] for line in train.splitlines() if "|t|" in line}
    assert numbers["document"]["documents"] == sum(carved_split(i) == "devel" for i in ids) > 20
    assert set(numbers["benchmark"]["per_type"]) <= {"Gene"} and numbers["benchmark"]["gold_mentions"] > 200
