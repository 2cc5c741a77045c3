"""Benchmark corpora: the registry of their names, where they live, how to get them, and how to read them.

Two forms of each corpus are used:

* the standard token-level IOB splits (Crichton et al. 2017; the split BioBERT and BLURB report on) —
  ``train.tsv``/``devel.tsv``/``test.tsv`` with one ``token<TAB>tag`` a line;
* the original PubTator documents (title, abstract, mention offsets) for document-level evaluation.

The data directory is ``--data-dir``, else the environment variable ``MAMBANER_DATA``, else the user
cache directory (``~/.cache/mambaner/data``), where :func:`download` puts the public files after
checking their SHA-256.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mambaner_cli._corpus_checksums import CHECKSUMS  # relative path -> sha256
from mambaner_cli.document import Document, Span
from mambaner_cli.errors import MambanerError, ReadError
from mambaner_cli.readers import pubtator
from mambaner_cli.text.sentences import segment_document

DATA_ENV = "MAMBANER_DATA"
# How a user gets the public IOB files into the cache (the error messages say it).
DOWNLOAD_HINT = "`python -m mambaner_cli.corpora download`"


# The six entity types of the multi-type tagger, as PubTator3 names them.
ENTITY_TYPES = ("Gene", "Chemical", "Disease", "Species", "Variant", "CellLine")


@dataclass(frozen=True)
class Corpus:
    """A benchmark corpus: where its files are and which of its mention types count, under which name.

    ``types`` maps each mention type of the corpus (a PubTator type, or the type in its IOB tags) to one of
    :data:`ENTITY_TYPES`; a type left out (e.g. GNormPlus's ``FamilyName``) is not a mention of this corpus
    (its tokens read as ``O``). A corpus without ``iob_folder`` is read from its PubTator files, split
    into sentences and tokens as ``mambaner tag`` splits them; one without a devel file has a devel split
    carved from train (:func:`carved_split`).
    """

    name: str
    iob_folder: str | None  # folder under iob/ holding train.tsv, devel.tsv, test.tsv; None: PubTator only
    pubtator_folder: str
    pubtator_files: dict[str, str]  # split -> file name of the original PubTator documents
    types: dict[str, str]  # the corpus's mention type -> entity type
    title: str = ""

    @property
    def entity_types(self) -> tuple[str, ...]:
        """The corpus's own mention types that are kept."""
        return tuple(self.types)

    @property
    def annotates(self) -> tuple[str, ...]:
        """The entity types this corpus marks: in its sentences, a token tagged O may still be any other."""
        return tuple(t for t in ENTITY_TYPES if t in self.types.values())

    @property
    def splits(self) -> tuple[str, ...]:
        if self.iob_folder or "train" in self.pubtator_files:
            return SPLITS
        return tuple(self.pubtator_files)


_NCBI_FILES = {"train": "NCBItrainset_corpus.txt", "devel": "NCBIdevelopset_corpus.txt",
               "test": "NCBItestset_corpus.txt"}
_CDR_FILES = {"train": "CDR_TrainingSet.PubTator.txt", "devel": "CDR_DevelopmentSet.PubTator.txt",
              "test": "CDR_TestSet.PubTator.txt"}
# NCBI-disease annotates four disease classes; the benchmark merges them into one "Disease" type.
_NCBI_TYPES = {kind: "Disease" for kind in ("SpecificDisease", "DiseaseClass", "CompositeMention", "Modifier",
                                            "Disease")}
_DISEASE = {"Disease": "Disease"}
_CHEMICAL = {"Chemical": "Chemical"}
# tmVar3's variant classes are one Variant type (PubTator3's); its genes, diseases, species and cell
# lines keep their types.
_VARIANTS = {kind: "Variant" for kind in ("DNAMutation", "ProteinMutation", "OtherMutation", "SNP", "DNAAllele",
                                          "ProteinAllele", "AcidChange")}


def _multitype(name: str, types: dict[str, str], title: str, splits: tuple[str, ...] = ("train", "test"),
               stem: str | None = None) -> Corpus:
    files = {split: f"{stem or name}_{split}.PubTator.txt" for split in splits} if splits != ("test",) else \
        {"test": f"{stem or name}.PubTator.txt"}
    return Corpus(name, None, "multitype", files, types, title)


# Gene: a specific gene or protein, as PubTator3's Gene. GNormPlus and NLM-Gene also mark gene families
# (FamilyName), domains and motifs (DomainMotif), cells and chromosome locations: not genes by their own
# guidelines, so left out (read as O in those corpora).
CORPORA: dict[str, Corpus] = {
    "ncbi": Corpus("ncbi", "NCBI-disease-IOB", "ncbi-disease", _NCBI_FILES, _NCBI_TYPES, "NCBI-disease"),
    "bc5cdr-disease": Corpus("bc5cdr-disease", "BC5CDR-disease-IOB", "bc5cdr", _CDR_FILES, _DISEASE,
                             "BC5CDR-disease"),
    "bc5cdr-chem": Corpus("bc5cdr-chem", "BC5CDR-chem-IOB", "bc5cdr", _CDR_FILES, _CHEMICAL, "BC5CDR-chem"),
    "bc5cdr": Corpus("bc5cdr", "BC5CDR-IOB", "bc5cdr", _CDR_FILES, {**_CHEMICAL, **_DISEASE}, "BC5CDR"),
    "bc2gm": Corpus("bc2gm", "BC2GM-IOB", "", {}, {"GENE": "Gene"}, "BC2GM"),
    "gnormplus": _multitype("gnormplus", {"Gene": "Gene"}, "GNormPlus"),
    "nlmgene": _multitype("nlmgene", {"Gene": "Gene"}, "NLM-Gene"),
    "species800": _multitype("species800", {"Species": "Species"}, "Species-800"),
    "linnaeus": _multitype("linnaeus", {"Species": "Species"}, "Linnaeus"),
    "tmvar3": _multitype("tmvar3", {**_VARIANTS, "Gene": "Gene", "Disease": "Disease", "Species": "Species",
                                    "CellLine": "CellLine"}, "tmVar3"),
    "bioid": _multitype("bioid", {"CellLine": "CellLine"}, "BioID"),
    "drugprot": _multitype("drugprot", {"Gene": "Gene", "Chemical": "Chemical"}, "DrugProt (test set)",
                           ("test",), stem="drugprot_test"),
    "nlmchem": _multitype("nlmchem", {"Chemical": "Chemical"}, "NLM-Chem (test set)", ("test",),
                          stem="nlmchem_test"),
}
SPLITS = ("train", "devel", "test")
# Unlabeled tokenized sentences (train and devel splits of 15 corpora; no test sentence): for pretraining.
UNLABELED_FILE = "unlabeled/mtl-sentences.txt"

# Public sources of the files, for users with internet. The checksums are those of the files in the
# project's shared data folder, which are the published originals.
_IOB_BASE = "https://raw.githubusercontent.com/cambridgeltl/MTL-Bioinformatics-2016/master/data"
DOWNLOADS: dict[str, str] = {
    f"iob/{folder}/{split}.tsv": f"{_IOB_BASE}/{folder}/{split}.tsv"
    for folder in ("NCBI-disease-IOB", "BC5CDR-disease-IOB", "BC5CDR-chem-IOB", "BC5CDR-IOB", "BC2GM-IOB")
    for split in SPLITS
}


Sentence = tuple[list[str], list[str]]  # tokens, IOB2 tags


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mambaner" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: argument, else $MAMBANER_DATA, else the user cache directory."""
    candidates = [("--data-dir", data_dir), (f"${DATA_ENV}", os.environ.get(DATA_ENV)),
                  ("cache", default_data_dir())]
    tried = []
    for origin, candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).expanduser()
        if (path / "iob").is_dir() or any((path / c.pubtator_folder).is_dir() for c in CORPORA.values()
                                          if c.pubtator_folder):
            return path
        tried.append(f"{path} ({origin})")
        if origin != "cache":  # an explicit choice that is wrong is an error, not a fallback
            break
    raise MambanerError(
        "No benchmark data found; looked in: " + ", ".join(tried)
        + f". Set {DATA_ENV}=/path/to/data (a folder with iob/ and the PubTator folders), pass "
        f"--data-dir, or run {DOWNLOAD_HINT} to fetch the public IOB files into the cache."
    )


