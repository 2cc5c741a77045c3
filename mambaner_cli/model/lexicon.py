"""Dictionary matching of disease names, an input feature of the tagger (never an override).

The tagger sees, for every token, whether it begins (1), continues (2) or lies outside (0) a span that
greedy longest match finds in a lexicon of disease names (MeSH, MONDO, DOID, HPO and the training
mentions; built by ``training.lexicon``). The lexicon tells the model about names it never saw in its
training text; the model still decides, so a dictionary hit in a non-disease context can be ignored.

Entries and text are cut with the pipeline's own tokenizer, so an entry matches exactly the tokens the
model tags, and each token is normalized: lower case, and a plural ending dropped ("tumours" and
"tumour", "allergies" and "allergy" meet), except on all-capital tokens, where a final S is part of an
acronym ("AIDS" must not become "aid", nor "FIRES" "fire"). On the devel splits this normalization
raised the lexicon's naive recall (NCBI 76.1 -> 79.2, BC5CDR 78.7 -> 79.6) and precision (73.1 -> 75.4,
80.3 -> 80.5) over lower case alone, with the training-set filter using the same normalization.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress, count

from mambaner_cli.text.ascii import ascii_form
from mambaner_cli.text.tokens import tokenize

OUTSIDE, BEGIN, INSIDE = 0, 1, 2

# How many distinct tokens a matcher remembers the normalized form of (see _NormalizedTokens): under ten
# megabytes, and enough for the frequent words of a long run, which are the ones that repeat.
NORMALIZED_CACHE_SIZE = 1 << 16


def normalize_token(token: str) -> str:
    """Lower case, with a plural ending dropped: "-ies" becomes "-y" (tokens longer than four
    characters), else a final "s" goes when the token is longer than three characters and does not end
    in "ss"/"us"/"is" ("class", "virus", "psoriasis", "was" stay whole). All-capital tokens keep their
    final S ("AIDS", "PPMS"); "VSDs" is a plural and becomes "vsd".

    Idempotent on its own output (a stripped token never ends in "s"), but a normalized acronym
    ("aids") is no longer all capitals: saved keys are therefore loaded with
    :meth:`LexiconMatcher.from_list`, which does not normalize again.
    """
    token = ascii_form(token)  # "β-thalassemia" matches the corpora's "beta-thalassemia"
    lower = token.lower()
    if len(lower) > 3 and lower[-1] == "s" and lower[-2] not in "sui" and not token.isupper():
        if len(lower) > 4 and lower.endswith("ies"):
            return lower[:-3] + "y"
        return lower[:-1]
    return lower


def normalize_tokens(tokens: Iterable[str]) -> tuple[str, ...]:
    """The lexicon key of a token sequence: each token normalized."""
    return tuple(normalize_token(token) for token in tokens)


def normalize_entry(entry: str) -> tuple[str, ...]:
    """The normalized token sequence of one lexicon entry (empty for an entry with no tokens)."""
    return normalize_tokens(token.text for token in tokenize(entry))


class _NormalizedTokens(dict):
    """token -> normalize_token(token), computed on first lookup: tokens repeat, and normalizing the
    360k tokens of 1,500 abstracts took 0.09 s by calls, 0.045 s by lookups. Emptied when it reaches
    ``NORMALIZED_CACHE_SIZE`` entries, so a long stream of new words cannot grow it without bound."""

    def __missing__(self, token: str) -> str:
        if len(self) >= NORMALIZED_CACHE_SIZE:
            self.clear()
        normalized = self[token] = normalize_token(token)
        return normalized


class LexiconMatcher:
    """Greedy longest match of a set of token sequences over tokenized sentences."""

    def __init__(self, entries: Iterable[str]):
        """A matcher over raw names ("Crohn's disease"), tokenized and normalized here."""
        self._add_keys(normalize_entry(entry) for entry in entries)

    @classmethod
    def from_keys(cls, keys: Iterable[Sequence[str]]) -> LexiconMatcher:
        """A matcher over already normalized token sequences (as :func:`normalize_entry` gives)."""
        matcher = cls.__new__(cls)
        matcher._add_keys(tuple(key) for key in keys)
        return matcher

    @classmethod
    def from_list(cls, lines: Iterable[str]) -> LexiconMatcher:
        """The matcher saved by :meth:`to_list`: normalized tokens joined by one space a line.

        Lines are taken as they are (not tokenized again, not even split: a key is kept as its line), which
        makes loading a 177k-entry lexicon take a tenth of a second, not half a second, at every start of
        `mambaner tag`; blank lines are ignored.
        """
        stripped = (line.strip() for line in lines)
        matcher = cls.__new__(cls)
        matcher._add_lines(line if "  " not in line and "\t" not in line else " ".join(line.split())
                           for line in stripped if line)
        return matcher

    def _add_keys(self, keys: Iterable[tuple[str, ...]]) -> None:
        self._add_lines(" ".join(key) for key in keys if key)

    def _add_lines(self, lines: Iterable[str]) -> None:
        # A key is its tokens joined by one space (tokens never hold a space): a set of strings builds and
        # looks up faster than one of tuples.
        self._keys: set[str] = set(lines)
        # First token -> whether it is an entry by itself; first two tokens ("of the") -> the length of
        # the longest entry that starts with them. Most tokens start no entry and cost one dict lookup;
        # but half the tokens of the BC5CDR abstracts (178k of 360k) start one ("of", "the", "patient",
        # with 4.3 entry lengths on average), and one lookup of the pair rules most of them out, where trying every length of
        # the first token cost a join and a set lookup each (spans 1.2-1.7x faster over the 1,500 BC5CDR
        # abstracts: python -m benchmarks.bench_lexicon --baseline OLD_LEXICON_PY). The
        # longest length only, not the set of lengths: sorting 64k sets made loading the default
        # model's lexicon 0.25 s slower, the maximum 0.04 s.
        starts: dict[str, bool] = {}
        pairs: dict[str, int] = {}
        longest = pairs.get
        for key in self._keys:
            parts = key.split(" ", 2)
            if len(parts) == 1:
                starts[key] = True
                continue
            starts.setdefault(parts[0], False)
            pair, length = parts[0] + " " + parts[1], key.count(" ") + 1
            if longest(pair, 0) < length:
                pairs[pair] = length
        self._starts, self._pairs = starts, pairs
        self.max_length = max(pairs.values(), default=1 if starts else 0)
        self._normalized = _NormalizedTokens()

    def __getstate__(self) -> dict:
        # The token cache is rebuilt where the matcher is unpickled (a Ray worker): not worth shipping.
        state = self.__dict__.copy()
        state["_normalized"] = _NormalizedTokens()
        return state

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, entry: str) -> bool:
        return " ".join(normalize_entry(entry)) in self._keys

    def keys(self) -> set[tuple[str, ...]]:
        """The normalized token sequences (a copy)."""
        return {tuple(key.split(" ")) for key in self._keys}

    def to_list(self) -> list[str]:
        """The entries as sorted lines of normalized tokens joined by one space (see :meth:`from_list`)."""
        return sorted(self._keys)

    def spans(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """Token spans ``(start, end)`` found by greedy longest match, left to right, not overlapping.

        ``spans_reference`` computes the same, plainly; here the Python loop visits only the positions
        whose token starts an entry (found by C-level iteration), entries of two or more tokens are
        looked up only among those that start with the same two tokens, and normalized tokens come from
        the matcher's cache (tests/test_lexicon.py compares the two).
        """
        return self._spans(list(map(self._normalized.__getitem__, tokens)))

    def _spans(self, normalized: list[str]) -> list[tuple[int, int]]:
        """:meth:`spans` of tokens already normalized (:class:`Lexicons` normalizes once for every type)."""
        starts, pairs, keys = self._starts, self._pairs, self._keys
        found = []
        n, free = len(normalized), 0  # free: the first position not inside a span found so far
        for i in compress(count(), map(starts.__contains__, normalized)):  # positions that start an entry
            if i < free:
                continue
            end = i + 1 if starts[normalized[i]] else i  # the match so far: the token alone, or none
            if i + 1 < n:
                pair = normalized[i] + " " + normalized[i + 1]
                for length in range(min(pairs.get(pair, 0), n - i), 1, -1):  # longest first
                    if (" ".join(normalized[i : i + length]) if length > 2 else pair) in keys:
                        end = i + length
                        break
            if end > i:
                found.append((i, end))
                free = end
        return found

    def spans_reference(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """``spans`` as plainly as it can be written: the reference its fast path is tested against."""
        normalized = [normalize_token(token) for token in tokens]
        found = []
        i, n = 0, len(normalized)
        while i < n:
            step = 1
            for length in range(min(self.max_length, n - i), 0, -1):
                if " ".join(normalized[i : i + length]) in self._keys:
                    found.append((i, i + length))
                    step = length
                    break
            i += step
        return found

    def match(self, tokens: Sequence[str]) -> list[int]:
        """Per token: 0 outside, 1 first token of a match, 2 later token of a match."""
        codes = [OUTSIDE] * len(tokens)
        for start, end in self.spans(tokens):
            codes[start] = BEGIN
            for j in range(start + 1, end):
                codes[j] = INSIDE
        return codes


class Lexicons:
    """One lexicon per entity type, read by the network as one input: each token's code combines its match
    code (:data:`OUTSIDE`, :data:`BEGIN`, :data:`INSIDE`) in every type's lexicon, base 3 with the first
    type in the lowest digit, so that a token in a gene name and in a chemical name at once ("insulin")
    has a code of its own. With one type the code is that lexicon's own (0, 1, 2): a disease-only model
    reads the same codes as before types existed.
    """

    def __init__(self, matchers: dict[str, LexiconMatcher]):
        if not matchers:
            raise ValueError("Lexicons needs at least one typed lexicon")
        self.matchers = dict(matchers)
        # One token cache for all: a token is normalized once however many lexicons look it up.
        shared = self._normalized = _NormalizedTokens()
        for matcher in self.matchers.values():
            matcher._normalized = shared

    @property
    def types(self) -> list[str]:
        return list(self.matchers)

    def __len__(self) -> int:
        """Entries over every type's lexicon."""
        return sum(len(matcher) for matcher in self.matchers.values())

    def __getstate__(self) -> dict:
        return {"matchers": self.matchers}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["matchers"])

    def match(self, tokens: Sequence[str]) -> list[int]:
        """Per token: sum over the types t (in order) of 3**t times the token's code in type t's lexicon."""
        normalized = list(map(self._normalized.__getitem__, tokens))
        codes = [OUTSIDE] * len(tokens)
        weight = 1
        for matcher in self.matchers.values():
            for start, end in matcher._spans(normalized):
                codes[start] += weight * BEGIN
                for j in range(start + 1, end):
                    codes[j] += weight * INSIDE
            weight *= 3
        return codes


def combine_codes(per_type: Sequence[Sequence[int]]) -> list[int]:
    """The :class:`Lexicons` code of one sentence from its codes in each type's lexicon (first type first):
    how training combines codes cross-fitted type by type."""
    combined = [0] * len(per_type[0])
    for power, codes in enumerate(per_type):
        weight = 3 ** power
        for i, code in enumerate(codes):
            combined[i] += weight * code
    return combined


def lexicon_code_count(types: int) -> int:
    """How many distinct codes a :class:`Lexicons` of ``types`` types gives: 3 per type, combined."""
    return 3 ** types
