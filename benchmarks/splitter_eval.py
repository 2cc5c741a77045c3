"""How well sentence splitters and the tokenizer reproduce the sentences and tokens of the IOB benchmarks.

The model is trained on the standard IOB files (NCBI-disease, BC5CDR-disease), whose sentences and tokens
were cut by some other tool; at tagging time ours cut them. This script measures how closely they agree,
so the choice of splitter rests on numbers:

* the IOB sentences are aligned to the original PubTator documents (same abstracts, in another order):
  each document's non-space characters are found in the IOB file's concatenated tokens, which gives every
  IOB token and sentence a character span in ``title + " " + abstract``;
* **boundaries**: every gold sentence start inside a passage (title or abstract; the passage starts are
  free, since passages are split separately) against every predicted one: precision, recall, F1;
* **tokens**: the fraction of IOB tokens that the candidate's sentences, tokenized by
  :func:`mambaner_cli.text.tokens.tokenize`, reproduce with exactly the same span;
* **cuts in tokens**: predicted breaks that fall inside an IOB token;
* **speed**: sentences per second over all passages of the split (one core, best of ``--repeat`` runs).

Library candidates (pysbd, syntok, blingfire, nltk punkt, segtok, sentencex) are measured when installed
and skipped otherwise; ``punkt-trained`` learns its parameters from the corpus' own train split.

    python -m benchmarks.splitter_eval [--data-dir DIR] [--splits devel] [--candidates rules,pysbd]
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mambaner_cli.text.sentences import RuleSplitter
from mambaner_cli.text.tokens import token_spans

DATA_ENV = "MAMBANER_DATA"
CORPUS_FILES: dict[str, dict[str, tuple[str, str]]] = {
    "ncbi": {
        "train": ("ncbi-disease/NCBItrainset_corpus.txt", "iob/NCBI-disease-IOB/train.tsv"),
        "devel": ("ncbi-disease/NCBIdevelopset_corpus.txt", "iob/NCBI-disease-IOB/devel.tsv"),
        "test": ("ncbi-disease/NCBItestset_corpus.txt", "iob/NCBI-disease-IOB/test.tsv"),
    },
    "bc5cdr": {
        "train": ("bc5cdr/CDR_TrainingSet.PubTator.txt", "iob/BC5CDR-disease-IOB/train.tsv"),
        "devel": ("bc5cdr/CDR_DevelopmentSet.PubTator.txt", "iob/BC5CDR-disease-IOB/devel.tsv"),
        "test": ("bc5cdr/CDR_TestSet.PubTator.txt", "iob/BC5CDR-disease-IOB/test.tsv"),
    },
}
_PUBTATOR_TEXT = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$")


def data_dir(explicit: str | None = None) -> Path:
    """``--data-dir``, else ``$MAMBANER_DATA``, else ``../shared/data`` beside the repository."""
    if explicit:
        return Path(explicit)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass
class GoldDocument:
    """One PubTator document with the IOB sentences and tokens of it as character spans."""

    id: str
    title: str
    abstract: str
    sentences: list[tuple[int, int]] = field(default_factory=list)
    tokens: list[tuple[int, int]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.title + " " + self.abstract

    def passages(self) -> list[tuple[int, str]]:
        """``(offset, text)`` of the title and the abstract, as the tagging pipeline splits them."""
        return [(0, self.title), (len(self.title) + 1, self.abstract)]


def read_pubtator_texts(path: Path) -> list[GoldDocument]:
    documents: list[GoldDocument] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            match = _PUBTATOR_TEXT.match(line.rstrip("\n"))
            if match is None:
                continue
            doc_id, kind, text = match.groups()
            if kind == "t":
                documents.append(GoldDocument(doc_id, text, ""))
            elif documents and documents[-1].id == doc_id:
                documents[-1].abstract = text
            else:
                raise ValueError(f"{path}:{number}: abstract of PMID {doc_id} without its title")
    return documents


def read_iob_sentences(path: Path) -> list[list[str]]:
    sentences: list[list[str]] = []
    current: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                if current:
                    sentences.append(current)
                    current = []
                continue
            current.append(line.split("\t", 1)[0])
    if current:
        sentences.append(current)
    return sentences


def load_gold(root: Path, corpus: str, split: str) -> list[GoldDocument]:
    """The split's PubTator documents with their IOB sentence and token spans filled in."""
    pubtator_name, iob_name = CORPUS_FILES[corpus][split]
    documents = read_pubtator_texts(root / pubtator_name)
    iob = read_iob_sentences(root / iob_name)
    starts: list[int] = []  # position of each IOB sentence in the concatenation of all tokens
    pieces: list[str] = []
    position = 0
    for sentence in iob:
        starts.append(position)
        piece = "".join(sentence)
        pieces.append(piece)
        position += len(piece)
    concatenated = "".join(pieces)
    seen: set[str] = set()
    unique: list[GoldDocument] = []
    for document in documents:  # NCBI's train file holds PMID 8528200 twice; its IOB file once
        if document.id not in seen:
            seen.add(document.id)
            unique.append(document)
    documents = unique
    for document in documents:
        text = document.text
        key = "".join(text.split())
        found = concatenated.find(key)
        first = bisect.bisect_left(starts, found)
        if found < 0 or first == len(starts) or starts[first] != found:
            raise ValueError(f"{root / iob_name}: no run of sentences holds PMID {document.id}")
        last = bisect.bisect_left(starts, found + len(key))
        cursor = 0
        for sentence in iob[first:last]:
            sentence_start = -1
            for token in sentence:
                while text[cursor].isspace():
                    cursor += 1
                if not text.startswith(token, cursor):
                    raise ValueError(f"{root / iob_name}: token {token!r} not at {cursor} of PMID {document.id}")
                if sentence_start < 0:
                    sentence_start = cursor
                document.tokens.append((cursor, cursor + len(token)))
                cursor += len(token)
            document.sentences.append((sentence_start, cursor))
    return documents


