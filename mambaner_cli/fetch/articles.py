"""Splitting an efetch PubmedArticleSet into one XML snippet per PMID, and joining snippets back.

Splitting is what lets the cache hold one small file per PMID and lets us tell which requested PMIDs
PubMed did not return; parsing the whole body is also how a truncated response is caught (it does not
parse). The parser never loads the DTD named in NCBI's DOCTYPE and never touches the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from lxml import etree

ARTICLE_TAGS = ("PubmedArticle", "PubmedBookArticle")
SET_HEADER = b'<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n'
SET_FOOTER = b"</PubmedArticleSet>\n"


class MalformedResponse(Exception):
    """A body that is not a complete PubmedArticleSet (truncated, HTML error page, JSON...)."""


class NcbiErrorResponse(Exception):
    """A well-formed body in which NCBI reports an error (``<eFetchResult><ERROR>...``), often with HTTP 200."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def _parse(body: bytes) -> etree._Element:
    if not body.strip():
        raise MalformedResponse("empty response")
    try:
        return etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise MalformedResponse(f"response is not well-formed XML, probably truncated ({exc})") from None


def article_pmid(article: etree._Element) -> str | None:
    """The article's own PMID (not the PMIDs it cites or comments on)."""
    for path in ("MedlineCitation/PMID", "BookDocument/PMID"):
        text = article.findtext(path)
        if text and text.strip():
            return text.strip()
    return None


def error_text(root: etree._Element) -> str | None:
    """The text of NCBI's ``<ERROR>`` element(s) in a parsed body, if any."""
    if root.tag == "ERROR":
        return " ".join(root.itertext()).strip() or "unspecified error"
    messages = [" ".join(e.itertext()).strip() for e in root.iterchildren("ERROR")]
    return "; ".join(m for m in messages if m) or ("unspecified error" if messages else None)


def split_article_set(body: bytes) -> list[tuple[str, bytes]]:
    """``(pmid, article XML)`` for each article in an efetch body, in document order.

    Raises :class:`MalformedResponse` for anything but a complete PubmedArticleSet and
    :class:`NcbiErrorResponse` for an NCBI error body.
    """
    root = _parse(body)
    message = error_text(root)
    if message is not None:
        raise NcbiErrorResponse(message)
    if root.tag != "PubmedArticleSet":
        raise MalformedResponse(f"expected <PubmedArticleSet>, got <{root.tag}>")
    articles: list[tuple[str, bytes]] = []
    for child in root:
        if not isinstance(child.tag, str) or child.tag not in ARTICLE_TAGS:
            continue  # comments, <DeleteCitation>: no article to return
        pmid = article_pmid(child)
        if pmid is None:
            raise MalformedResponse(f"a <{child.tag}> without a PMID")
        articles.append((pmid, etree.tostring(child, encoding="UTF-8", xml_declaration=False, with_tail=False)))
    return articles


def read_article(xml: bytes) -> str:
    """The PMID of one stored article snippet; raises :class:`MalformedResponse` if it is not one."""
    root = _parse(xml)
    pmid = article_pmid(root) if root.tag in ARTICLE_TAGS else None
    if pmid is None:
        raise MalformedResponse(f"not a PubMed article: <{root.tag}>")
    return pmid


def join_article_set(articles: Iterable[bytes]) -> bytes:
    """One PubmedArticleSet document holding the given article snippets."""
    return SET_HEADER + b"".join(article + b"\n" for article in articles) + SET_FOOTER


def iter_articles(batch: bytes) -> Iterator[bytes]:
    """The article snippets of one PubmedArticleSet document."""
    for _pmid, xml in split_article_set(batch):
        yield xml


def write_pubmed_xml(batches: Iterable[bytes], out: BinaryIO) -> int:
    """Write the articles of every batch into ONE PubmedArticleSet document; returns the article count.

    Streams: one batch is held in memory at a time. ``out`` may be a gzip stream. Even no batch at all
    gives a valid (empty) document.
    """
    out.write(SET_HEADER)
    count = 0
    for batch in batches:
        for article in iter_articles(batch):
            out.write(article + b"\n")
            count += 1
    out.write(SET_FOOTER)
    return count