def corpus(name: str) -> Corpus:
    try:
        return CORPORA[name]
    except KeyError:
        raise MambanerError(f"Unknown dataset {name!r}; choose from {', '.join(CORPORA)}.") from None


def covering_corpora(name: str) -> tuple[str, ...]:
    """The other corpora on the same documents (same PubTator files) that annotate every type ``name``
    annotates: BC5CDR for BC5CDR-disease and BC5CDR-chem, whose mentions are BC5CDR's, split by type.
    A model's convention of one of them tags ``name``'s types by ``name``'s own guidelines."""
    c = corpus(name)
    if not c.pubtator_files:
        return ()
    return tuple(other.name for other in CORPORA.values()
                 if other.name != name and other.pubtator_folder == c.pubtator_folder
                 and other.pubtator_files == c.pubtator_files and set(c.annotates) <= set(other.annotates))


def read_conll(path: str | os.PathLike) -> list[Sentence]:
    """Sentences of a CoNLL/IOB file: ``token<TAB>tag`` (or space-separated, tag last) a line.

    A blank line ends a sentence; ``-DOCSTART-`` lines are skipped. A line starting with ``#`` is a
    comment unless it reads as a token line (``#<TAB>O``: the corpora have ``#`` tokens). Tags must be
    strict IOB2 — ``O``, ``B-Type``, or ``I-Type`` continuing a mention of that type — because seqeval's
    strict mode silently drops a mention that starts with ``I-``: an IOB1 file would score wrongly, so
    it is refused, naming the line.
    """
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MambanerError(f"Cannot read {path}: {error.strerror or error}") from None
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as error:
            raise MambanerError(f"{path}:{number}: not UTF-8 ({error.reason})") from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        tag = parts[-1].strip()
        if line.startswith("#") and (len(parts) < 2 or not is_iob_tag(tag)):
            continue  # a comment
        if parts[0] == "-DOCSTART-":
            continue
        if len(parts) < 2:
            raise MambanerError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}")
        if not is_iob_tag(tag):
            raise MambanerError(f"{path}:{number}: {tag!r} is not an IOB2 tag (O, B-Type, I-Type)")
        if tag.startswith("I-") and (not tags or tags[-1][2:] != tag[2:]):
            previous = repr(tags[-1]) if tags else "the start of a sentence"
            raise MambanerError(f"{path}:{number}: {tag!r} follows {previous}; in IOB2 a mention starts "
                                "with B- (convert IOB1 files to IOB2 first)")
        tokens.append(parts[0])
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise MambanerError(f"{path}: no sentences found")
    return sentences


