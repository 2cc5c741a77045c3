"""PubMed searches (esearch with the history server) and record fetches (efetch in batches).

:func:`fetch_batches` yields PubmedArticleSet XML, one document per batch, for the PubMed XML reader
(or :func:`~.articles.write_pubmed_xml`). Every requested PMID ends up in exactly one place of the
:class:`FetchReport`: delivered (``fetched``), ``missing`` (PubMed answered without it) or ``failed``
(its batch kept failing, or PubMed's record of it is one the PubMed reader cannot parse: that article
alone fails); none is dropped silently.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from lxml import etree

from ..errors import MambanerError, MambanerUsageError
from .articles import (
    MalformedResponse,
    NcbiErrorResponse,
    error_text,
    join_article_set,
    scan_root,
    split_records,
)
from .cache import ArticleCache
from .settings import FetchSettings
from .transport import RequestFailed, call

log = logging.getLogger("mambaner.fetch")

#: PubMed's esearch serves only the first 9,999 records of a result set (retstart <= 9998).
ESEARCH_LIMIT = 9999
#: The highest PMID :func:`~.pmids.parse_pmid_list` accepts (ten digits); the top of the range search.
MAX_PMID = 9_999_999_999
_PMID = re.compile(r"[1-9][0-9]{0,9}")

ProgressCallback = Callable[[int, int], None]


@dataclass
class FetchReport:
    """What became of each requested PMID; complete once the batch iterator is exhausted."""

    requested: int = 0  # distinct PMIDs asked for
    fetched: int = 0  # requested PMIDs delivered, from the cache or from PubMed
    cached: int = 0  # of which read from the cache
    duplicates: int = 0  # repeated PMIDs in the input, asked for once
    missing: list[str] = field(default_factory=list)  # PubMed answered, but without these
    # (PMIDs of a batch, reason), or ([PMID], reason) for one record the PubMed reader cannot parse
    failed: list[tuple[list[str], str]] = field(default_factory=list)
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
    root_tag, closed = scan_root(body)
    try:
        root = etree.fromstring(body, etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        # cut short: worth another try; complete but broken (or not XML at all): it would come back the same
        retryable = root_tag == "eSearchResult" and not closed
        raise MalformedResponse(f"esearch answer is not well-formed XML ({exc})", retryable=retryable) from None
    message = error_text(root)
    if message is not None:
        raise NcbiErrorResponse(message)
    if root.tag != "eSearchResult" or root.findtext("Count") is None:
        raise MalformedResponse(f"expected <eSearchResult> with a <Count>, got <{root.tag}>", retryable=False)
    try:
        count = int(root.findtext("Count", ""))
    except ValueError:
        raise MalformedResponse("esearch <Count> is not a number", retryable=False) from None
    ids = [(e.text or "").strip() for e in root.iterfind("IdList/Id")]
    warnings = [f"PubMed did not find {(e.text or '').strip()!r}" for e in root.iterfind("ErrorList/*")
                if e.tag.startswith("PhraseNotFound") or e.tag.startswith("FieldNotFound")]
    return _SearchPage(count, ids, root.findtext("WebEnv"), root.findtext("QueryKey"), warnings)


@dataclass
class _Listing:
    count: int  # records matching the term
    pmids: list[str]  # in PubMed's order, numeric and distinct
    warnings: list[str]


def _list_pmids(term: str, query: str, settings: FetchSettings, wanted: int, page_size: int,
                stop_over_limit: bool = False) -> _Listing:
    """The first ``wanted`` (at most ESEARCH_LIMIT) PMIDs matching ``term``, paged through the history server.

    The first esearch stores the result set on NCBI's history server (usehistory=y); later pages
    (``retstart``) are read from that stored set (WebEnv + query_key), so records added meanwhile do not
    shift the pages. With ``stop_over_limit``, a term matching more than ESEARCH_LIMIT records stops after
    its first page (the caller splits it). An ``<Id>`` that is not a PMID is skipped with a warning.
    """
    listing = _Listing(0, [], [])
    known: set[str] = set()
    webenv: str | None = None
    query_key: str | None = None
    retstart = 0
    first = True
    while True:
        params: dict[str, object] = {"db": "pubmed", "term": term, "usehistory": "y", "retstart": retstart,
                                     "retmax": min(page_size, wanted - len(listing.pmids))}
        if webenv and query_key:
            params.update(WebEnv=webenv, query_key=query_key)
        try:
            page = call(settings, "esearch", params, _parse_esearch)
        except RequestFailed as exc:
            raise MambanerError(f"PubMed search {query!r} failed: {exc}") from None
        if first:  # the first page: it created the stored set
            listing.count = page.count
            listing.warnings.extend(page.warnings)
            webenv, query_key = page.webenv, page.query_key
            first = False
        retstart += len(page.ids)
        fresh = 0
        for pmid in page.ids:
            if not _PMID.fullmatch(pmid):
                listing.warnings.append(f"PubMed's search answer lists {pmid!r}, which is not a PMID; skipped")
            elif pmid not in known:
                known.add(pmid)
                listing.pmids.append(pmid)
                fresh += 1
        if stop_over_limit and listing.count > ESEARCH_LIMIT:
            break
        if not fresh or len(listing.pmids) >= min(wanted, listing.count) or retstart >= ESEARCH_LIMIT:
            break
    return listing


def _pmid_range_term(query: str, low: int, high: int) -> str:
    return f"({query}) AND {low}:{high}[uid]"


def _list_by_pmid_ranges(query: str, settings: FetchSettings, wanted: int, page_size: int,
                         first: list[str]) -> tuple[list[str], list[str]]:
    """Up to ``wanted`` PMIDs matching ``query``, highest first, past esearch's 9,999 limit.

    The query is split into PMID ranges (``(query) AND low:high[uid]``), each narrowed until it matches
    at most ESEARCH_LIMIT records, and those are listed whole. PMID ranges rather than publication dates:
    a single date can hold more than 9,999 records (year-only dates all fall on 1 January), while a PMID
    range can always be split further. A range is split at the lowest PMID of its first page (PubMed lists
    the newest records, which have the highest PMIDs, first: the upper part then nearly fits one listing),
    or in the middle when that does not split it. ``first`` is the unsplit query's first page. Returns the
    PMIDs and warnings; raises :class:`MambanerError` if the server does not restrict by PMID range.
    """
    top = max((int(pmid) for pmid in first), default=MAX_PMID)
    pending = [(1, top)] + ([(top + 1, MAX_PMID)] if top < MAX_PMID else [])  # a stack: highest range last
    pmids: list[str] = []
    seen: set[str] = set()
    warnings: list[str] = []
    while pending and len(pmids) < wanted:
        low, high = pending.pop()
        listing = _list_pmids(_pmid_range_term(query, low, high), query, settings, ESEARCH_LIMIT, page_size,
                              stop_over_limit=True)
        warnings.extend(w for w in listing.warnings if "is not a PMID" in w)
        if listing.count > high - low + 1 or any(not low <= int(pmid) <= high for pmid in listing.pmids):
            raise MambanerError(f"PubMed search {query!r} matches more than the {ESEARCH_LIMIT} records one "
                                f"search lists, and the server does not narrow a search by PMID range ([uid]), "
                                f"so the rest cannot be listed; lower --max to {ESEARCH_LIMIT} or split the "
                                f"query (e.g. by publication date)")
        if listing.count <= ESEARCH_LIMIT:
            for pmid in sorted(listing.pmids, key=int, reverse=True):
                if pmid not in seen:
                    seen.add(pmid)
                    pmids.append(pmid)
            continue
        lowest = min((int(pmid) for pmid in listing.pmids), default=low)
        split = lowest if low < lowest <= high else low + (high - low + 1) // 2
        pending += [(low, split - 1), (split, high)]
    return pmids[:wanted], warnings


def search(query: str, settings: FetchSettings, max_results: int, page_size: int = ESEARCH_LIMIT) -> SearchResult:
    """The PMIDs of the first ``max_results`` PubMed records matching ``query``.

    Up to ESEARCH_LIMIT (9,999) records, in PubMed's order, paged through the history server. Beyond that
    (esearch lists no record past the 9,999th), the query is split by PMID range and the records come
    highest PMID (newest) first: every matching record up to ``max_results``, none dropped silently.
    Raises :class:`MambanerUsageError` for an empty query and :class:`MambanerError` if PubMed cannot run
    the search.
    """
    settings.require_email()
    if not query.strip():
        raise MambanerUsageError("the PubMed query is empty")
    if max_results < 1 or page_size < 1:
        raise MambanerUsageError("the maximum number of search results must be at least 1")
    page_size = min(page_size, ESEARCH_LIMIT)
    listing = _list_pmids(query, query, settings, min(max_results, ESEARCH_LIMIT), page_size)
    result = SearchResult(query, listing.count, listing.pmids, listing.warnings)
    if listing.count > ESEARCH_LIMIT and max_results > ESEARCH_LIMIT:
        result.pmids, warnings = _list_by_pmid_ranges(query, settings, max_results, page_size, listing.pmids)
        result.warnings.extend(warnings)
        wanted = min(max_results, listing.count)
        if len(result.pmids) < wanted:  # records deleted or changed while the ranges were listed
            result.warnings.append(f"{listing.count} records matched {query!r} at first, but only "
                                   f"{len(result.pmids)} were found range by range")
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
    Each fetched article is cached before its batch is yielded, so an interrupted run loses nothing;
    when the cache cannot be written (a full disk), that is said once and the run goes on without it.
    An article the PubMed reader cannot parse is not delivered (nor cached) but reported as failed, alone.
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
    cache_writable = True
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
            records = call(settings, "efetch", {"db": "pubmed", "id": batch, "rettype": "xml",
                                                "retmode": "xml"}, split_records)
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
        unreadable = 0
        documents: list[bytes] = []
        for record in records:
            pmid = record.pmid
            if pmid is None:
                log.warning("PubMed returned an article without a readable PMID (%s); skipped", record.problem)
                continue
            if pmid in returned:
                continue  # the same record twice in one answer
            returned.add(pmid)
            if pmid in delivered:
                continue  # already yielded: PubMed sent it unasked with an earlier batch
            if record.problem is not None:
                # one article the reader cannot parse: it alone fails, and it is not cached (a rerun asks again)
                reason = f"PubMed's record cannot be read ({record.problem})"
                log.warning("PMID %s: %s", pmid, reason)
                if pmid in wanted:
                    report.failed.append(([pmid], reason))
                    unreadable += 1
                continue
            delivered.add(pmid)
            documents.append(record.xml)
            if pmid not in wanted:
                report.unexpected.append(pmid)
                log.warning("PubMed returned PMID %s, which was not asked for", pmid)
            if cache is not None and cache_writable:
                try:
                    cache.put(pmid, record.xml)
                except OSError as exc:  # a full disk fails every later write too: say it once, go on
                    cache_writable = False
                    log.warning("cannot write to the cache %s (%s); going on without caching",
                                cache.directory, exc.strerror or exc)
        missing = [pmid for pmid in batch if pmid not in returned]
        report.missing.extend(missing)
        report.fetched += len(batch) - len(missing) - unreadable
        if documents:
            yield join_article_set(documents)
        progress(len(batch))
