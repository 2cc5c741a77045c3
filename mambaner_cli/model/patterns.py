"""Sequence-variant mentions written in a standard notation, found by patterns beside the network.

Mutation nomenclature (HGVS: ``c.671G>A``, ``p.Arg153X``, ``c.399_402delAGAG``; the older ``IVS10-1G>A``,
``His158Arg``, ``V600E``; dbSNP ids ``rs2297882``) is a grammar, not vocabulary: a network trained on the
few hundred variants of tmVar3's training split sees few of its forms, while patterns cover all of them —
what tmVar itself pairs with its CRF. The network keeps the variants written in words ("a 4-bp deletion in
exon 8") and mostly has the last word where it tagged another type: a pattern mention is added where the
network tagged nothing, or a Variant inside it (then the longer pattern mention replaces it), or a Gene or
Chemical mention of exactly its tokens ("V600E" read as a chemical); never over a cell line ("T47D"), a
species, a disease, or part of a longer mention.

Patterns run over a sentence's tokens (:mod:`mambaner_cli.text.tokens`: ``c.671G>A`` is ``c . 671G > A``)
joined by single spaces, so the same mention matches whether or not the text had spaces inside it
(``c. 671 G>A``), and every match covers whole tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

VARIANT = "Variant"

# Building blocks. In the pattern sources "~" stands for an optional space between two tokens (" ?": greedy;
# "~?" would be the lazy " ??", which stops a match before the space).
_AA1 = "[ACDEFGHIKLMNPQRSTVWY]"  # the 20 one-letter amino-acid codes
_AA3 = "(?:Ala|Arg|Asn|Asp|Cys|Gln|Glu|Gly|His|Ile|Leu|Lys|Met|Phe|Pro|Ser|Thr|Trp|Tyr|Val)"
_STOP = r"(?:X|\*|Ter|Stop|stop)"
_NT = "[ACGTUacgtu]"
_ARROW = "(?:>|-~(?:-~)?>|→)"  # G>A, G->A, G-->A
_PREFIX = r"[cgmnr]~\.~"  # HGVS reference-sequence prefixes (DNA and RNA)
_POSITION = r"[-*]?~\d+(?:~[-+]~\d+)?"  # 671, -308, *12, 360+1, 1706-2
_INTRON = r"IVS~(?:-~)?[0-9IVX]+~[-+]~\d+"  # IVS10-1, IVS-II-1, IVSI-5
_WHERE = f"(?:{_PREFIX})?(?:{_INTRON}|{_POSITION})(?:~[_-]~{_POSITION})?"  # a position or a range

_VARIANT_SOURCES = (
    # DNA substitution: c.671G>A, 1242G>T, -308G>A, IVS8+4A>G, IVSII-1(G>A), -369(C>G)
    f"{_WHERE}~{_NT}~{_ARROW}~{_NT}",
    fr"{_WHERE}~\(~{_NT}~{_ARROW}~{_NT}~\)",
    # two alleles at a position: IVS19-37G/C, c.410+5G/A, -1001C/T
    f"{_WHERE}~{_NT}~/~{_NT}",
    # deletion, insertion, duplication: 3097delG, c.399_402delAGAG, 1308_1316dup9, c.370-371insA (written
    # against the position: "90 del 13 bp" is prose, the network's to find)
    f"{_WHERE}(?:delins|del|ins|dup)(?:~[ACGTacgt]+|\\d+)?",
    # nucleotide before the position: G-308A (one-letter protein changes below cover C270T)
    r"[ACGT]~-~\d+[ACGT]",
    # protein, one-letter codes: V600E, R1858X (two digits at least: E2F, H2B, S6K are genes), p.E180K
    fr"p~\.~(?:\(~{_AA1}\d+(?:{_AA1}|{_STOP})~\)|{_AA1}\d+(?:{_AA1}|{_STOP}))",
    fr"{_AA1}\d{{2,}}(?:{_AA1}|{_STOP})(?:~/~[ACGT])?",  # G1915T/A: two alternative alleles
    # protein, three-letter codes: His158Arg, Arg 3500 Gln, p.Arg153X
    fr"(?:p~\.~)?(?:\(~{_AA3}~\d+~(?:{_AA3}|{_STOP})~\)|{_AA3}~\d+~(?:{_AA3}|{_STOP}))",
    # residue change without a position, written with an arrow: Gly-->Ser, Val->Ala
    f"{_AA3}~{_ARROW}~(?:{_AA3}|{_STOP})",
    # frameshift: p.S124fsX127, p.Cys817ValfsX15, p.T3708fs3769
    fr"(?:p~\.~)?(?:{_AA3}|{_AA1})\d+(?:{_AA3}|{_AA1})?fs~(?:{_STOP}~)?\d*",
    # deleted residue: F508del, p.Phe508del, delta F508, ΔF508
    fr"(?:p~\.~)?(?:{_AA3}\d+|{_AA1}\d{{2,}})del|(?:Δ|[Dd]elta)~{_AA1}\d{{2,}}",
    # dbSNP reference SNP ids
    r"rs~\d{3,}",
)
# whole tokens only: a match starts at the start of a token and ends at the end of one
_VARIANT_PATTERN = re.compile(r"(?<!\S)(?:" + "|".join(f"(?:{s})" for s in _VARIANT_SOURCES).replace("~", " ?")
                              + r")(?!\S)")
# Every pattern above has a digit, and beside it a letter (V600E, 3097delG, rs123), an arrow (671 G > A), or a
# three-letter amino acid or "rs" and a space (Arg 3500 Gln, rs 123) — bar a residue change with an arrow and no
# position (Gly-->Ser), tested only where the text has an arrow: cheap tests that most sentences fail, so that the whole pattern (39 us a BC5CDR sentence when run on all of them) runs on few: add_variant_mentions
# then took 11-20 us a sentence over BC5CDR's 13,938 (throwaway timings on a busy machine, README, Performance).
_DIGIT = re.compile(r"\d")
_LETTER_DIGIT = re.compile(r"[A-Za-z][0-9]|[0-9][A-Za-z]")
_WORD_DIGIT = re.compile(r"(?:[A-Z][a-z][a-z]|rs) [0-9]")
_RESIDUE_ARROW = re.compile(r"[A-Z][a-z][a-z] (?:- ){0,2}[>→]")  # Gly - - > Ser: tokens joined by spaces


def _may_have_variant(text: str) -> bool:
    arrow = ">" in text or "→" in text
    if _DIGIT.search(text):
        return arrow or bool(_LETTER_DIGIT.search(text)) or bool(_WORD_DIGIT.search(text))
    return arrow and bool(_RESIDUE_ARROW.search(text))


def variant_mentions(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of variant mentions in standard notation, left to right."""
    text = " ".join(tokens)
    if not _may_have_variant(text):  # most sentences stop here
        return []
    starts: dict[int, int] = {}  # character offset of each token's start → its index
    ends: dict[int, int] = {}  # character offset just past each token → its index + 1
    offset = 0
    for index, token in enumerate(tokens):
        starts[offset] = index
        offset += len(token)
        ends[offset] = index + 1
        offset += 1
    return [(starts[m.start()], ends[m.end()]) for m in _VARIANT_PATTERN.finditer(text)
            if m.start() in starts and m.end() in ends]


