"""Splitting an efetch PubmedArticleSet into one record per PMID, and joining records back.

Splitting is what lets the cache hold one small file per PMID and lets us tell which requested PMIDs
PubMed did not return. It is done in two steps, so that one bad article costs only itself:

1. A small lexer (:func:`_scan`) finds where each top-level article starts and ends in the raw bytes.
   It only needs the tags to be balanced, so an article nested 300 levels deep or holding an undefined
   entity does not hide its neighbours; it also tells a truncated body (the root never closes: worth a
   retry) from a body that is not a PubmedArticleSet at all (an HTML page: no retry will help).
2. Each article is then parsed on its own, as the one-article PubmedArticleSet it will be delivered in,
   by the PubMed file reader's own parser (:func:`mambaner_cli.readers._xml.iter_records`). So the fetch
   path accepts exactly what the reader accepts (same depth limit, no entities, no DTD, no network); an
   article the reader would reject is reported by PMID instead of failing its whole batch later.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from lxml import etree

from ..errors import InputError
from ..readers._xml import iter_records

ARTICLE_TAGS = ("PubmedArticle", "PubmedBookArticle")
ROOT_TAG = "PubmedArticleSet"
SET_HEADER = b'<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n'
SET_FOOTER = b"</PubmedArticleSet>\n"


class MalformedResponse(Exception):
    """A body that is not a complete PubmedArticleSet (truncated, HTML error page, JSON...).

    ``retryable`` is False when asking again cannot help: the body is complete but is not what was asked
    for (another root element, not XML at all). A truncated or empty body is worth another try.
    """

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class NcbiErrorResponse(Exception):
    """A well-formed body in which NCBI reports an error (``<eFetchResult><ERROR>...``), often with HTTP 200."""


@dataclass(frozen=True)
class ArticleRecord:
    """One top-level article of an efetch answer, as the raw bytes PubMed sent.

    ``problem`` says why the PubMed reader cannot parse it (None: it can); ``pmid`` is then read from the
    raw text as well as it can be, so that the problem is reported against the right PMID.
    """

    pmid: str | None
    xml: bytes
    problem: str | None = None


# Markup the lexer must step over whole (a '<' inside them is not a tag) and the tags themselves.
_MARKUP = re.compile(rb"""
      <!--.*?-->
    | <!\[CDATA\[.*?\]\]>
    | <\?.*?\?>
    | <!DOCTYPE(?:[^\[>]|\[.*?\])*>
    | <(?P<close>/)?(?P<name>[^\s/>!?"'=<]+)(?:[^>"'/]|"[^"]*"|'[^']*'|/(?!>))*(?P<empty>/)?>
""", re.DOTALL | re.VERBOSE)
_ARTICLE_END = {tag.encode(): re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|(?P<end></" + tag.encode() + rb"\s*>)",
                                          re.DOTALL) for tag in ARTICLE_TAGS}
_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_OWN_PMID = re.compile(rb"<PMID(?:\s[^>]*)?>\s*(\d+)\s*</PMID>")
_POSITION = re.compile(r",? line \d+, column \d+")
_UTF8_NAMES = {"utf-8", "utf8", "us-ascii", "ascii"}


@dataclass
class _Scan:
    root: str | None  # the root element's name (None: no element at all)
    children: list[tuple[str, int, int]]  # (tag, start, end) of each complete top-level child
    complete: bool  # the root element was closed


def _utf8(body: bytes) -> bytes:
    """``body`` as UTF-8 (what the joined sets declare): NCBI sends UTF-8, but a mirror might not."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    declared = _DECLARED_ENCODING.match(body.lstrip())
    if declared is None or declared.group(1).decode("ascii").lower() in _UTF8_NAMES:
        return body
    encoding = declared.group(1).decode("ascii")
    try:
        text = body.decode(encoding)
    except (LookupError, UnicodeDecodeError) as exc:
        raise MalformedResponse(f"cannot decode the answer as its declared encoding {encoding} ({exc})",
                                retryable=False) from None
    return text.replace(encoding, "UTF-8", 1).encode("utf-8")


def _scan(body: bytes) -> _Scan:
    """Where the top-level children of the root element start and end, from the tags alone.

    Tags are matched by name on a stack; an end tag that skips open elements closes them too (as
    lenient HTML parsers do). An article is not lexed tag by tag (the bulk of the body): it ends at its
    own first end tag outside comments and CDATA (articles do not nest), however broken its inside.
    """
    stack: list[bytes] = []
    root: bytes | None = None
    children: list[tuple[str, int, int]] = []
    child: tuple[bytes, int] | None = None
    position = 0
    while (match := _MARKUP.search(body, position)) is not None:
        position = match.end()
        name = match.group("name")
        if name is None:
            continue  # comment, CDATA, processing instruction, DOCTYPE
        if match.group("close"):
            if name not in stack:
                continue  # a stray end tag: the article's own parse will report it
            while stack.pop() != name:
                pass
            if len(stack) == 1 and child is not None and child[0] == name:
                children.append((child[0].decode("utf-8", "replace"), child[1], match.end()))
                child = None
            if not stack:
                return _Scan(root.decode("utf-8", "replace") if root else None, children, True)
        elif root is None:
            root = name
            if match.group("empty"):
                return _Scan(root.decode("utf-8", "replace"), children, True)
            stack.append(name)
        elif match.group("empty"):
            if len(stack) == 1:
                children.append((name.decode("utf-8", "replace"), match.start(), match.end()))
        elif len(stack) == 1 and name in _ARTICLE_END:
            end = _end_of_article(body, name, position)
            if end is None:
                break  # cut short inside an article
            children.append((name.decode("ascii"), match.start(), end))
            position = end
        else:
            if len(stack) == 1:
                child = (name, match.start())
            stack.append(name)
    return _Scan(root.decode("utf-8", "replace") if root else None, children, False)


def _end_of_article(body: bytes, name: bytes, position: int) -> int | None:
    """Where the article opened before ``position`` ends: after its end tag (None: not in ``body``)."""
    pattern = _ARTICLE_END[name]
    while (match := pattern.search(body, position)) is not None:
        if match.group("end"):
            return match.end()
        position = match.end()  # a comment or CDATA section: an end tag inside it does not count
    return None


def scan_root(body: bytes) -> tuple[str | None, bool]:
    """The root element's name of an XML body (None: none found) and whether it is closed (not truncated)."""
    scan = _scan(_utf8(body) if body.strip() else body)
    return scan.root, scan.complete


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


def _ncbi_error(body: bytes) -> str | None:
    """NCBI's ``<ERROR>`` text in a body that is not a PubmedArticleSet (parsed leniently: it is small)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError:
        return None
    return error_text(root) if root is not None else None


def read_article(xml: bytes) -> str:
    """The PMID of one article, parsed exactly as the PubMed file reader parses it.

    Raises :class:`MalformedResponse` (not retryable: the bytes will not change) for anything the
    reader would reject, or for a record without a PMID.
    """
    document = join_article_set([xml])
    try:
        found = _read_set(document)
    except InputError as exc:
        raise MalformedResponse(_diagnosis(document) or exc.error.message, retryable=False) from None
    if len(found) != 1:  # a nested article element
        raise MalformedResponse(f"expected one article, found {len(found)}", retryable=False)
    pmid, problem = found[0]
    if problem is not None:
        raise MalformedResponse(problem, retryable=False)
    if pmid is None:
        raise MalformedResponse("an article without a PMID", retryable=False)
    return pmid


def _read_set(document: bytes) -> list[tuple[str | None, str | None]]:
    """``(PMID, problem)`` of each article of a PubmedArticleSet as the PubMed file reader reads it: the
    problem is what the reader reports for that article alone (a byte that does not decode), else None.
    Raises the reader's :class:`InputError` where it would stop reading."""
    records = iter_records(io.BytesIO(document), "article", ARTICLE_TAGS, ROOT_TAG)
    found: list[tuple[str | None, str | None]] = []
    for element in records:
        undecodable = getattr(records, "undecodable", None)  # (line, message) from readers that check it
        # the reader's advice after ";" is about files (--encoding ...), not an efetch answer
        found.append((article_pmid(element), undecodable[1].split(";")[0] if undecodable else None))
    return found


def _diagnosis(document: bytes) -> str | None:
    """A clearer reason than the streaming reader's for a document it rejected (which for an undefined
    entity says only "no element found"): libxml2's own, from a one-shot parse with the same safe
    settings, without the position (it is within the one-article document, not the efetch answer)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        etree.fromstring(document, parser)
    except etree.XMLSyntaxError as exc:
        message = _POSITION.sub("", str(exc.msg or "")).replace(", use XML_PARSE_HUGE option", " levels")
        return f"not well-formed XML: {message}" if message else None
    return None


def _salvage_pmid(xml: bytes) -> str | None:
    """The own PMID of an article the reader rejects: the first ``<PMID>`` (MedlineCitation's or
    BookDocument's comes first in PubMed's DTD, before any cited PMID)."""
    match = _OWN_PMID.search(xml)
    return match.group(1).decode("ascii") if match else None


def _articles(body: bytes) -> list[tuple[str, bytes]]:
    """``(tag, raw bytes)`` of each top-level article of a PubmedArticleSet; raises for other bodies."""
    if not body.strip():
        raise MalformedResponse("empty response")
    body = _utf8(body)
    if not body.lstrip().startswith(b"<"):
        start = body.lstrip()[:40].decode("utf-8", "replace")
        raise MalformedResponse(f"the answer is not XML (it starts {start!r})", retryable=False)
    scan = _scan(body)
    if scan.root != ROOT_TAG:
        message = _ncbi_error(body)
        if message is not None:
            raise NcbiErrorResponse(message)
        if scan.root is None:
            raise MalformedResponse("response is not well-formed XML, probably truncated (no element)")
        raise MalformedResponse(f"expected <{ROOT_TAG}>, got <{scan.root}>", retryable=False)
    if not scan.complete:
        raise MalformedResponse(f"response is not well-formed XML, probably truncated (<{ROOT_TAG}> "
                                f"is not closed after {len(body)} bytes)")
    if any(tag == "ERROR" for tag, _start, _end in scan.children):
        raise NcbiErrorResponse(_ncbi_error(body) or "unspecified error")
    return [(tag, body[start:end]) for tag, start, end in scan.children if tag in ARTICLE_TAGS]


def split_records(body: bytes) -> list[ArticleRecord]:
    """Every article of an efetch body, in document order, each checked with the PubMed reader's parser.

    Raises :class:`MalformedResponse` for anything but a complete PubmedArticleSet and
    :class:`NcbiErrorResponse` for an NCBI error body; a bad article is a record with a ``problem``.
    """
    articles = [xml for _tag, xml in _articles(body)]
    try:  # the usual case: the reader reads the whole set it will be given (one parse, not one per article)
        pmids = _read_set(join_article_set(articles))
    except InputError:
        pmids = []
    if len(pmids) == len(articles) and all(pmid and not problem for pmid, problem in pmids):
        return [ArticleRecord(pmid, xml) for (pmid, _problem), xml in zip(pmids, articles)]
    records: list[ArticleRecord] = []
    for xml in articles:  # someone is bad: find out who, article by article
        try:
            records.append(ArticleRecord(read_article(xml), xml))
        except MalformedResponse as exc:
            records.append(ArticleRecord(_salvage_pmid(xml), xml, str(exc)))
    return records


def split_article_set(body: bytes) -> list[tuple[str, bytes]]:
    """``(pmid, article XML)`` for each article in an efetch body, in document order.

    Strict: raises :class:`MalformedResponse` for a body or an article the PubMed reader cannot parse,
    and :class:`NcbiErrorResponse` for an NCBI error body. :func:`split_records` keeps the good articles.
    """
    articles: list[tuple[str, bytes]] = []
    for record in split_records(body):
        if record.problem is not None or record.pmid is None:
            raise MalformedResponse(f"PMID {record.pmid or '?'}: {record.problem}", retryable=False)
        articles.append((record.pmid, record.xml))
    return articles


def join_article_set(articles: Iterable[bytes]) -> bytes:
    """One PubmedArticleSet document holding the given article snippets."""
    return SET_HEADER + b"".join(article + b"\n" for article in articles) + SET_FOOTER


def iter_articles(batch: bytes) -> Iterator[bytes]:
    """The article snippets of one PubmedArticleSet document (one of :func:`fetch_batches`, whose
    articles were checked when fetched or read from the cache: they are not parsed again)."""
    for _tag, xml in _articles(batch):
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
