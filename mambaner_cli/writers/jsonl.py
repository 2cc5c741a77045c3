"""JSON Lines output: one JSON object per document, one document per line, UTF-8.

Each line::

    {"id": "12345", "source": "pubmed.xml.gz", "text": "<title> <abstract>",
     "passages": [{"type": "title", "offset": 0, "text": "..."}, ...],
     "mentions": [{"start": 0, "end": 15, "text": "Cystic fibrosis", "label": "Disease",
                   "score": 0.9876, "passage": "title", "sentence": 0}, ...],
     "model": "mambaner-base"}

``text`` is the whole document text (passages at their offsets, gaps filled with spaces); mention
offsets index it, in Unicode code points, so ``text[start:end] == mention["text"]`` in Python.
``sentence`` is the sentence's index in the document (null if unknown); ``score`` is rounded to four
decimals. A document without mentions has ``"mentions": []``.

Non-ASCII text is written as is (``ensure_ascii=False``), except U+0085, U+2028 and U+2029, which are
written as ``\\u`` escapes so that no line-splitting tool can cut a record in two; lone surrogates
(undecodable input) are written as ``\\udcXX`` escapes rather than failing.
"""

from __future__ import annotations

import json
from typing import Any

from ..document import Document
from .base import Writer


class JsonlWriter(Writer):
    name = "jsonl"

    def _write_document(self, doc: Document) -> None:
        record: dict[str, Any] = {
            "id": doc.id,
            "source": doc.source,
            "text": doc.text,
            "passages": [{"type": p.type, "offset": p.offset, "text": p.text} for p in doc.passages],
            "mentions": [
                {"start": span.start, "end": span.end, "text": span.text, "label": span.label,
                 "score": round(float(span.score), 4), "passage": passage.type,
                 "sentence": span.sentence_index if span.sentence_index >= 0 else None}
                for passage in doc.passages for span in passage.annotations
            ],
            "model": self.model,
        }
        line = json.dumps(record, ensure_ascii=False)
        if "\x85" in line or "\u2028" in line or "\u2029" in line:
            line = line.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        self.stream.write(line.encode("utf-8", "backslashreplace") + b"\n")