# Types whose network mention a pattern mention of exactly the same tokens replaces: a variant-shaped token
# tagged as a gene or chemical is a variant (devel, both seeds of the default recipe: tmVar3 variants 72.73 →
# 74.36 and 78.87 → 78.87, BC2GM, GNormPlus, NLM-Gene, BC5CDR not lower; README, Benchmark). A cell line of that
# shape (T47D, C33A) is a real cell line, so CellLine is not among them.
REPLACEABLE_TYPES = ("Gene", "Chemical")


def add_variant_mentions(tokens: Sequence[str], tags: Sequence[str]) -> list[str]:
    """``tags`` (valid IOB2) with the pattern mentions of :func:`variant_mentions` added where the network
    tagged nothing, or only Variant mentions that lie inside the pattern mention (which replaces them), or
    one mention of a :data:`REPLACEABLE_TYPES` type with exactly the pattern mention's tokens."""
    result = list(tags)
    for start, end in variant_mentions(tokens):
        kind = result[start][2:]
        if (result[start].startswith("B-") and kind in REPLACEABLE_TYPES
                and result[start + 1:end] == [f"I-{kind}"] * (end - start - 1)
                and (end == len(result) or result[end] != f"I-{kind}")):
            result[start:end] = [f"B-{VARIANT}"] + [f"I-{VARIANT}"] * (end - start - 1)
            continue
        first, last = start, end  # the tokens of every network mention the match touches
        while first > 0 and result[first].startswith("I-"):
            first -= 1
        while last < len(result) and result[last].startswith("I-"):
            last += 1
        touched = [tag for tag in result[first:last] if tag != "O"]
        if any(tag[2:] != VARIANT for tag in touched) or (touched and (first < start or last > end)):
            continue  # another type, or a longer network mention: the network's tags stand
        result[start:end] = [f"B-{VARIANT}"] + [f"I-{VARIANT}"] * (end - start - 1)
    return result