def is_iob_tag(tag: str) -> bool:
    """Whether ``tag`` is an IOB2 tag: O, B-Type or I-Type."""
    return tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)


def iob_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    if split not in SPLITS:
        raise MambanerError(f"Unknown split {split!r}; choose from {', '.join(SPLITS)}.")
    c = corpus(name)
    if not c.iob_folder:
        raise MambanerError(f"{c.title or name} has no IOB files: it is read from its PubTator files.")
    path = resolve_data_dir(data_dir) / "iob" / c.iob_folder / f"{split}.tsv"
    if not path.is_file():
        raise MambanerError(f"{path} is missing; run {DOWNLOAD_HINT} or set {DATA_ENV}.")
    return path


def pubtator_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The PubTator file of ``split`` (for a carved devel split: the train file it is carved from)."""
    c = corpus(name)
    if split not in c.splits:
        raise MambanerError(f"{c.title or name} has no {split} split (it has {', '.join(c.splits)}).")
    if split == "devel" and "devel" not in c.pubtator_files:
        split = "train"
    if split not in c.pubtator_files:
        raise MambanerError(f"{c.title or name} has no PubTator files here; only its IOB splits.")
    path = resolve_data_dir(data_dir) / c.pubtator_folder / c.pubtator_files[split]
    if not path.is_file():
        raise MambanerError(f"{path} is missing; set {DATA_ENV} to the folder holding {c.pubtator_folder}/.")
    return path


# One document in DEVEL_SHARE goes to a carved devel split (by its id's hash: stable across files and runs).
DEVEL_SHARE = 10


def carved_split(doc_id: str) -> str:
    """``devel`` or ``train``: where a document of a corpus without a devel file belongs (one in ten by
    the SHA-256 of its id, so the same document always lands on the same side)."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return "devel" if int.from_bytes(digest[:8], "big") % DEVEL_SHARE == 0 else "train"


