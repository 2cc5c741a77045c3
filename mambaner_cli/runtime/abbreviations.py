"""Short forms take the type of their long form: one reading of an abbreviation per document.

The network reads one sentence at a time, so "nitroglycerin (NTG)" can be tagged a chemical where it is
defined and "NTG" missed, or read as a disease, three sentences later. Where a document defines a short
form ("long form (SF)", found by the Schwartz-Hearst algorithm) and the network tagged the long form
exactly as a mention, every standalone occurrence of the short form in the document becomes a mention of
that type, unless it is part of a longer mention.

Chosen on the devel splits at document level by a rule written first (README, Models): for the default
recipe's two train-only runs, BC5CDR 85.74 → 86.77 and 85.69 → 86.69 F1 (chemicals +1.1, diseases +0.9),
tmVar3 +1.4, the eight corpora's macro +0.49 / +0.44, none lower. Two variants lost and were left out: taking
the type of a mention that only ends where the long form ends (GNormPlus −1.0), and removing short-form
mentions whose long form is untagged (NCBI −1.9: the network is often right about a short form whose long
form it missed).

The Schwartz-Hearst implementation is the ``abbreviations`` package's (MIT): the reference algorithm,
already tested by others; only the choice of which pairs to trust and what to do with them is ours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from abbreviations import schwartz_hearst

from mambaner_cli.document import Sentence, Token
from mambaner_cli.runtime.spans import mention_bounds

_GLUE = "-/+'"  # characters that make a short form part of a bigger word: "NTG-induced", "CD4+", "AD's"


def definitions(text: str) -> list[tuple[int, int, int, int]]:
    """(long form start, end, short form start, end) of each "long form (SF)" definition in one
    sentence, offsets into ``text``."""
    found: list[tuple[int, int, int, int]] = []
    try:
        candidates = list(schwartz_hearst.best_candidates(text))
    except (ValueError, IndexError):  # the package refuses a sentence with unbalanced brackets
        return found
    for short in candidates:
        try:
            long = schwartz_hearst.select_definition(schwartz_hearst.get_definition(short, text), short)
        except (ValueError, IndexError):  # no long form before the bracket
            continue
        # select_definition keeps the end of the stretch it was given and cuts its start: the long form
        # is the text that ends where that stretch ends.
        found.append((long.stop - len(long), long.stop, short.start, short.stop))
    return found


def _stands_alone(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or before in _GLUE or after.isalnum() or after in _GLUE)


def _short_form_types(sentences: Sequence[Sentence], scores: Sequence[Sequence[float]]
                      ) -> dict[str, tuple[str, float]]:
    """Each short form the document defines with one long form that is tagged as a mention of one type:
    that type, and the long form mentions' mean confidence."""
    long_forms: dict[str, set[str]] = defaultdict(set)
    kinds: dict[str, set[str]] = defaultdict(set)
    confidence: dict[str, list[float]] = defaultdict(list)
    for sentence, sentence_scores in zip(sentences, scores, strict=True):
        pairs = definitions(sentence.text) if "(" in sentence.text else []
        if not pairs:
            continue
        mentions = {(sentence.tokens[a].start, sentence.tokens[b - 1].end): (a, b, kind)
                    for a, b, kind in mention_bounds(sentence.tags)}
        for long_start, long_end, short_start, short_end in pairs:
            short = sentence.text[short_start:short_end]
            long_forms[short].add(sentence.text[long_start:long_end].lower())
            mention = mentions.get((sentence.start + long_start, sentence.start + long_end))
            if mention is not None:
                a, b, kind = mention
                kinds[short].add(kind)
                confidence[short].extend(sentence_scores[a:b])
    # a short form defined twice in different words ("FA": folic acid, Fanconi anaemia) is left to the network
    return {short: (next(iter(kinds[short])), sum(confidence[short]) / len(confidence[short]))
            for short in kinds if len(long_forms[short]) == 1 and len(kinds[short]) == 1}


def propagate_abbreviations(text: str, sentences: Sequence[Sentence], scores: Sequence[list[float]]) -> int:
    """Give, in place, every standalone occurrence of each defined short form the type of its long form's
    mention (:func:`_short_form_types`); ``text`` is the document text that the tokens' offsets index and
    ``scores`` the tokens' confidences, which a changed occurrence takes from its long form. An occurrence
    that is part of a longer mention is left as it is. Returns how many occurrences changed."""
    types = _short_form_types(sentences, scores)
    if not types:
        return 0
    longest = max(len(short) for short in types)
    changed = 0
    for sentence, sentence_scores in zip(sentences, scores, strict=True):
        tokens, tags = sentence.tokens, sentence.tags
        first = 0
        while first < len(tokens):
            end = _short_form_end(text, tokens, first, types, longest)
            if end is None or not _stands_alone(text, tokens[first].start, tokens[end - 1].end):
                first += 1
                continue
            current = tags[first:end]
            whole_mention = (current[0].startswith("B-") and all(t == "I-" + current[0][2:] for t in current[1:])
                             and (end == len(tags) or tags[end] != "I-" + current[0][2:]))
            if whole_mention or all(t == "O" for t in current):
                kind, confidence = types[text[tokens[first].start:tokens[end - 1].end]]
                wanted = [f"B-{kind}"] + [f"I-{kind}"] * (end - first - 1)
                if wanted != current:
                    tags[first:end] = wanted
                    sentence_scores[first:end] = [confidence] * (end - first)
                    changed += 1
            first = end
    return changed


def _short_form_end(text: str, tokens: Sequence[Token], first: int, short_forms: dict, longest: int) -> int | None:
    """One past the last token of the short form that starts at token ``first``, if one does."""
    for last in range(first, len(tokens)):
        if tokens[last].end - tokens[first].start > longest:
            return None
        if text[tokens[first].start:tokens[last].end] in short_forms:
            return last + 1
    return None
