"""Sentence splitting for biomedical abstracts, with document offsets.

The model is trained on the sentences of the standard IOB benchmark files, so sentences should be cut
where those files cut them: after ``.``, ``?`` or ``!`` followed by white space and a sentence start —
but not after abbreviations (``e.g.``, ``i.e.``, ``vs.``, ``Fig.``, ``approx.``, ``et al.`` before a
lower-case word or a year), initials (``R. R. Wolff``), dotted units and routes (``mg. kg-1``,
``s.c.``), and never inside a decimal (``1.5 mg``, ``p < 0.05``) since a break needs white space.
Sentences that start with a lower-case gene or chemical name (``mRNA``, ``cTnI``, ``p53``,
``beta-Blocker``, ``alpha3``) do get their break.

The rules are plain precompiled regular expressions. Against the IOB files' own sentences (devel splits,
breaks inside passages) they score a boundary F1 of 0.999 on NCBI-disease and 0.997 on BC5CDR, above
pysbd, syntok, blingfire, nltk punkt, segtok and sentencex, at about 100,000 sentences/s on one core
(``python -m benchmarks.splitter_eval`` prints the table). Most of what is left are oddities of the IOB
sentences themselves (breaks between the initials of an author list, after "mg." in "mg. kg-1").

A break only ever falls on white space, so it never cuts a token (see :mod:`mambaner_cli.text.tokens`),
and each passage is split on its own, so a sentence never crosses a passage.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

from mambaner_cli.document import Document, Passage, Sentence
from mambaner_cli.text.tokens import tokenize


class SentenceSplitter(ABC):
    """Cuts a text into sentences."""

    @abstractmethod
    def split(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` spans of the sentences of ``text``, in order, indices into ``text``.

        Each span is stripped of surrounding white space, the spans do not overlap, and together they
        cover every non-space character; a text of white space only has no sentence.
        """


# Closing characters that stay with the sentence they end: `called "X." The` ends after the quote.
_CLOSERS = "\"'\u201d\u2019\u00bb)\\]}"
_OPENERS = "\"'\u201c\u2018\u00ab([{"
# A sentence-final mark with white space after it. ``prev`` is the whole non-space chunk before the
# mark (the first lookbehind anchors it at the start of a chunk, the second makes the mark start at the
# first of a run of marks, which keeps the search linear on "....."); ``nxt`` is the chunk after the
# space, with a detached opening quote or bracket and the chunk after it (`hemophilia. " We conclude`).
_CANDIDATE = re.compile(
    rf"(?<!\S)(?P<prev>\S*?)(?<![.!?])(?P<mark>[.!?]+)[{_CLOSERS}]*(?P<space>\s+)"
    rf"(?=(?P<nxt>(?:[{_OPENERS}]+\s+)?\S+))"
)
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")
_LAST_WORD = re.compile(r"[^\W_]+$")
_FIRST_WORD = re.compile(r"[^\W_]")
_LAST_CHUNK = re.compile(r"(\S+)\s+$")
_INITIAL = re.compile(r"[A-Z]\.")
_NAME_BEFORE_INITIAL = re.compile(r"[A-Z][a-z]+,?$|.*,$|[A-Z]\.$|[(\[]")

# Words that, with a period, never end a sentence: they are always followed by what they introduce.
_NEVER = frozenset((
    "vs", "cf", "viz", "Dr", "Drs", "Mr", "Mrs", "Ms", "Prof", "St", "Fig", "Figs", "fig", "figs", "Eq",
    "Eqs", "eq", "Ref", "Refs", "ref", "refs", "Tab", "Tabs", "approx", "Approx", "resp", "incl",
))
# Words that, with a period, introduce a number ("No. 5", "ca. 30", "pp. 12-19") but may end a
# sentence otherwise ("... answered no. The").
_NUMBERING = frozenset(("No", "Nos", "no", "nos", "Nr", "nr", "Vol", "Vols", "vol", "pp", "ca"))
# Multi-letter lower-case-ish abbreviations that may still end a sentence before a capitalised word.
_ABBREV = frozenset((
    "al", "mg", "kg", "ml", "mL", "g", "l", "h", "hr", "hrs", "min", "sec", "wk", "wks", "yr", "yrs", "mo",
    "mos", "wt", "conc", "max", "temp", "sp", "spp", "var", "subsp", "Inc", "Ltd", "Co", "Corp", "Jr",
    "Sr", "Dept", "Univ", "ed", "eds",
))
_GREEK = (
    "alpha|beta|gamma|delta|epsilon|zeta|eta|theta|iota|kappa|lambda|mu|nu|xi|omicron|pi|rho|sigma|tau"
    "|upsilon|phi|chi|psi|omega"
)
# A lower-case word that still starts a sentence: a gene/chemical name such as mRNA, cTnI, wt-VHL,
# p53, beta4, alpha-TC.
_LOWER_START = re.compile(rf"\S*[A-Z]|[a-z]{{1,3}}\d|(?:{_GREEK})[-\d(]")

_PLAIN, _WEAK, _NEVER_ENDS = 0, 1, 2
# How far back an unclosed bracket keeps a period from ending a sentence; a stray "(" earlier (a typo,
# an enumeration "1)" counted the other way) then costs at most a few missed breaks.
_BRACKET_WINDOW = 200


