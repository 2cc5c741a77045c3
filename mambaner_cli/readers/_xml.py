"""Safe, constant-memory streaming of XML records, shared by the PubMed and BioC readers.

A PubMed baseline file is ~1 GB of XML, so records are parsed as they complete and cleared right
after, with the tree pruned behind them. The parser never expands entities, loads a DTD or touches the
network: input files come from anywhere, and an external entity must not read local files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from lxml import etree

from ..errors import InputError

CHUNK_SIZE = 1 << 16


def iter_records(stream: BinaryIO, source: str, tags: tuple[str, ...], root_tag: str,
                 hint: str = "") -> Iterator[etree._Element]:
    """Yield each completed element named in ``tags``; it is cleared once the caller resumes.

    Raises InputError for an empty file, a root other than ``root_tag`` or malformed XML; records that
    completed before the error have been yielded by then.
    """
    parser = etree.XMLPullParser(events=("end",), tag=tags, resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False)
    root_checked = False

    def check_root(root: etree._Element) -> None:
        if root.tag != root_tag:
            raise InputError(source, f"the root element is <{root.tag}>, not <{root_tag}>{hint}",
                             line=root.sourceline)

    def completed() -> Iterator[etree._Element]:
        nonlocal root_checked
        for _, elem in parser.read_events():
            if not root_checked:
                check_root(elem.getroottree().getroot())
                root_checked = True
            yield elem
            elem.clear(keep_tail=True)
            while elem.getprevious() is not None:
                del elem.getparent()[0]

    empty = True
    try:
        while chunk := stream.read(CHUNK_SIZE):
            empty = empty and not chunk.strip()
            parser.feed(chunk)
            yield from completed()
        if empty:
            raise InputError(source, "empty file")
        root = parser.close()
    except etree.XMLSyntaxError as error:
        yield from completed()
        raise InputError(source, f"not well-formed XML: {error.msg}", line=error.lineno) from None
    yield from completed()
    check_root(root)


def text_of(elem: etree._Element) -> str:
    """All the text inside ``elem`` (inline markup included), entity references and comments left out.

    (``itertext(etree.Element)`` would also drop the text that follows an entity reference.)
    """
    parts = [elem.text or ""]
    for child in elem:
        if isinstance(child.tag, str):  # an element, not an entity reference, comment or PI
            parts.append(text_of(child))
        parts.append(child.tail or "")
    return "".join(parts)


def normalize_space(text: str) -> str:
    return " ".join(text.split())
