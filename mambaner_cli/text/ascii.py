"""The ASCII form of a token, as the training corpora write it: what the model's features read.

Every corpus the models learn from is ASCII (PubTator's and the IOB benchmarks' texts spell out Greek
letters: "beta-thalassemia", "TNF-alpha"), while PubMed's XML and most new text write "β-thalassemia",
"TNF-α", "Sjögren", "glio\u00adblastoma". The network has never seen those characters: a word with one is an
unknown word of unknown characters. So features (word, characters, case, lexicon) are read from the ASCII
form; the token itself, its text and offsets, are untouched — outputs quote the document as written.

    ascii_form("β") == "beta"; ascii_form("TNFα") == "TNFalpha"; ascii_form("Sjögren") == "Sjogren"
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Punctuation that has an ASCII twin in the corpora (dashes and minus signs, quotes and primes).
_PUNCTUATION = {
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-"),
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),  # (NFKD has made a double prime two primes)
}
_GREEK_PREFIXES = ("GREEK SMALL LETTER ", "GREEK CAPITAL LETTER ")


def _char_form(char: str) -> str:
    """One character's ASCII form: Greek letters by name, punctuation by its twin, format characters
    (zero-width spaces, soft hyphens) dropped; anything else as it is."""
    if char in _PUNCTUATION:
        return _PUNCTUATION[char]
    if unicodedata.category(char) == "Cf":
        return ""
    name = unicodedata.name(char, "")
    for prefix in _GREEK_PREFIXES:
        if name.startswith(prefix):
            letter = name[len(prefix):].split()[0].lower()  # "FINAL SIGMA" and "ALPHA WITH TONOS" too
            letter = "sigma" if letter == "final" else letter
            return letter if prefix.startswith("GREEK SMALL") else letter.capitalize()
    return char


@lru_cache(maxsize=1 << 16)
def ascii_form(token: str) -> str:
    """``token`` with Greek letters spelled out, accents and compatibility forms decomposed (NFKD: "ö" →
    "o", "ﬁ" → "fi", "²" → "2", "µ" → "mu"), typographic dashes and quotes made ASCII and format
    characters dropped. ASCII tokens come back unchanged; a character with no ASCII form stays as it is
    (never an empty form for a token that had letters or digits)."""
    if token.isascii():
        return token
    decomposed = unicodedata.normalize("NFKD", token)
    form = "".join(_char_form(char) for char in decomposed if not unicodedata.combining(char))
    return form or token
