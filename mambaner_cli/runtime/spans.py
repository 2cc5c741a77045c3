"""From IOB2 tags on tokens to character spans, and back."""

from __future__ import annotations

from collections.abc import Sequence

from mambaner_cli.document import Span, Token


def repair_iob(tags: Sequence[str]) -> list[str]:
    """Make a tag sequence valid IOB2: an ``I-X`` that does not continue an ``X`` mention starts one.

    Decoders never emit invalid sequences, but windows stitched together at their seams can.
    """
    repaired: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        repaired.append(tag)
        previous = tag
    return repaired


_CLOSING = {"(": ")", "[": "]", "{": "}"}
_OPENING = {close: open_ for open_, close in _CLOSING.items()}


def split_unbalanced_brackets(tokens: Sequence[str], tags: Sequence[str]) -> list[str]:
    """``tags`` (valid IOB2) with every mention that holds an unmatched bracket token cut at it: the
    bracket becomes O and the pieces on either side mentions of the same type ("Pokeweed mitogen ( PWM" →
    "Pokeweed mitogen", "PWM"; "jaw of steel )" → "jaw of steel").

    A network sometimes runs a long form into its abbreviation's bracket ("Crohn's disease (CD"). Of the
    mentions with an unmatched bracket that the default recipe's train-only runs predicted on the devel splits
    of the nine corpora, 1 in 274 was right, and gold mentions have 3 among thousands; cutting them raised both
    runs' devel macro F1 (80.13 → 80.22 and 79.05 → 79.14, variant patterns on; dropping them instead:
    +0.08 / +0.05; extending to the closing bracket: +0.02 / +0.00) and left the disease model's devel
    figures as they were (README, Benchmark)."""
    result = list(tags)
    for start, end, kind in mention_bounds(tags):
        open_positions: list[int] = []
        unmatched: list[int] = []
        for position in range(start, end):
            token = tokens[position]
            if token in _CLOSING:
                open_positions.append(position)
            elif token in _OPENING:
                if open_positions and tokens[open_positions[-1]] == _OPENING[token]:
                    open_positions.pop()
                else:
                    unmatched.append(position)
        cuts = sorted(unmatched + open_positions)
        if cuts:
            result[start:end] = ["O"] * (end - start)
            for first, last in zip([start - 1, *cuts], [*cuts, end]):
                if last > first + 1:
                    result[first + 1:last] = [f"B-{kind}"] + [f"I-{kind}"] * (last - first - 2)
    return result


def mention_bounds(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(first token, one past the last token, type) of each mention of valid IOB2 tags."""
    found: list[tuple[int, int, str]] = []
    start = 0
    while start < len(tags):
        if not tags[start].startswith("B-"):
            start += 1
            continue
        end = start + 1
        while end < len(tags) and tags[end] == "I-" + tags[start][2:]:
            end += 1
        found.append((start, end, tags[start][2:]))
        start = end
    return found


def spans_from_tags(text: str, tokens: Sequence[Token], tags: Sequence[str], scores: Sequence[float],
                    sentence_index: int = -1) -> list[Span]:
    """Mentions from the tags of one sentence; ``text`` is the document text.

    A mention runs from its ``B-`` token to its last ``I-`` token of the same type, and its score is
    the mean confidence of those tokens; an ``I-`` that continues nothing starts a mention, as
    :func:`repair_iob` makes it.
    """
    spans: list[Span] = []
    start = -1
    label = ""
    previous = -1  # the last position looked at: a gap since then is O tags, which end a mention
    # Only the tagged positions are visited (most tokens are O: the loop over every token was most of
    # the parent's work in a run with workers); a final O closes the last mention.
    for i in [*(i for i, tag in enumerate(tags) if tag != "O"), len(tags)]:
        tag = tags[i] if i < len(tags) else "O"
        continues = i == previous + 1 and tag.startswith("I-") and tag[2:] == label
        if start >= 0 and not continues:
            begin, end = tokens[start].start, tokens[previous].end
            score = sum(scores[start:previous + 1]) / (previous + 1 - start)
            spans.append(Span(begin, end, text[begin:end], label, round(float(score), 4), sentence_index))
            start = -1
        if tag.startswith("B-") or (tag.startswith("I-") and not continues):
            start, label = i, tag[2:]
        previous = i
    return spans


def tags_from_spans(tokens: Sequence[Token], spans: Sequence[Span]) -> list[str]:
    """IOB2 tags of tokens given gold character spans (a token overlapping a span belongs to it)."""
    tags = ["O"] * len(tokens)
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        inside = [i for i, t in enumerate(tokens) if t.start < span.end and t.end > span.start and tags[i] == "O"]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + span.label
    return tags
