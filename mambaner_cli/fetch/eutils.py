"""PubMed searches (esearch with the history server) and record fetches (efetch in batches).

:func:`fetch_batches` yields PubmedArticleSet XML, one document per batch, for the PubMed XML reader
(or :func:`~.articles.write_pubmed_xml`). Every requested PMID ends up in exactly one place of the
:class:`FetchReport`: delivered (``fetched``), ``missing`` (PubMed answered without it) or ``failed``
(its batch kept failing); none is dropped silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from lxml import etree

from ..errors import MambanerError
from .articles import MalformedResponse, NcbiErrorResponse, error_text, join_article_set, split_article_set
from .cache import ArticleCache
from .settings import FetchSettings
from .transport import RequestFailed, call

log = logging.getLogger("mambaner.fetch")

#: PubMed's esearch serves only the first 9,999 records of a result set (retstart <= 9998).
ESEARCH_LIMIT = 9999

ProgressCallback = Callable[[int, int], None]


@dataclass
class FetchReport:
    """What became of each requested PMID; complete once the batch iterator is exhausted."""

    requested: int = 0  # distinct PMIDs asked for
    fetched: int = 0  # requested PMIDs delivered, from the cache or from PubMed
    cached: int = 0  # of which read from the cache
    duplicates: int = 0  # repeated PMIDs in the input, asked for once
    missing: list[str] = field(default_factory=list)  # PubMed answered, but without these
    failed: list[tuple[list[str], str]] = field(default_factory=list)  # (PMIDs of a batch, reason)
    unexpected: list[str] = field(default_factory=list)  # returned without being asked for (delivered too)

    @property
    def failed_pmids(self) -> list[str]:
        return [pmid for pmids, _reason in self.failed for pmid in pmids]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.failed

    def summary(self) -> str:
        parts = [f"fetched {self.fetched} of {self.requested} PMIDs"
                 + (f" ({self.cached} from the cache)" if self.cached else "")]
        if self.missing:
            parts.append(f"{len(self.missing)} not returned by PubMed: {', '.join(self.missing)}")
        for pmids, reason in self.failed:
            parts.append(f"{len(pmids)} failed ({reason}): {', '.join(pmids)}")
        return "; ".join(parts)


@dataclass
class SearchResult:
    query: str
    count: int  # records matching in PubMed (may exceed len(pmids))
    pmids: list[str]  # the first max_results of them, in PubMed's order
    warnings: list[str] = field(default_factory=list)  # e.g. phrases PubMed did not find


@dataclass
class _SearchPage:
    count: int
    ids: list[str]
    webenv: str | None
    query_key: str | None
    warnings: list[str]


def _parse_esearch(body: bytes) -> _SearchPage:
    """An esearch answer, XML (the default) or JSON; an ``ERROR`` in it raises NcbiErrorResponse."""
    text = body.lstrip()
    if text.startswith(b"{"):
        try:
            data = json.loads(text)
            result = data["esearchresult"]
        except (ValueError, KeyError, TypeError):
            raise MalformedResponse("esearch answer is not the expected JSON") from None
        if result.get("ERROR") or result.get("error"):
            raise NcbiErrorResponse(str(result.get("ERROR") or result.get("error")))
        try:
            count = int(result["count"])
        except (KeyError, ValueError):
            raise MalformedResponse("esearch JSON without a count") from None
        errors = result.get("errorlist") or {}
        warnings = [f"PubMed did not find {p!r}" for p in errors.get("phrasesnotfound", [])]
        return _SearchPage(count, [str(i) for i in result.get("idlist", [])], result.get("webenv"),
                           result.get("querykey"), warnings)
    try:
        root = etree.fromstring(body, etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        raise MalformedResponse(f"esearch answer is not well-formed XML ({exc})") from None
    message = error_text(root)
    if message is not None:
        raise NcbiErrorResponse(message)
    if root.tag != "eSearchResult" or root.findtext("Count") is None:
        raise MalformedResponse(f"expected <eSearchResult> with a <Count>, got <{root.tag}>")
    try:
        count = int(root.findtext("Count", ""))
    except ValueError:
        raise MalformedResponse("esearch <Count> is not a number") from None
    ids = [(e.text or "").strip() for e in root.iterfind("IdList/Id")]
    warnings = [f"PubMed did not find {(e.text or '').strip()!r}" for e in root.iterfind("ErrorList/*")
                if e.tag.startswith("PhraseNotFound") or e.tag.startswith("FieldNotFound")]
    return _SearchPage(count, ids, root.findtext("WebEnv"), root.findtext("QueryKey"), warnings)


def search(query: str, settings: FetchSettings, max_results: int, page_size: int = ESEARCH_LIMIT) -> SearchResult:
    """The PMIDs of the first ``max_results`` PubMed records matching ``query``.

    The first esearch stores the result set on NCBI's history server (usehistory=y); later pages
    (``retstart``) are read from that stored set (WebEnv + query_key), so records added meanwhile do
    not shift the pages. Raises :class:`MambanerError` if PubMed cannot run the search.
    """
    settings.require_email()
    if not query.strip():
        raise MambanerError("the PubMed query is empty")
    if max_results < 1 or page_size < 1:
        raise MambanerError("the maximum number of search results must be at least 1")
    result = SearchResult(query, 0, [])
    wanted = max_results
    if max_results > ESEARCH_LIMIT:
        wanted = ESEARCH_LIMIT
    webenv: str | None = None
    query_key: str | None = None
    while True:
        params: dict[str, object] = {"db": "pubmed", "term": query, "usehistory": "y",
                                     "retstart": len(result.pmids),
                                     "retmax": min(page_size, wanted - len(result.pmids))}
        if webenv and query_key:
            params.update(WebEnv=webenv, query_key=query_key)
        try:
            page = call(settings, "esearch", params, _parse_esearch)
        except RequestFailed as exc:
            raise MambanerError(f"PubMed search {query!r} failed: {exc}") from None
        if not result.pmids:  # the first page: it created the stored set
            result.count = page.count
            result.warnings.extend(page.warnings)
            webenv, query_key = page.webenv, page.query_key
        known = set(result.pmids)
        fresh = [pmid for pmid in page.ids if pmid not in known]
        result.pmids.extend(fresh)
        if not fresh or len(result.pmids) >= min(wanted, result.count):
            break
    if result.count > len(result.pmids) and max_results > ESEARCH_LIMIT:
        result.warnings.append(f"{result.count} records match, but PubMed's esearch serves only the first "
                               f"{ESEARCH_LIMIT}; split the query (e.g. by publication date) to get the rest")
    if len(result.pmids) > max_results:
        del result.pmids[max_results:]
    return result


def _distinct(pmids: Sequence[str], report: FetchReport) -> list[str]:
    seen: set[str] = set()
    unique: list[str] = []
    for pmid in pmids:
        if not (isinstance(pmid, str) and pmid.isdigit()):
            raise ValueError(f"not a PMID: {pmid!r} (use parse_pmid_list or read_pmid_file)")
        if pmid in seen:
            report.duplicates += 1
        else:
            seen.add(pmid)
            unique.append(pmid)
    return unique


def fetch_batches(pmids: Sequence[str], settings: FetchSettings, report: FetchReport,
                  on_progress: ProgressCallback | None = None) -> Iterator[bytes]:
    """PubmedArticleSet XML documents holding the records of ``pmids``; fills ``report`` as it goes.

    Cached articles come first (joined into sets of ``batch_size``), then one document per efetch
    batch of at most ``batch_size`` uncached PMIDs; a batch that yields no article yields no document.
    Each fetched article is cached before its batch is yielded, so an interrupted run loses nothing.
    ``on_progress(done, total)`` is called as PMIDs are settled: ``done`` counts PMIDs delivered,
    missing or failed, so it reaches ``total`` (the distinct PMIDs) even when some fail.
    """
    settings.require_email()
    unique = _distinct(pmids, report)
    report.requested += len(unique)
    total = len(unique)
    done = 0

    def progress(settled: int) -> None:
        nonlocal done
        done += settled
        if on_progress is not None:
            on_progress(done, total)

    progress(0)
    cache = ArticleCache(settings.cache_dir) if settings.cache_dir is not None else None
    delivered: set[str] = set()
    to_fetch = unique
    if cache is not None:
        to_fetch = []
        hits: list[bytes] = []
        for pmid in unique:
            xml = cache.get(pmid)
            if xml is None:
                to_fetch.append(pmid)
                continue
            hits.append(xml)
            delivered.add(pmid)
            if len(hits) == settings.batch_size:
                report.fetched += len(hits)
                report.cached += len(hits)
                yield join_article_set(hits)
                progress(len(hits))
                hits = []
        if hits:
            report.fetched += len(hits)
            report.cached += len(hits)
            yield join_article_set(hits)
            progress(len(hits))

    failures_in_a_row = 0
    last_reason = ""
    for start in range(0, len(to_fetch), settings.batch_size):
        batch = to_fetch[start:start + settings.batch_size]
        if 0 < settings.max_consecutive_failures <= failures_in_a_row:
            reason = f"not requested after {failures_in_a_row} failed batches in a row (last: {last_reason})"
            report.failed.append((batch, reason))
            progress(len(batch))
            continue
        try:
            articles = call(settings, "efetch", {"db": "pubmed", "id": batch, "rettype": "xml",
                                                 "retmode": "xml"}, split_article_set)
        except RequestFailed as exc:
            last_reason = str(exc)
            failures_in_a_row += 1
            report.failed.append((batch, last_reason))
            log.warning("efetch of %d PMIDs (%s...) failed: %s", len(batch), batch[0], last_reason)
            progress(len(batch))
            continue
        failures_in_a_row = 0
        wanted = set(batch)
        returned: set[str] = set()
        documents: list[bytes] = []
        for pmid, xml in articles:
            if pmid in returned:
                continue  # the same record twice in one answer
            returned.add(pmid)
            if pmid in delivered:
                continue  # already yielded: PubMed sent it unasked with an earlier batch
            documents.append(xml)
            if pmid not in wanted:
                report.unexpected.append(pmid)
                log.warning("PubMed returned PMID %s, which was not asked for", pmid)
            if cache is not None:
                try:
                    cache.put(pmid, xml)
                except OSError as exc:
                    log.warning("cannot cache PMID %s in %s: %s", pmid, cache.directory, exc)
        missing = [pmid for pmid in batch if pmid not in returned]
        report.missing.extend(missing)
        report.fetched += len(batch) - len(missing)
        delivered |= returned
        if documents:
            yield join_article_set(documents)
        progress(len(batch))
