"""BioC XML output, valid against the BioC DTD (``BioC.dtd``).

Each document is written as soon as it arrives (nothing is kept in memory), with passage-level text and
annotations::

    <?xml version='1.0' encoding='UTF-8'?>
    <!DOCTYPE collection SYSTEM "BioC.dtd">
    <collection>
      <source>mambaner</source>
      <date>20250101</date>
      <key>mambaner.key</key>
      <infon key="model">...</infon>          (when the model is known)
      <document>
        <id>12345</id>
        <passage>
          <infon key="type">title</infon>
          <offset>0</offset>
          <text>Cystic fibrosis ...</text>
          <annotation id="0">
            <infon key="type">Disease</infon>
            <infon key="score">0.9876</infon>
            <location offset="0" length="15"/>
            <text>Cystic fibrosis</text>
          </annotation>
        </passage>
        ...

Annotation ids count from 0 across the passages of a document, so they are unique within it. Offsets
are document offsets counted in Unicode code points. Characters that XML 1.0 forbids (C0 control
characters other than tab, newline and carriage return) are written as spaces, one for one, so every
offset still points at the same text; carriage returns are written as ``&#13;`` so that XML line-end
normalisation cannot shorten the text when it is read back.

Zero documents: the DTD requires at least one ``<document>``, so no file describing an empty run can be
DTD-valid. The writer still writes the collection header with no document: the file is well-formed XML,
every BioC reader we know of loads it as an empty collection, and a run over an empty input does not fail
after the fact. Only that one DTD rule is broken, and only for an empty run.

A document without any passage (possible from some inputs) gets one empty ``text`` passage at offset 0,
since the DTD requires ``passage+``.
"""

from __future__ import annotations

import datetime
from typing import BinaryIO

from ..document import Document, Passage
from .base import Writer
from .escape import xml_safe

DOCTYPE = '<!DOCTYPE collection SYSTEM "BioC.dtd">'


def _text(value: str) -> str:
    """Character data: XML-safe, with markup characters and carriage returns escaped."""
    value = xml_safe(value)
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def _attr(value: str) -> str:
    """A double-quoted attribute value; tab/newline escaped so attribute normalisation keeps them."""
    return (_text(value).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;"))


def _infon(key: str, value: str, indent: str) -> str:
    return f'{indent}<infon key="{_attr(key)}">{_text(value)}</infon>\n'


class BiocWriter(Writer):
    name = "bioc"

    def __init__(self, stream: BinaryIO, *, model: str = "", source: str = "mambaner",
                 date: str | None = None, key: str = "mambaner.key") -> None:
        super().__init__(stream, model=model, source=source)
        self.date = date if date is not None else datetime.date.today().strftime("%Y%m%d")
        header = [
            "<?xml version='1.0' encoding='UTF-8'?>\n",
            DOCTYPE + "\n",
            "<collection>\n",
            f"  <source>{_text(source)}</source>\n",
            f"  <date>{_text(self.date)}</date>\n",
            f"  <key>{_text(key)}</key>\n",
        ]
        if model:
            header.append(_infon("model", model, "  "))
        self.stream.write("".join(header).encode("utf-8"))

    def _write_document(self, doc: Document) -> None:
        parts = ["  <document>\n", f"    <id>{_text(doc.id)}</id>\n"]
        for key, value in doc.infons.items():
            parts.append(_infon(key, value, "    "))
        passages = doc.passages or [Passage("text", 0, "")]
        annotation_id = 0
        for passage in passages:
            parts.append("    <passage>\n")
            parts.append(_infon("type", passage.type, "      "))
            for key, value in passage.infons.items():
                if key != "type":
                    parts.append(_infon(key, value, "      "))
            parts.append(f"      <offset>{passage.offset}</offset>\n")
            parts.append(f"      <text>{_text(passage.text)}</text>\n")
            for span in passage.annotations:
                parts.append(f'      <annotation id="{annotation_id}">\n')
                parts.append(_infon("type", span.label, "        "))
                parts.append(_infon("score", f"{span.score:.4f}", "        "))
                parts.append(f'        <location offset="{span.start}" length="{span.end - span.start}"/>\n')
                parts.append(f"        <text>{_text(span.text)}</text>\n")
                parts.append("      </annotation>\n")
                annotation_id += 1
            parts.append("    </passage>\n")
        parts.append("  </document>\n")
        self.stream.write("".join(parts).encode("utf-8"))

    def _finish(self) -> None:
        self.stream.write(b"</collection>\n")
