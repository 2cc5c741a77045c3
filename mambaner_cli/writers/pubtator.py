"""PubTator output: title and abstract lines, then one tab-separated line per mention.

Layout (a blank line ends every document)::

    12345|t|Cystic fibrosis in adults
    12345|a|Patients with cystic fibrosis ...
    12345<TAB>0<TAB>15<TAB>Cystic fibrosis<TAB>Disease<TAB>-
    12345<TAB>40<TAB>55<TAB>cystic fibrosis<TAB>Disease<TAB>-

PubTator offsets index ``title + " " + abstract``. For a PubMed document (a title passage at 0 and an
abstract one character after it) that string is exactly ``Document.text``, so offsets are written
unchanged. Other layouts are mapped the same way: the first passage (when it starts at 0 and is followed
by a gap) is the ``t`` line and everything after the gap character is the ``a`` line, extra passages and
wider gaps included; a document whose first passage is not followed by a gap is written entirely on the
``t`` line with an empty ``a`` line. Either way ``t + " " + a`` equals ``Document.text`` and every
offset stays valid. The concept-identifier column is ``-`` (the tagger does not normalise mentions).

Tabs and line breaks inside text (which would break the line format) are written as spaces, one for one,
so offsets are unchanged.
"""

from __future__ import annotations

from ..document import Document
from .base import Writer
from .escape import one_line


def split_title_abstract(doc: Document) -> tuple[str, str]:
    """The (title, abstract) pair whose ``title + " " + abstract`` is the document text."""
    text = doc.text
    if doc.passages and doc.passages[0].offset == 0:
        cut = doc.passages[0].end
        if cut == len(text):
            return text, ""
        if text[cut] == " ":  # gaps between passages are filled with spaces
            return text[:cut], text[cut + 1:]
    return text, ""


class PubtatorWriter(Writer):
    name = "pubtator"

    def _write_document(self, doc: Document) -> None:
        doc_id = one_line(doc.id)
        title, abstract = split_title_abstract(doc)
        lines = [f"{doc_id}|t|{one_line(title)}\n", f"{doc_id}|a|{one_line(abstract)}\n"]
        for span in doc.annotations:
            lines.append(f"{doc_id}\t{span.start}\t{span.end}\t{one_line(span.text)}\t{one_line(span.label)}\t-\n")
        lines.append("\n")
        self.stream.write("".join(lines).encode("utf-8"))