def gold_documents(name: str, split: str, data_dir: str | os.PathLike | None = None,
                   also: Mapping[str, str] | None = None) -> list[Document]:
    """The PubTator documents of a split with their gold mentions, labelled with the corpus's entity
    types (NCBI's four disease classes are one ``Disease`` type, as in the IOB benchmark); mention
    types the corpus does not count are left out, but for those ``also`` maps to a label of the caller's
    (training reads NLM-Gene's FamilyName mentions as unknown: ``--unsure``). A mention line that does not
    match the text is skipped (the reader reports it as a warning); any other read error is an error."""
    c = corpus(name)
    types = {**c.types, **(also or {})}
    path = pubtator_path(name, split, data_dir)
    carve = split in ("train", "devel") and "devel" not in c.pubtator_files
    documents = []
    with open(path, "rb") as stream:
        for item in pubtator.read(stream, str(path), keep_annotations=True):
            if isinstance(item, ReadError):
                if item.warning:  # a malformed or mismatched annotation line: the document is still read
                    continue
                raise MambanerError(str(item))
            if carve and carved_split(item.id) != split:
                continue
            for passage in item.passages:
                passage.annotations = [Span(s.start, s.end, s.text, types[s.label])
                                       for s in passage.annotations if s.label in types]
            documents.append(item)
    return documents


def document_sentences(document: Document) -> list[Sentence]:
    """The document split into sentences and tokens as ``mambaner tag`` splits it, each token tagged
    by the mentions of ``document.annotations`` (IOB2).

    A token takes a mention's type when it overlaps it (a mention boundary inside a token widens the
    mention to the token); of overlapping mentions the longer wins (tmVar3 nests a gene in a variant);
    a mention that crosses a sentence boundary is cut there.
    """
    segment_document(document)
    mentions = sorted(document.annotations, key=lambda s: (-(s.end - s.start), s.start))
    owner: dict[int, int] = {}  # character offset -> index of the mention that owns it
    for index, span in enumerate(mentions):
        if any(offset in owner for offset in range(span.start, span.end)):
            continue
        owner.update((offset, index) for offset in range(span.start, span.end))
    sentences: list[Sentence] = []
    for sentence in document.sentences:
        tokens, tags = [], []
        previous = None
        for token in sentence.tokens:
            hits = [owner[o] for o in range(token.start, token.end) if o in owner]
            current = hits[0] if hits else None
            if current is None:
                tags.append("O")
            else:
                prefix = "I" if current == previous else "B"
                tags.append(f"{prefix}-{mentions[current].label}")
            tokens.append(token.text)
            previous = current
        if tokens:
            sentences.append((tokens, tags))
    return sentences


