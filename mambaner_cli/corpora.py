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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mambaner_cli._corpus_checksums import CHECKSUMS  # relative path -> sha256
from mambaner_cli.errors import MambanerError

DATA_ENV = "MAMBANER_DATA"
# How a user gets the public IOB files into the cache (the error messages say it).
DOWNLOAD_HINT = "`python -m mambaner_cli.corpora download`"


@dataclass(frozen=True)
class Corpus:
    name: str
    iob_folder: str  # folder under iob/ holding train.tsv, devel.tsv, test.tsv
    pubtator_folder: str
    pubtator_files: dict[str, str]  # split -> file name of the original PubTator documents
    entity_types: tuple[str, ...]  # mention types kept from the PubTator files


_NCBI_FILES = {"train": "NCBItrainset_corpus.txt", "devel": "NCBIdevelopset_corpus.txt",
               "test": "NCBItestset_corpus.txt"}
_CDR_FILES = {"train": "CDR_TrainingSet.PubTator.txt", "devel": "CDR_DevelopmentSet.PubTator.txt",
              "test": "CDR_TestSet.PubTator.txt"}
# NCBI-disease annotates four disease classes; the benchmark merges them into one "Disease" type.
_NCBI_TYPES = ("SpecificDisease", "DiseaseClass", "CompositeMention", "Modifier")

CORPORA: dict[str, Corpus] = {
    "ncbi": Corpus("ncbi", "NCBI-disease-IOB", "ncbi-disease", _NCBI_FILES, _NCBI_TYPES),
    "bc5cdr-disease": Corpus("bc5cdr-disease", "BC5CDR-disease-IOB", "bc5cdr", _CDR_FILES, ("Disease",)),
    "bc5cdr-chem": Corpus("bc5cdr-chem", "BC5CDR-chem-IOB", "bc5cdr", _CDR_FILES, ("Chemical",)),
    "bc5cdr": Corpus("bc5cdr", "BC5CDR-IOB", "bc5cdr", _CDR_FILES, ("Chemical", "Disease")),
}
SPLITS = ("train", "devel", "test")
# Unlabeled tokenized sentences (train and devel splits of 15 corpora; no test sentence): for pretraining.
UNLABELED_FILE = "unlabeled/mtl-sentences.txt"

# Public sources of the files, for users with internet. The checksums are those of the files in the
# project's shared data folder, which are the published originals.
_IOB_BASE = "https://raw.githubusercontent.com/cambridgeltl/MTL-Bioinformatics-2016/master/data"
DOWNLOADS: dict[str, str] = {
    f"iob/{folder}/{split}.tsv": f"{_IOB_BASE}/{folder}/{split}.tsv"
    for folder in ("NCBI-disease-IOB", "BC5CDR-disease-IOB", "BC5CDR-chem-IOB", "BC5CDR-IOB")
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
        if (path / "iob").is_dir() or any((path / c.pubtator_folder).is_dir() for c in CORPORA.values()):
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
        if line.startswith("#") and (len(parts) < 2 or not _is_tag(tag)):
            continue  # a comment
        if parts[0] == "-DOCSTART-":
            continue
        if len(parts) < 2:
            raise MambanerError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}")
        if not _is_tag(tag):
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


def _is_tag(tag: str) -> bool:
    return tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2)


def iob_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    if split not in SPLITS:
        raise MambanerError(f"Unknown split {split!r}; choose from {', '.join(SPLITS)}.")
    path = resolve_data_dir(data_dir) / "iob" / corpus(name).iob_folder / f"{split}.tsv"
    if not path.is_file():
        raise MambanerError(f"{path} is missing; run {DOWNLOAD_HINT} or set {DATA_ENV}.")
    return path


def pubtator_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    c = corpus(name)
    path = resolve_data_dir(data_dir) / c.pubtator_folder / c.pubtator_files[split]
    if not path.is_file():
        raise MambanerError(f"{path} is missing; set {DATA_ENV} to the folder holding {c.pubtator_folder}/.")
    return path


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
