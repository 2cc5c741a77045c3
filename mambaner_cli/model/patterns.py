"""Sequence-variant mentions found by patterns beside the network: in a standard notation, and in words.

Mutation nomenclature (HGVS: ``c.671G>A``, ``p.Arg153X``, ``c.399_402delAGAG``; the older ``IVS10-1G>A``,
``His158Arg``, ``V600E``; dbSNP ids ``rs2297882``) is a grammar, not vocabulary: a network trained on the
few hundred variants of tmVar3's training split sees few of its forms, while patterns cover all of them —
what tmVar itself pairs with its CRF. So are the set phrases of variants written in words ("a 13-bp
deletion", "a C to T transition at nucleotide 1652"; session 14). The network mostly has the last word
where it tagged another type: a pattern mention is added where the network tagged nothing, or a Variant
inside it (then the longer pattern mention replaces it), or — a mention in notation only — a Gene or
Chemical mention of exactly its tokens ("V600E" read as a chemical); never over a cell line ("T47D"), a
species, a disease, or part of a longer mention.

Patterns run over a sentence's tokens (:mod:`mambaner_cli.text.tokens`: ``c.671G>A`` is ``c . 671G > A``)
joined by single spaces, so the same mention matches whether or not the text had spaces inside it
(``c. 671 G>A``), and every match covers whole tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

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
# a position in words after a change, and the change word before it: "... substitution at codon 44"
_SITE = r"(?:~(?:at|in|of)~(?:nucleotide~position|nucleotide|position|codon|nt|residue|cDNA~base)~-?~\d+)"
_CHANGE_WORD = "(?:transition|transversion|substitution|mutation|change|polymorphism)"
_CHANGE_AT_SITE = f"(?:(?:~{_CHANGE_WORD})?{_SITE})?"
_TO = "(?:-~)?to~(?:-~)?"  # C to T, A-to-G, Glu29 to Lys

_VARIANT_SOURCES = (
    # DNA substitution: c.671G>A, 1242G>T, -308G>A, IVS8+4A>G, IVSII-1(G>A), -369(C>G)
    # and with a codon word before the position or a comma after it: codon 104 G-->A, IVS10+1, g-->t
    f"(?:codon~)?{_WHERE}~,?~{_NT}~{_ARROW}~{_NT}",
    fr"{_WHERE}~\(~{_NT}~{_ARROW}~{_NT}~\)",
    # two alleles at a position: IVS19-37G/C, c.410+5G/A, -1001C/T
    f"{_WHERE}~{_NT}~/~{_NT}",
    # deletion, insertion, duplication: 3097delG, c.399_402delAGAG, 1308_1316dup9, c.370-371insA (written
    # against the position: "90 del 13 bp" is prose, the network's to find)
    f"{_WHERE}(?:delins|del|ins|dup)(?:~[ACGTacgt]+|\\d+)?",
    # nucleotide before the position: G-308A (one-letter protein changes below cover C270T)
    r"[ACGT]~-~\d+[ACGT]",
    # protein, one-letter codes: V600E, R1858X (two digits at least: E2F, H2B, S6K are genes), p.E180K
    # ("*" is a token of its own: R1858*)
    fr"p~\.~(?:\(~{_AA1}\d+(?:{_AA1}|{_STOP}|~\*)~\)|{_AA1}\d+(?:{_AA1}|{_STOP}|~\*))",
    fr"{_AA1}\d{{2,}}(?:{_AA1}|{_STOP}|~\*)(?:~/~{_AA1})?",  # G1915T/A, V600E/K: two alternatives
    # protein, three-letter codes: His158Arg, Arg 3500 Gln, p.Arg153X
    fr"(?:p~\.~)?(?:\(~{_AA3}~\d+~(?:{_AA3}|{_STOP})~\)|{_AA3}~(?:-~)?\d+~(?:-~)?(?:{_AA3}|{_STOP}))",
    # ... with an arrow or "to" between the position and the new residue: Gly12-->Val, Glu29 to Lys, G12->V, A64 to G
    fr"{_AA3}~(?:-~)?\d+~(?:{_ARROW}|{_TO})~(?:{_AA3}|{_STOP})",
    fr"{_AA1}\d{{2,}}~(?:{_ARROW}|{_TO})~(?:{_AA1}|{_STOP})",
    # residue change without a position, written with an arrow, and the position in words after it if there is
    # one: Gly-->Ser, Val->Ala, Arg-->Trp substitution at codon 248
    f"{_AA3}~{_ARROW}~(?:{_AA3}|{_STOP}){_CHANGE_AT_SITE}",
    # frameshift: p.S124fsX127, p.Cys817ValfsX15, p.T3708fs3769
    fr"(?:p~\.~)?(?:{_AA3}|{_AA1})\d+(?:{_AA3}|{_AA1})?fs~(?:{_STOP}~)?\d*",
    # residues deleted, inserted, duplicated (HGVS p.), one or a range: F508del, p.Phe508del, D201ins,
    # p.Ala3dup, p.Lys2_Met3insGlnSerLys, p.Cys28delinsTrpVal; delta F508, ΔF508
    fr"(?:p~\.~)?(?:{_AA3}\d+|{_AA1}\d{{2,}})(?:~_~(?:{_AA3}|{_AA1})\d+)?(?:delins|del|ins|dup)(?:{_AA3}+|{_AA1}+|\d+)?",
    fr"(?:Δ|[Dd]elta)~{_AA1}\d{{2,}}",
    # dbSNP reference SNP ids
    r"rs~\d{3,}",
)
# whole tokens only: a match starts at the start of a token and ends at the end of one
_VARIANT_PATTERN = re.compile(r"(?<!\S)(?:" + "|".join(f"(?:{s})" for s in _VARIANT_SOURCES).replace("~", " ?")
                              + r")(?!\S)")
# Variants written in words, in the forms tmVar3's guideline marks (its train split read for them; chosen on
# devel with two train-only runs, README, Benchmark): a sized indel ("13-bp deletion", "deletion of 4 kb"), a
# base change without a position or with it in words ("C to T", "A-to-G transition at nucleotide 276",
# "G-->C", "guanine to adenine"), a codon change ("codon 29, GGC-->AGC"), an amino-acid change with its
# position ("valine-to-methionine at codon 44"), an allele at a position ("-218G", "IVS3-48C"), deleted or
# inserted bases ("delTTCA", "GGCC insertion", "202 adenine deletion") and "Delta32". A change word ("transition", "substitution") belongs to the mention only with the
# position after it, as the guideline has it ("C to T" alone; "C to T substitution at nucleotide 13").
# They run only on tokens no notation pattern covers, and never over a network mention of another type.
_BASE = "[ACGT]"
_BASE_NAME = "(?:adenine|guanine|cytosine|thymine|uracil)"
_RESIDUE_NAME = ("(?:alanine|arginine|asparagine|aspartate|aspartic~acid|cysteine|glutamine|glutamate|glutamic~acid"
                 "|glycine|histidine|isoleucine|leucine|lysine|methionine|phenylalanine|proline|serine|threonine"
                 "|tryptophan|tyrosine|valine|stop~codon|stop)")
_COUNT = r"(?:\d+(?:~[.,]~\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|single)"
_UNIT = r"(?:bp|base~pairs?|bases?|nucleotides?|nt|kb|kbp|Mb|Mbp)"
# longest first: an alternation takes the first alternative that lets the whole pattern match
_INDEL = (r"(?:(?:deletion|insertion|duplication)~/~(?:deletion|insertion|duplication)|ins~/~del|del~/~ins"
          r"|deletions?|insertions?|duplications?|inversion|indel)")
_INDEL_WORDS = r"(?:(?:tandem|in-?frame|heterozygous|homozygous|interstitial|gene|frameshift)~)*"

_PROSE_SOURCES = (
    f"{_COUNT}~(?:-~)?{_UNIT}~(?:-~)?{_INDEL_WORDS}{_INDEL}{_SITE}?",  # 13-bp deletion, 4-Mb interstitial deletion
    f"(?:deletion|insertion|duplication)~of~{_COUNT}~(?:{_UNIT}|amino~acids?)",  # insertion of 13 nucleotides
    f"{_BASE}~{_TO}{_BASE}{_CHANGE_AT_SITE}",  # C to T, A-to-G transition at nucleotide 276
    f"{_NT}~{_ARROW}~{_NT}{_CHANGE_AT_SITE}",  # G-->C (no position before it)
    f"{_BASE_NAME}~{_TO}{_BASE_NAME}{_CHANGE_AT_SITE}",  # guanine to adenine substitution of nucleotide -308
    fr"(?:codon~(?:\(~CD~\)~)?\d+~,?~)?{_BASE}{{3}}~{_ARROW}~{_BASE}{{2,3}}{_CHANGE_AT_SITE}",  # codon 29, GGC-->AGC
    f"{_RESIDUE_NAME}~{_TO}{_RESIDUE_NAME}(?:~{_CHANGE_WORD})?{_SITE}",  # valine-to-methionine at codon 44
    fr"{_RESIDUE_NAME}~(?:-~)?\d+~{_TO}{_RESIDUE_NAME}",  # alanine 64 to glycine
    f"{_AA3}~{_TO}{_AA3}(?:~{_CHANGE_WORD})?{_SITE}",  # Ala-to-Val substitution at codon 222
    # an allele at a position: -218G, IVS3-48C; not after a capital or digit (IL-17A, HEK-293T are names)
    r"IVS\d+~[-+]~\d+[ACGT]|(?<![A-Z0-9] )-~\d{2,}[ACGT]",
    r"del[ACGT]+",  # delTTCA
    f"(?:[CGT]|{_BASE}{{2,}})~{_INDEL}{_SITE}?",  # C deletion, GGCC insertion at position 1277 ("A deletion" is English)
    fr"\d+~{_BASE_NAME}~{_INDEL}{_SITE}?|{_BASE_NAME}~{_INDEL}{_SITE}",  # 202 adenine deletion
    r"(?:Δ|[Dd]elta)\d{2,}",  # CCR5-Delta32
    # a new stop at a position: stop codon at position 372, termination at codon 1524
    r"(?:stop~codon|stop|termination~codon|termination)~at~(?:amino~acid~)?(?:codon|position|residue)~\d+",
    f"\\(~{_BASE}{{2,}}~\\)~(?:n|\\d+)",  # a repeat: (TTTA)n, (CAG)11
)
_PROSE_PATTERN = re.compile(r"(?<!\S)(?:" + "|".join(f"(?:{s})" for s in _PROSE_SOURCES).replace("~", " ?")
                            + r")(?!\S)")

# Every notation pattern (_VARIANT_SOURCES) has a digit, and beside it a letter (V600E, 3097delG, rs123), an
# arrow (671 G > A), or a three-letter amino acid or "rs" and a space (Arg 3500 Gln, rs 123) — bar a residue change with an arrow and no
# position (Gly-->Ser), tested only where the text has an arrow: cheap tests that most sentences fail, so that the whole pattern (39 us a BC5CDR sentence when run on all of them) runs on few: add_variant_mentions
# then took 11-20 us a sentence over BC5CDR's 13,938 (throwaway timings on a busy machine, README, Performance).
_DIGIT = re.compile(r"\d")
_LETTER_DIGIT = re.compile(r"[A-Za-z][0-9]|[0-9][A-Za-z]")
_WORD_DIGIT = re.compile(r"(?:[A-Z][a-z][a-z]|rs) (?:- )?[0-9]")
_RESIDUE_ARROW = re.compile(r"[A-Z][a-z][a-z] (?:- ){0,2}[>→]")  # Gly - - > Ser: tokens joined by spaces
# Every prose pattern has an indel word, a base or residue name before "to", an arrow, a delta with a number,
# a minus or plus before a position and base, a stop word before "at", or bases in brackets before a count:
# substring tests first (most sentences fail them), a regex to confirm
_INDEL_HINT = re.compile(r"deletion|insertion|duplication|inversion|indel|del ?/|/ ?del|del[ACGT]")
# every _BASE_NAME, _RESIDUE_NAME and three-letter code before "to", or before a position and "to"
_TO_HINT = re.compile(rf"(?:\b[ACGT]|ine|ate|acid|uracil|stop|codon|\b{_AA3})(?: (?:- )?\d+)? (?:- )?to ")
_DELTA_HINT = re.compile(r"[Dd]elta\d")
_ALLELE_HINT = re.compile(r"[-+] \d+[ACGT]\b")
_STOP_HINT = re.compile(r"(?:stop|termination)(?: codon)? at ")
_REPEAT_HINT = re.compile(r"\( [ACGT]{2,} \) (?:n|\d)")


def _may_have_variant(text: str) -> bool:
    arrow = ">" in text or "→" in text
    if _DIGIT.search(text):
        return arrow or bool(_LETTER_DIGIT.search(text)) or bool(_WORD_DIGIT.search(text))
    return arrow and bool(_RESIDUE_ARROW.search(text))


def _may_have_prose_variant(text: str) -> bool:
    return (">" in text or "→" in text or "Δ" in text
            or (("del" in text or "ins" in text or "dup" in text or "inv" in text) and bool(_INDEL_HINT.search(text)))
            or (" to " in text and bool(_TO_HINT.search(text)))
            or ("elta" in text and bool(_DELTA_HINT.search(text)))
            or (("- " in text or "+ " in text) and bool(_ALLELE_HINT.search(text)))
            or (" at " in text and bool(_STOP_HINT.search(text)))
            or (") " in text and bool(_REPEAT_HINT.search(text))))


class VariantMatches(NamedTuple):
    """One sentence's pattern matches as token ranges ``[start, end)``, each list left to right: the notation
    mentions, and the prose mentions over tokens that no notation mention covers. Found once a sentence and
    shared by the network's input (:func:`pattern_codes`) and the run-time rule (:func:`add_variant_mentions`)."""

    notation: list[tuple[int, int]]
    prose: list[tuple[int, int]]

    @property
    def mentions(self) -> list[tuple[int, int]]:
        return sorted(self.notation + self.prose)


