"""Fetching PubMed records from NCBI E-utilities (through Biopython's Bio.Entrez) as raw XML.

Typical use::

    settings = FetchSettings.from_env(email=email, cache_dir=cache)   # NCBI_EMAIL, NCBI_API_KEY, ...
    pmids = search(query, settings, max_results=500).pmids            # or read_pmid_file / parse_pmid_list
    report = FetchReport()
    for batch in fetch_batches(pmids, settings, report, on_progress=bar.update):
        ...  # PubmedArticleSet XML bytes: feed to readers.pubmed_xml.read(io.BytesIO(batch), "pubmed")
    print(report.summary())                                            # missing and failed PMIDs
"""

from .articles import write_pubmed_xml
from .eutils import FetchReport, SearchResult, fetch_batches, search
from .pmids import parse_pmid_list, read_pmid_file
from .ratelimit import SHARED_LIMITER, RateLimiter
from .settings import DEFAULT_BASE_URL, MAX_BATCH_SIZE, FetchSettings, redact

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BATCH_SIZE",
    "SHARED_LIMITER",
    "FetchReport",
    "FetchSettings",
    "RateLimiter",
    "SearchResult",
    "fetch_batches",
    "parse_pmid_list",
    "read_pmid_file",
    "redact",
    "search",
    "write_pubmed_xml",
]
