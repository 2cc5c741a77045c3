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