def _kind_of(prev: str, text: str, chunk_start: int, nxt: str) -> int:
    """Whether the chunk before a period is an ordinary word, a weak abbreviation or a never-ending one."""
    core = prev.lstrip(_OPENERS)
    match = _LAST_WORD.search(core)
    if match is None:  # "1990)." or "(APC)." : an ordinary end
        return _PLAIN
    word = match.group()
    if word in _NEVER or (word in _NUMBERING and nxt[0].isdigit()):
        return _NEVER_ENDS
    if word == core:
        if len(word) == 1 and word.isalpha():
            if word.islower():  # "s. c.", "i. e."
                return _WEAK
            initial = prev[0] in "([" or _is_initial(text, chunk_start, nxt)
            return _NEVER_ENDS if initial else _PLAIN
        return _WEAK if word in _ABBREV else _PLAIN
    if core.endswith(("e.g", "i.e", "E.g", "I.e")):
        return _NEVER_ENDS
    if "." in core:  # "s.c", "U.S", "mg./kg", "b.w": a dotted abbreviation
        return _WEAK
    return _WEAK if word in _ABBREV else _PLAIN


def _is_initial(text: str, chunk_start: int, nxt: str) -> bool:
    """Whether a lone capital with a period is a person's initial ("Wolff, R. R.", "Smith J. K.").

    It is one when another initial follows, or when it follows a name ("Wolff,", "Smith"), a comma,
    another initial or an opening bracket; a capital after anything else ends a sentence like any
    word ("vitamin D.", "hepatitis B.", "G6PD A.", "IVS14-2A > G.").
    """
    if _INITIAL.match(nxt):
        return True
    before = _LAST_CHUNK.search(text, max(0, chunk_start - 40), chunk_start)
    if before is None:
        return False
    return _NAME_BEFORE_INITIAL.match(before.group(1)) is not None


def _starts_sentence(kind: int, prev: str, nxt: str) -> bool:
    """Whether the chunk after a period begins a new sentence, given what came before the period."""
    if kind == _WEAK:  # only a capitalised word right after: "et al. The", "i.p. RESULTS"
        return nxt[0].isupper()
    match = _FIRST_WORD.search(nxt)
    if match is None:
        return False
    char = match.group()
    if char.isupper():
        return True
    if char.isdigit():
        # "in 1990. 25 patients" is a break. So is a decimal written with a space ("was 94. 3 percent",
        # "19p13. 3", an artefact of the NCBI-disease text) since the IOB sentences break there too,
        # except inside brackets ("(14. 1 percent)"), which the caller checks.
        return True
    if char.islower():
        return _LOWER_START.match(nxt, match.start()) is not None
    return False  # a letter without case (CJK…): leave the sentence whole


def _inside_brackets(text: str, start: int, end: int) -> bool:
    """Whether a bracket opened in ``text[start:end]`` is still open at ``end``: "(Blood. 2000; 95)"."""
    window = text[start:end]
    return window.count("(") + window.count("[") > window.count(")") + window.count("]")


class RuleSplitter(SentenceSplitter):
    """The rule-based splitter tuned on the IOB benchmark sentences (see the module docstring)."""

    def split(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        if "\n" in text:  # a blank line always ends a sentence (paragraphs, headings)
            position = 0
            for blank in _BLANK_LINE.finditer(text):
                self._split_block(text, position, blank.start(), spans)
                position = blank.end()
            self._split_block(text, position, len(text), spans)
        else:
            self._split_block(text, 0, len(text), spans)
        return spans

    def _split_block(self, text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            return
        sentence_start = start
        for match in _CANDIDATE.finditer(text, start, end):
            nxt = match.group("nxt")
            mark = match.group("mark")
            if "." not in mark:  # "?" or "!": a break unless a lower-case word follows
                if not nxt.lstrip(_OPENERS)[:1].islower():
                    spans.append((sentence_start, match.start("space")))
                    sentence_start = match.end()
                continue
            prev = match.group("prev")
            kind = _kind_of(prev, text, match.start(), nxt)
            if kind == _NEVER_ENDS or not _starts_sentence(kind, prev, nxt):
                continue
            if _inside_brackets(text, max(sentence_start, match.start() - _BRACKET_WINDOW), match.start("space")):
                continue
            spans.append((sentence_start, match.start("space")))
            sentence_start = match.end()
        spans.append((sentence_start, end))


_DEFAULT = RuleSplitter()


def default_splitter() -> SentenceSplitter:
    """The splitter the tagging pipeline uses (stateless, so one shared instance)."""
    return _DEFAULT


def split_passage(passage: Passage, start_index: int = 0,
                  splitter: SentenceSplitter | None = None) -> list[Sentence]:
    """The passage's sentences at document offsets, tokens filled in, numbered from ``start_index``."""
    splitter = splitter or _DEFAULT
    sentences: list[Sentence] = []
    offset = passage.offset
    text = passage.text
    for index, (start, end) in enumerate(splitter.split(text), start_index):
        sentence_text = text[start:end]
        sentences.append(Sentence(offset + start, offset + end, sentence_text,
                                  tokenize(sentence_text, offset + start), index))
    return sentences


def segment_document(doc: Document, splitter: SentenceSplitter | None = None) -> Document:
    """Fill ``passage.sentences`` of every passage; sentence indices run on across passages."""
    index = 0
    for passage in doc.passages:
        passage.sentences = split_passage(passage, index, splitter)
        index += len(passage.sentences)
    return doc
