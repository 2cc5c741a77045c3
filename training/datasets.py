"""Benchmark corpora: where they live, how to get them, and how to read them.

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
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mambaner_cli.errors import MambanerError
from training._checksums import CHECKSUMS  # relative path -> sha256

DATA_ENV = "MAMBANER_DATA"


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
        "--data-dir, or run `mambaner data download` to fetch the public files into the cache."
    )


def corpus(name: str) -> Corpus:
    try:
        return CORPORA[name]
    except KeyError:
        raise MambanerError(f"Unknown dataset {name!r}; choose from {', '.join(CORPORA)}.") from None


def read_conll(path: str | os.PathLike) -> list[Sentence]:
    """Sentences of a CoNLL/IOB file: ``token<TAB>tag`` (or space-separated, tag last) a line.

    Lines starting with ``#`` are comments; a blank line ends a sentence. IOB1 and bare tags are not
    accepted: the tag must be ``O`` or ``B-``/``I-`` followed by a type, else the error names the line.
    """
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if line.startswith("#") and not tokens and not line.startswith("#\t"):
                continue
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise MambanerError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}")
            token, tag = parts[0], parts[-1]
            if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise MambanerError(f"{path}:{number}: {tag!r} is not an IOB2 tag (O, B-Type, I-Type)")
            tokens.append(token)
            tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise MambanerError(f"{path}: no sentences found")
    return sentences


def iob_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    if split not in SPLITS:
        raise MambanerError(f"Unknown split {split!r}; choose from {', '.join(SPLITS)}.")
    path = resolve_data_dir(data_dir) / "iob" / corpus(name).iob_folder / f"{split}.tsv"
    if not path.is_file():
        raise MambanerError(f"{path} is missing; run `mambaner data download` or set {DATA_ENV}.")
    return path


def pubtator_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    c = corpus(name)
    path = resolve_data_dir(data_dir) / c.pubtator_folder / c.pubtator_files[split]
    if not path.is_file():
        raise MambanerError(f"{path} is missing; set {DATA_ENV} to the folder holding {c.pubtator_folder}/.")
    return path


def load_sentences(names: Sequence[str], split: str, data_dir: str | os.PathLike | None = None
                   ) -> list[Sentence]:
    """The IOB sentences of one split of one or more corpora, concatenated in the order given."""
    sentences: list[Sentence] = []
    for name in names:
        sentences.extend(read_conll(iob_path(name, split, data_dir)))
    return sentences


def labels_of(sentences: Iterable[Sentence]) -> list[str]:
    """IOB2 label set of the data, "O" first then B-/I- per type in sorted order."""
    types = sorted({tag[2:] for _, tags in sentences for tag in tags if tag != "O"})
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]


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
    does not match is deleted and reported. ``base_urls`` overrides the URL of each relative path
    (tests point it at a local server).
    """
    root = Path(target) if target else default_data_dir()
    urls = base_urls or DOWNLOADS
    fetched = []
    for relative, url in urls.items():
        destination = root / relative
        expected = CHECKSUMS.get(relative)
        if destination.is_file() and expected and sha256(destination) == expected:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False, suffix=".part") as part:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, part)
            except OSError as error:
                os.unlink(part.name)
                raise MambanerError(f"Could not download {url}: {error}") from error
        actual = sha256(part.name)
        if expected and actual != expected:
            os.unlink(part.name)
            raise MambanerError(f"Checksum mismatch for {url}: expected {expected}, got {actual}")
        os.replace(part.name, destination)
        fetched.append(destination)
    return fetched


if __name__ == "__main__":  # python -m training.datasets --checksums DATA_DIR : regenerate _checksums.py
    import sys

    root = Path(sys.argv[2] if len(sys.argv) > 2 else resolve_data_dir())
    lines = ['"""SHA-256 of the public corpus files (generated by `python -m training.datasets --checksums`)."""',
             "", "CHECKSUMS = {"]
    for relative in DOWNLOADS:
        lines.append(f'    "{relative}": "{sha256(root / relative)}",')
    lines.append("}")
    Path(__file__).with_name("_checksums.py").write_text("\n".join(lines) + "\n")
