"""PubMed as an input: PMIDs from the command line, a file or a query, fetched and read as documents.

:class:`PubmedOptions` is what a command was asked (``--pmid`` … ``--retries``); :class:`PubmedSource`
turns it into one more document source of a tagging run (or the raw batches `mambaner fetch` writes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..document import Document
from ..errors import InputError, ReadError
from ..readers import pubmed_xml
from .eutils import FetchReport, fetch_batches, search
from .pmids import parse_pmid_list, read_pmid_file
from .settings import FetchSettings

SOURCE = "pubmed"
DEFAULT_MAX_RESULTS = 10000


@dataclass(frozen=True)
class PubmedOptions:
    """Which PubMed records a run wants and how to reach E-utilities: the ``--pmid``, ``--pmid-file``,
    ``--query``, ``--max``, ``--email``, ``--api-key``, ``--eutils-url``, ``--cache-dir``, ``--missing``
    and ``--retries`` options of `tag` and `fetch`, as given (NCBI_* variables are read by
    :meth:`settings`). The default asks for nothing."""

    pmid_lists: tuple[str, ...] = ()  # each a comma/space-separated list, as typed after --pmid
    pmid_file: str | None = None
    query: str | None = None
    max_results: int = DEFAULT_MAX_RESULTS  # of the query's results
    email: str | None = None
    api_key: str | None = field(default=None, repr=False)
    eutils_url: str | None = None
    cache_dir: str | None = None
    missing_file: str | None = None  # where the PMIDs that could not be fetched are listed
    retries: int = 5

    @property
    def requested(self) -> bool:
        """Whether any PubMed record is asked for."""
        return bool(self.pmid_lists or self.pmid_file or self.query)

    def settings(self) -> FetchSettings:
        """The E-utilities settings: these options first, then NCBI_EMAIL, NCBI_API_KEY, NCBI_EUTILS_URL."""
        return FetchSettings.from_env(email=self.email, api_key=self.api_key, base_url=self.eutils_url,
                                      cache_dir=Path(self.cache_dir) if self.cache_dir else None,
                                      max_retries=self.retries)


class PubmedSource:
    """The records a run asked for, as a document source.

    The PMIDs are collected (the query run) when the source is made, so that a bad PMID list, file or
    query stops the run before any model loads; the records are fetched only as the run reads them, and
    every PMID problem is kept in :attr:`report` for :meth:`failures`.
    """

    def __init__(self, options: PubmedOptions, warn: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.settings = options.settings()
        self.pmids = collect_pmids(options.pmid_lists, options.pmid_file, options.query, options.max_results,
                                   self.settings, warn=warn)
        self.report = FetchReport()

    def batches(self, on_progress: Callable[[int, int], None] | None = None) -> Iterator[bytes]:
        """The records as PubmedArticleSet XML, a batch at a time (what `mambaner fetch` writes)."""
        return fetch_batches(self.pmids, self.settings, self.report, on_progress=on_progress)

    def documents(self, on_progress: Callable[[int, int], None] | None = None
                  ) -> Iterator[Document | ReadError]:
        """The records as documents for the tagging pipeline (source "pubmed")."""
        return pubmed_documents(self.pmids, self.settings, self.report, on_progress=on_progress)

    def failures(self) -> list[str]:
        """One line per PMID that PubMed did not return or that could not be fetched; with
        ``missing_file`` set, those PMIDs are also written there. Call it once the source is consumed."""
        return report_failures(self.report, self.options.missing_file)


def collect_pmids(pmid_lists: Iterable[str], pmid_file: str | None, query: str | None, max_results: int,
                  settings: FetchSettings, warn: Callable[[str], None] | None = None) -> list[str]:
    """Every PMID asked for, in order: --pmid lists, then --pmid-file, then the query's results."""
    pmids: list[str] = []
    for text in pmid_lists:
        pmids.extend(parse_pmid_list(text))
    if pmid_file:
        pmids.extend(read_pmid_file(pmid_file))
    if query:
        result = search(query, settings, max_results=max_results)
        for warning in result.warnings:
            if warn:
                warn(warning)
        pmids.extend(result.pmids)
    return pmids


def pubmed_documents(pmids: list[str], settings: FetchSettings, report: FetchReport,
                     on_progress: Callable[[int, int], None] | None = None) -> Iterator[Document | ReadError]:
    """The fetched articles as documents, for the tagging pipeline (source "pubmed")."""
    for batch in fetch_batches(pmids, settings, report, on_progress=on_progress):
        try:
            yield from pubmed_xml.read_bytes(batch, SOURCE)
        except InputError as error:  # a cached or fetched set that does not parse: report, go on
            yield error.error


def report_failures(report: FetchReport, missing_file: str | None = None) -> list[str]:
    """One line per PMID problem, for the run summary; writes the missing/failed PMIDs to a file."""
    lines = [f"PMID {pmid}: not returned by PubMed" for pmid in report.missing]
    lines += [f"PMIDs {', '.join(pmids)}: fetch failed ({reason})" for pmids, reason in report.failed]
    if missing_file:
        Path(missing_file).write_text("".join(f"{p}\n" for p in report.missing + report.failed_pmids),
                                      encoding="utf-8")
    return lines
