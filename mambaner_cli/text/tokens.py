"""Word tokenization with character offsets, in the convention of the standard IOB benchmark files.

The NCBI-disease and BC5CDR IOB files (Crichton et al. 2017), on which the model is trained, cut text
into maximal runs of letters and digits, and make every other non-space character a token of its own:
``"2p13-p16"`` is ``2p13 - p16``, ``"mg/kg"`` is ``mg / kg``, ``"1.5"`` is ``1 . 5``, ``"(APC)"`` is
``( APC )``, ``"Alzheimer's"`` is ``Alzheimer ' s``. Letters and digits are *not* separated
(``APC2``, ``beta4``, ``11q23`` stay whole). Aligned to the original PubTator texts, this rule
reproduces every one of the 544,540 tokens of the six NCBI-disease and BC5CDR IOB files, with the same
character spans (the ``tokens`` column of ``python -m benchmarks.splitter_eval``).

The benchmark text is pure ASCII; for other text a "letter or digit" is any Unicode letter or digit
(so ``Sjögren`` and ``TNFα`` stay whole), with combining marks kept on their letter, soft hyphens and
zero-width spaces between two letters kept inside the word, and any other character that is not white
space (``β`` is a letter; ``≥``, ``±``, ``–`` are tokens of their own). The model reads each token's ASCII
form (``text/ascii.py``), as the corpora spell it.
"""

from __future__ import annotations

import re

from mambaner_cli.document import Token

# A run of letters/digits (``[^\W_]`` is \w without the underscore) with any combining marks
# (U+0300-U+036F, U+1AB0-U+1AFF, U+1DC0-U+1DFF, U+20D0-U+20FF, U+FE20-U+FE2F) attached, or any single
# other non-space character. Underscore is punctuation here, as in the IOB files' convention.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# Invisible characters that break no word: soft hyphen, zero-width space, non-joiner and joiner, word joiner,
# byte-order mark. Between two letters or digits they stay inside the word ("glio\u200bblastoma" is one
# token; features read it without them: text/ascii.py); elsewhere each is a token of its own.
_JOINERS = "\u00ad\u200b-\u200d\u2060\ufeff"
_TOKEN = re.compile(rf"[^\W_](?:[^\W_]+|[{_MARKS}]+|[{_JOINERS}]+(?=[^\W_]))*|\S[{_MARKS}]*")
# The same rule for ASCII text (PubMed is nearly all ASCII), where it needs no Unicode classes and no
# combining marks: twice as fast (timeit on NCBI text), and tokenizing is about three quarters of the
# sentence splitter's time (cProfile of segment_document).
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+|\S")


def _pattern(text: str) -> re.Pattern[str]:
    return _ASCII_TOKEN if text.isascii() else _TOKEN


def tokenize(text: str, offset: int = 0) -> list[Token]:
    """Tokens of ``text``, their offsets shifted by ``offset`` (the document offset of ``text[0]``).

    ``token.text == text[token.start - offset:token.end - offset]`` for every token, and the tokens
    cover every non-space character of ``text`` exactly once, in order.
    """
    return [Token(m.start() + offset, m.end() + offset, m.group()) for m in _pattern(text).finditer(text)]


def token_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of :func:`tokenize`, without building Token records."""
    return [m.span() for m in _pattern(text).finditer(text)]