def _retype(sentences: list[Sentence], c: Corpus, path: Path) -> list[Sentence]:
    """IOB sentences with their tags' types mapped to entity types (BC2GM's ``GENE`` is ``Gene``)."""
    if all(c.types.get(kind) == kind for kind in c.types):
        return sentences
    out = []
    for tokens, tags in sentences:
        mapped = []
        for tag in tags:
            if tag == "O":
                mapped.append(tag)
            elif tag[2:] in c.types:
                mapped.append(f"{tag[:2]}{c.types[tag[2:]]}")
            else:
                raise MambanerError(f"{path}: tag {tag!r} is not a type of {c.title or c.name}")
        out.append((tokens, mapped))
    return out


def sentences(name: str, split: str, data_dir: str | os.PathLike | None = None,
              also: Mapping[str, str] | None = None) -> list[Sentence]:
    """The token-level split of a corpus: its IOB file, or its PubTator documents split into sentences
    (:func:`document_sentences`), tags typed as :data:`ENTITY_TYPES` (and ``also``'s labels: see
    :func:`gold_documents`; PubTator corpora only)."""
    c = corpus(name)
    if c.iob_folder:
        if also:
            raise MambanerError(f"{c.title or name} is read from IOB files, which keep only the types it counts: "
                                f"its other mention types ({', '.join(also)}) are not there")
        path = iob_path(name, split, data_dir)
        return _retype(read_conll(path), c, path)
    return [sentence for document in gold_documents(name, split, data_dir, also)
            for sentence in document_sentences(document)]


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(target: str | os.PathLike | None = None, base_urls: dict[str, str] | None = None,
             timeout: float = 60.0) -> list[Path]:
    """Fetch the public IOB files into ``target`` (default: the user cache), verifying checksums.

    A file already present with the right checksum is not fetched again; a download whose checksum
    does not match is deleted and reported, and a failed one leaves no partial file. ``base_urls`` maps
    relative paths to the URLs to fetch them from, in place of :data:`DOWNLOADS` (tests point it at a
    local server). Returns the files written.
    """
    root = Path(target) if target else default_data_dir()
    urls = DOWNLOADS if base_urls is None else base_urls
    fetched = []
    for relative, url in urls.items():
        destination = root / relative
        expected = CHECKSUMS.get(relative)
        if destination.is_file() and expected and sha256(destination) == expected:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, part = tempfile.mkstemp(dir=destination.parent, prefix=destination.name + ".", suffix=".part")
        try:
            try:
                with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out)
            except (OSError, http.client.HTTPException) as error:
                raise MambanerError(f"Could not download {url}: {error}") from error
            actual = sha256(part)
            if expected and actual != expected:
                raise MambanerError(f"Checksum mismatch for {url}: expected {expected}, got {actual}; "
                                    "the file was not kept.")
            os.chmod(part, 0o644)  # mkstemp makes it private; it is public data
            os.replace(part, destination)
        finally:
            Path(part).unlink(missing_ok=True)
        fetched.append(destination)
    return fetched


def _main(argv: Sequence[str]) -> int:
    """``python -m mambaner_cli.corpora download [DIR]`` fetches the IOB files (default: the cache);
    ``python -m mambaner_cli.corpora --checksums [DIR]`` regenerates ``_checksums.py`` from DIR."""
    if argv[:1] == ["download"]:
        for path in download(argv[1] if len(argv) > 1 else None):
            print(path)
        return 0
    if argv[:1] == ["--checksums"]:
        root = Path(argv[1]) if len(argv) > 1 else resolve_data_dir()
        doc = '"""SHA-256 of the public corpus files (generated by `python -m mambaner_cli.corpora --checksums`)."""'
        lines = [doc, "", "CHECKSUMS = {"]
        lines += [f'    "{relative}": "{sha256(root / relative)}",' for relative in DOWNLOADS]
        lines.append("}")
        Path(__file__).with_name("_corpus_checksums.py").write_text("\n".join(lines) + "\n")
        return 0
    print(_main.__doc__)
    return 2


if __name__ == "__main__":
    import sys

    try:
        sys.exit(_main(sys.argv[1:]))
    except MambanerError as error:
        sys.exit(f"Error: {error}")