# ---------------------------------------------------------------------------------------------------
# candidates: each is a function text -> sentence spans


Splitter = Callable[[str], list[tuple[int, int]]]


def spans_from_strings(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Spans of sentence strings that a library returns in order (white space around them stripped)."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        start = text.find(piece, cursor)
        if start < 0:  # a library that rewrote the text: match its non-space characters instead
            start, end = _find_loosely(text, piece, cursor)
        else:
            end = start + len(piece)
        spans.append((start, end))
        cursor = end
    return spans


def _find_loosely(text: str, piece: str, cursor: int) -> tuple[int, int]:
    while cursor < len(text) and text[cursor].isspace():
        cursor += 1
    start = cursor
    for char in piece:
        if char.isspace():
            continue
        while cursor < len(text) and text[cursor] != char:
            cursor += 1
        cursor += 1
    return start, min(cursor, len(text))


def _rules() -> Splitter:
    return RuleSplitter().split


def _pysbd() -> Splitter:
    import pysbd

    segmenter = pysbd.Segmenter(language="en", clean=False)
    return lambda text: spans_from_strings(text, segmenter.segment(text))


def _syntok() -> Splitter:
    from syntok import segmenter

    def split(text: str) -> list[tuple[int, int]]:
        return [(sentence[0].offset, sentence[-1].offset + len(sentence[-1].value))
                for paragraph in segmenter.analyze(text) for sentence in paragraph if sentence]

    return split


def _blingfire() -> Splitter:
    import blingfire

    def split(text: str) -> list[tuple[int, int]]:
        if not text.strip():
            return []
        return [tuple(span) for span in blingfire.text_to_sentences_and_offsets(text)[1]]

    return split


def _punkt() -> Splitter:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    tokenizer = PunktSentenceTokenizer()
    return lambda text: list(tokenizer.span_tokenize(text))


def _segtok() -> Splitter:
    from segtok.segmenter import split_single

    return lambda text: spans_from_strings(text, list(split_single(text)))


def _sentencex() -> Splitter:
    import sentencex

    return lambda text: spans_from_strings(text, list(sentencex.segment("en", text)))


CANDIDATES: dict[str, tuple[str, Callable[[], Splitter]]] = {
    # name -> (package whose version is shown, factory)
    "rules": ("mambaner", _rules),
    "pysbd": ("pysbd", _pysbd),
    "syntok": ("syntok", _syntok),
    "blingfire": ("blingfire", _blingfire),
    "punkt": ("nltk", _punkt),
    "punkt-trained": ("nltk", lambda: None),  # built per corpus from its train split, see below
    "segtok": ("segtok", _segtok),
    "sentencex": ("sentencex", _sentencex),
}


def _trained_punkt(train: list[GoldDocument]) -> Splitter:
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer

    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train("\n\n".join(document.text for document in train), finalize=True)
    tokenizer = PunktSentenceTokenizer(trainer.get_params())
    return lambda text: list(tokenizer.span_tokenize(text))


def version_of(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------------------------------
# scoring


@dataclass
class Score:
    true_positives: int = 0
    predicted: int = 0
    gold: int = 0
    tokens_matched: int = 0
    tokens_gold: int = 0
    cuts_in_tokens: int = 0
    sentences: int = 0
    seconds: float = 0.0

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    @property
    def token_agreement(self) -> float:
        return self.tokens_matched / self.tokens_gold if self.tokens_gold else 1.0

    @property
    def speed(self) -> float:
        return self.sentences / self.seconds if self.seconds else float("inf")


def _passage_breaks(spans: list[tuple[int, int]], offset: int) -> set[int]:
    """Sentence starts that are not the start of the passage, at document offsets."""
    return {offset + start for start, _ in spans[1:]}


def score(split: Splitter, documents: list[GoldDocument], repeat: int = 1) -> Score:
    """Boundary P/R/F1, token agreement and speed of one splitter on aligned gold documents."""
    result = Score()
    passages = [(offset, text) for document in documents for offset, text in document.passages()]
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for _, text in passages:
            split(text)
        best = min(best, time.perf_counter() - began)
    result.seconds = best
    for document in documents:
        gold_starts = {start for start, _ in document.sentences}
        token_starts = {start for start, _ in document.tokens}
        token_set = set(document.tokens)
        predicted_tokens: set[tuple[int, int]] = set()
        for offset, text in document.passages():
            spans = split(text)
            result.sentences += len(spans)
            predicted = _passage_breaks(spans, offset)
            gold = {start for start in gold_starts if offset < start < offset + len(text)}
            result.true_positives += len(predicted & gold)
            result.predicted += len(predicted)
            result.gold += len(gold)
            result.cuts_in_tokens += sum(1 for start in predicted if start not in token_starts)
            for start, end in spans:
                predicted_tokens.update((offset + start + a, offset + start + b)
                                       for a, b in token_spans(text[start:end]))
        result.tokens_matched += len(token_set & predicted_tokens)
        result.tokens_gold += len(token_set)
    return result


class _TrainSplit:
    """The corpus' train documents, read on first use (only ``punkt-trained`` needs them)."""

    def __init__(self, root: Path, corpus: str) -> None:
        self.path = root / CORPUS_FILES[corpus]["train"][0]
        self.documents: list[GoldDocument] | None = None

    def __call__(self) -> list[GoldDocument]:
        if self.documents is None:
            self.documents = read_pubtator_texts(self.path)
        return self.documents


def _splitters(names: list[str], train: Callable[[], list[GoldDocument]]) -> Iterator[tuple[str, Splitter]]:
    for name in names:
        package, factory = CANDIDATES[name]
        try:
            splitter = _trained_punkt(train()) if name == "punkt-trained" else factory()
        except ImportError:
            print(f"  ({name}: {package} is not installed, skipped)", file=sys.stderr)
            continue
        yield name, splitter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.splitter_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help=f"corpora folder (default ${DATA_ENV} or ../shared/data)")
    parser.add_argument("--corpora", default="ncbi,bc5cdr")
    parser.add_argument("--splits", default="devel", help="comma-separated: train, devel, test")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated, from: "
                        + ", ".join(CANDIDATES))
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per candidate (best is kept)")
    args = parser.parse_args(argv)
    root = data_dir(args.data_dir)
    names = [name.strip() for name in args.candidates.split(",") if name.strip()]
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    if not (root / "iob").is_dir():
        parser.error(f"no corpora under {root}: pass --data-dir or set ${DATA_ENV}")
    header = (f"{'corpus':<8} {'split':<6} {'candidate':<14} {'version':<9} {'P':>6} {'R':>6} {'F1':>6} "
              f"{'tokens':>7} {'cuts':>5} {'sent/s':>9}")
    print(header)
    print("-" * len(header))
    for corpus in args.corpora.split(","):
        train = _TrainSplit(root, corpus)
        for split in args.splits.split(","):
            documents = load_gold(root, corpus, split)
            for name, splitter in _splitters(names, train):
                result = score(splitter, documents, args.repeat)
                version = version_of(CANDIDATES[name][0]) if name != "rules" else "-"
                print(f"{corpus:<8} {split:<6} {name:<14} {version:<9} {result.precision:6.4f} "
                      f"{result.recall:6.4f} {result.f1:6.4f} {result.token_agreement:7.4f} "
                      f"{result.cuts_in_tokens:5d} {result.speed:9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
