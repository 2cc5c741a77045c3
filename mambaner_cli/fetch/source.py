"""PubMed as an input: PMIDs from the command line, a file or a query, fetched and read as documents."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..document import Document
from ..errors import InputError, ReadError
from ..readers import pubmed_xml
from .eutils import FetchReport, fetch_batches, search
from .pmids import parse_pmid_list, read_pmid_file
from .settings import FetchSettings

SOURCE = "pubmed"


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