def variant_matches(tokens: Sequence[str]) -> VariantMatches:
    """The notation and prose pattern matches of one sentence's tokens."""
    text = " ".join(tokens)
    notation, prose = _may_have_variant(text), _may_have_prose_variant(text)
    if not notation and not prose:  # most sentences stop here
        return VariantMatches([], [])
    starts: dict[int, int] = {}  # character offset of each token's start → its index
    ends: dict[int, int] = {}  # character offset just past each token → its index + 1
    offset = 0
    for index, token in enumerate(tokens):
        starts[offset] = index
        offset += len(token)
        ends[offset] = index + 1
        offset += 1

    def matches(pattern: re.Pattern[str]) -> list[tuple[int, int]]:
        return [(starts[m.start()], ends[m.end()]) for m in pattern.finditer(text)
                if m.start() in starts and m.end() in ends]

    in_notation = matches(_VARIANT_PATTERN) if notation else []
    if not prose:
        return VariantMatches(in_notation, [])
    covered = {index for start, end in in_notation for index in range(start, end)}
    return VariantMatches(in_notation, [(start, end) for start, end in matches(_PROSE_PATTERN)
                                        if covered.isdisjoint(range(start, end))])


def variant_mentions(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` of variant mentions, in standard notation or in words, left to right."""
    return variant_matches(tokens).mentions


def pattern_codes(tokens: Sequence[str], matches: VariantMatches | None = None) -> list[int]:
    """Per token, the patterns' verdict as a network input (``TaggerConfig.pattern_dim``): 0 outside every
    :func:`variant_mentions` mention, 1 at a mention's first token, 2 inside one (``matches``: the tokens'
    :func:`variant_matches`, found here if not given)."""
    codes = [0] * len(tokens)
    for start, end in (matches if matches is not None else variant_matches(tokens)).mentions:
        codes[start] = 1
        codes[start + 1:end] = [2] * (end - start - 1)
    return codes


# Types whose network mention a pattern mention of exactly the same tokens replaces: a variant-shaped token
# tagged as a gene or chemical is a variant (devel, both seeds of the default recipe: tmVar3 variants 72.73 →
# 74.36 and 78.87 → 78.87, BC2GM, GNormPlus, NLM-Gene, BC5CDR not lower; README, Benchmark). A cell line of that
# shape (T47D, C33A) is a real cell line, so CellLine is not among them.
REPLACEABLE_TYPES = ("Gene", "Chemical")

# A list of variants ("-218G and -189T", "C60S/L244F") that the network tagged as one Variant mention is split
# into its pattern mentions when nothing but these tokens lies between them: tmVar3 marks each variant of a list
LIST_SEPARATORS = frozenset({",", ";", "/", "and", "or", "&", "(", ")"})


def _clear_variant_lists(tokens: Sequence[str], tags: list[str], found: Sequence[tuple[int, int]]) -> None:
    """Clear (to "O", in place) every network Variant mention that is two or more of ``found``'s mentions and
    :data:`LIST_SEPARATORS` between them, for the patterns to tag them one by one."""
    start = 0
    while start < len(tags):
        if tags[start] != f"B-{VARIANT}":
            start += 1
            continue
        end = start + 1
        while end < len(tags) and tags[end] == f"I-{VARIANT}":
            end += 1
        inside = [(a, b) for a, b in found if start <= a and b <= end]
        covered = {index for a, b in inside for index in range(a, b)}
        if len(inside) >= 2 and all(tokens[index] in LIST_SEPARATORS
                                    for index in range(start, end) if index not in covered):
            tags[start:end] = ["O"] * (end - start)
        start = end


def add_variant_mentions(tokens: Sequence[str], tags: Sequence[str], matches: VariantMatches | None = None
                         ) -> list[str]:
    """``tags`` (valid IOB2) with the pattern mentions of :func:`variant_mentions` added where the network
    tagged nothing (a network variant that is a list of them is split first), or only Variant mentions that lie
    inside the pattern mention (which replaces them), or a longer Variant mention around this one alone (cut), or
    (a mention in standard notation only) one mention of a :data:`REPLACEABLE_TYPES` type with exactly the
    pattern mention's tokens (``matches``: the tokens' :func:`variant_matches`, found here if not given)."""
    result = list(tags)
    matches = matches if matches is not None else variant_matches(tokens)
    found = matches.mentions
    _clear_variant_lists(tokens, result, found)
    for start, end in found:
        kind = result[start][2:]
        if ((start, end) in matches.notation and result[start].startswith("B-") and kind in REPLACEABLE_TYPES
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
        if any(tag[2:] != VARIANT for tag in touched):
            continue  # another type: the network's tags stand
        if touched and (first < start or last > end):
            # a longer network variant: cut to the pattern mention when it is one mention around this pattern
            # mention alone ("Val-->Ala amino acid", "C>T substitution": the guideline marks "Val-->Ala", "C>T");
            # one across the pattern mention's edge, or around two of them (a list), stands
            one_mention = result[first] == f"B-{VARIANT}" and result[first + 1:last] == [f"I-{VARIANT}"] * (last - first - 1)
            alone = all(other == (start, end) or other[1] <= first or other[0] >= last for other in found)
            if not (one_mention and alone):
                continue
            result[first:last] = ["O"] * (last - first)
        result[start:end] = [f"B-{VARIANT}"] + [f"I-{VARIANT}"] * (end - start - 1)
    return result
