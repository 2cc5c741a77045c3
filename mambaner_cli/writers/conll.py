"""CoNLL output: one ``token<TAB>tag`` line per token, IOB2 tags, a blank line after each sentence.

Layout::

    # doc_id = 12345
    Cystic<TAB>B-Disease
    fibrosis<TAB>I-Disease
    ...<blank line ends the sentence>

Each document starts with a ``# doc_id = <id>`` comment line (the convention of CoNLL-U and of most
NER tool kits), so that the tokens can be traced back to their document; sentences follow in document
order across passages. A document without any token still appears: its comment line followed by a blank
line. Whitespace inside a token (which would split the column) is written as ``_``.

Tags come from ``Sentence.tags``. A sentence without tags (say, a gold-annotated corpus being converted
rather than tagged) gets IOB2 tags derived from the passage's annotations, so that the writer also
serves for exporting training data.
"""

from __future__ import annotations

import re

from ..document import Document, Sentence, Span
from .base import Writer
from .escape import one_line

_WHITESPACE = re.compile(r"\s")


def iob2_tags(sentence: Sentence, spans: list[Span]) -> list[str]:
    """IOB2 tags for the sentence's tokens: a token overlapping a span gets B-/I-<label>."""
    tags: list[str] = []
    previous: Span | None = None
    for token in sentence.tokens:
        covering = next((span for span in spans if span.start < token.end and token.start < span.end), None)
        if covering is None:
            tags.append("O")
        elif covering is previous:
            tags.append(f"I-{covering.label}")
        else:
            tags.append(f"B-{covering.label}")
        previous = covering
    return tags


class ConllWriter(Writer):
    name = "conll"

    def _write_document(self, doc: Document) -> None:
        lines = [f"# doc_id = {one_line(doc.id)}\n"]
        wrote_sentence = False
        for passage in doc.passages:
            for sentence in passage.sentences:
                if not sentence.tokens:
                    continue  # an empty sentence would read as two sentence breaks
                tags = sentence.tags
                if not tags:
                    tags = iob2_tags(sentence, passage.annotations)
                elif len(tags) != len(sentence.tokens):
                    raise ValueError(
                        f"document {doc.id}, sentence {sentence.index}: {len(sentence.tokens)} tokens "
                        f"but {len(tags)} tags")
                for token, tag in zip(sentence.tokens, tags):
                    lines.append(f"{_WHITESPACE.sub('_', one_line(token.text))}\t{tag}\n")
                lines.append("\n")
                wrote_sentence = True
        if not wrote_sentence:
            lines.append("\n")
        self.stream.write("".join(lines).encode("utf-8"))
