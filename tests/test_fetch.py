"""Fetching PubMed records through Bio.Entrez against a local E-utilities stand-in (never the real NCBI)."""

from __future__ import annotations

import email.utils
import gzip
import io
import json
import logging
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from Bio import Entrez
from lxml import etree

from mambaner_cli.errors import InputError, MambanerError
from mambaner_cli.fetch import (
    FetchReport,
    FetchSettings,
    RateLimiter,
    fetch_batches,
    parse_pmid_list,
    read_pmid_file,
    redact,
    search,
    write_pubmed_xml,
)
from mambaner_cli.fetch.articles import split_article_set
from mambaner_cli.fetch.source import PubmedOptions, PubmedSource
from mambaner_cli.fetch.transport import _retry_after
from tests.eutils_server import Article, EutilsServer, Fault

KEY = "k3y0123456789abcdef0123456789abcdef"
EMAIL = "tester@example.org"
FIRST = 30000001
TOPICS = ["fever", "asthma", "gout", "anemia"]


def invented(n: int, start: int = FIRST) -> list[Article]:
    articles = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        articles.append(Article(str(start + i), f"Invented cohort {i} with {topic} & friends",
                                f"We imagined {i + 3} patients whose {topic} resolved <quickly> after rest."))
    return articles


@pytest.fixture(autouse=True)
def private_rate_state(tmp_path, monkeypatch):
    """The shared rate limiter keeps its state here, not in the user's own directory."""
    monkeypatch.setenv("MAMBANER_STATE_DIR", str(tmp_path / "rate-state"))


@pytest.fixture
def server():
    srv = EutilsServer(invented(460) + [Article("39999999", "A made-up handbook of rashes", "Chapter one.",
                                                book=True)])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def settings_for(srv: EutilsServer, **options) -> FetchSettings:
    values = {"email": EMAIL, "api_key": KEY, "base_url": srv.base_url, "max_retries": 2, "backoff": 0.01,
              "timeout": 5.0, "max_retry_after": 2.0}
    values.update(options)
    return FetchSettings(**values)


def ids(n: int, start: int = FIRST) -> list[str]:
    return [str(start + i) for i in range(n)]


def run(pmids, settings, **kw) -> tuple[FetchReport, list[str], list[bytes]]:
    report = FetchReport()
    batches = list(fetch_batches(pmids, settings, report, **kw))
    returned = [pmid for batch in batches for pmid, _xml in split_article_set(batch)]
    return report, returned, batches


def settled(report: FetchReport) -> int:
    return report.fetched + len(report.missing) + len(report.failed_pmids)


# -- PMID input ------------------------------------------------------------------------------------

def test_parse_pmid_list_accepts_common_separators_and_names_the_bad_entry():
    assert parse_pmid_list("31452104, 29323442;7\n0042 ") == ["31452104", "29323442", "7", "42"]
    assert parse_pmid_list("  ") == []
    with pytest.raises(InputError) as err:
        parse_pmid_list("123,PMC456")
    assert "--pmid" in str(err.value) and "'PMC456'" in str(err.value)
    with pytest.raises(InputError):
        parse_pmid_list("0")


def test_read_pmid_file_with_comments_and_a_bad_line(tmp_path):
    good = tmp_path / "pmids.txt"
    good.write_text("# my list\n31452104\n29323442, 7  # trailing comment\n\n  8 9\n")
    assert read_pmid_file(good) == ["31452104", "29323442", "7", "8", "9"]
    gz = tmp_path / "pmids.txt.gz"
    gz.write_bytes(gzip.compress(b"11\n12\n"))
    assert read_pmid_file(gz) == ["11", "12"]

    bad = tmp_path / "bad.txt"
    bad.write_text("1\n2\n# fine\n3 x4\n")
    with pytest.raises(InputError) as err:
        read_pmid_file(bad)
    assert f"{bad}:4" in str(err.value) and "'x4'" in str(err.value)
    with pytest.raises(InputError) as err:
        read_pmid_file(tmp_path / "absent.txt")
    assert "absent.txt" in str(err.value)


# -- settings --------------------------------------------------------------------------------------

def test_settings_from_env_arguments_first_and_validation():
    env = {"NCBI_EMAIL": "env@example.org", "NCBI_API_KEY": "envkey", "NCBI_EUTILS_URL": "http://mirror:8/e"}
    s = FetchSettings.from_env(environ=env)
    assert (s.email, s.api_key, s.base_url) == ("env@example.org", "envkey", "http://mirror:8/e/")
    assert s.requests_per_second == 10
    s = FetchSettings.from_env(email="me@example.org", api_key="argkey", base_url="http://x/", environ=env)
    assert (s.email, s.api_key, s.base_url) == ("me@example.org", "argkey", "http://x/")
    s = FetchSettings.from_env(environ={})
    assert s.base_url == "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/" and s.requests_per_second == 3
    assert "argkey" not in repr(FetchSettings(api_key="argkey"))
    with pytest.raises(MambanerError):
        FetchSettings(batch_size=201)
    with pytest.raises(MambanerError):
        FetchSettings(base_url="ftp://example.org/")


def test_pubmed_options_build_settings_from_arguments_then_environment(monkeypatch):
    monkeypatch.setenv("NCBI_EMAIL", "env@example.org")
    monkeypatch.setenv("NCBI_EUTILS_URL", "http://mirror:8/e")
    assert not PubmedOptions().requested
    assert PubmedOptions(pmid_lists=("1",)).requested and PubmedOptions(query="gout").requested
    settings = PubmedOptions(pmid_file="x", api_key="argkey", cache_dir="cache", retries=0).settings()
    assert (settings.email, settings.api_key, settings.base_url) == ("env@example.org", "argkey", "http://mirror:8/e/")
    assert (settings.cache_dir, settings.max_retries) == (Path("cache"), 0)
    settings = PubmedOptions(email="me@example.org", eutils_url="http://x/").settings()
    assert (settings.email, settings.base_url, settings.cache_dir) == ("me@example.org", "http://x/", None)
    assert "argkey" not in repr(PubmedOptions(api_key="argkey"))


def test_pubmed_source_collects_up_front_and_fetches_as_read(server, tmp_path):
    """PMIDs come from the lists, the file and the query, in that order, before anything is fetched; the
    records come as documents of source "pubmed"; the PMIDs PubMed lacks are reported and listed."""
    (tmp_path / "pmids.txt").write_text("30000010\n", encoding="utf-8")
    options = PubmedOptions(pmid_lists=("30000001,11", "30000002"), pmid_file=str(tmp_path / "pmids.txt"),
                            query="gout", max_results=2, email=EMAIL, api_key=KEY, eutils_url=server.base_url,
                            missing_file=str(tmp_path / "missing.txt"))
    warnings: list[str] = []
    source = PubmedSource(options, warn=warnings.append)
    # esearch lists the newest records first, as PubMed does
    assert source.pmids == ["30000001", "11", "30000002", "30000010", "30000459", "30000455"]
    assert server.requests("efetch.fcgi") == [] and warnings == []
    documents = list(source.documents())
    assert [doc.id for doc in documents] == ["30000001", "30000002", "30000010", "30000459", "30000455"]
    assert {doc.source for doc in documents} == {"pubmed"}
    assert source.failures() == ["PMID 11: not returned by PubMed"]
    assert (tmp_path / "missing.txt").read_text(encoding="utf-8") == "11\n"


def test_missing_email_is_an_error_before_any_request(server):
    with pytest.raises(MambanerError, match="NCBI_EMAIL"):
        list(fetch_batches(["30000001"], settings_for(server, email=None), FetchReport()))
    with pytest.raises(MambanerError, match="NCBI_EMAIL"):
        search("fever", settings_for(server, email=None), 10)
    assert server.log == []


def test_redact_masks_key_values_and_parameters():
    text = f'GET /efetch.fcgi?id=1&api_key={KEY}&tool=x {{"api-key":"1.2.3.4"}} api_key=other'
    masked = redact(text, KEY)
    assert KEY not in masked and "1.2.3.4" not in masked and "other" not in masked
    assert "tool=x" in masked


# -- fetching ------------------------------------------------------------------------------------

def test_fetch_pmid_list_sends_tool_email_and_key(server):
    entrez_before = Entrez.urlopen, Entrez.max_tries
    wanted = ["30000003", "39999999", "30000001"]
    report, returned, _ = run(wanted, settings_for(server))
    assert returned == wanted  # PubMed's order is the request order; the book article is included
    assert (report.requested, report.fetched, report.missing, report.failed) == (3, 3, [], [])
    [request] = server.requests("efetch.fcgi")
    assert request.ids == wanted
    assert request.params["db"] == "pubmed" and request.params["retmode"] == "xml"
    assert request.params["tool"] == "mambaner" and request.params["email"] == EMAIL
    assert request.params["api_key"] == KEY
    # the citation inside the article did not become a PMID of its own
    assert "30000008" not in returned
    # Bio.Entrez is left as it was found
    assert (Entrez.urlopen, Entrez.max_tries) == entrez_before
    assert Entrez.urlopen is urllib.request.urlopen


def test_plain_text_content_type_is_still_read_as_bytes(server):
    # Bio.Entrez wraps text/plain answers in a text stream; the XML must come through unchanged
    server.faults.append(Fault(content_type="text/plain; charset=UTF-8"))
    report, returned, _ = run(["30000002"], settings_for(server))
    assert returned == ["30000002"] and report.complete and len(server.requests("efetch.fcgi")) == 1


def test_batches_yield_documents_the_pubmed_reader_can_read(server):
    pubmed_xml = pytest.importorskip("mambaner_cli.readers.pubmed_xml")
    _report, _returned, batches = run(["30000002", "39999999"], settings_for(server))
    docs = [doc for batch in batches for doc in pubmed_xml.read(io.BytesIO(batch), "pubmed")]
    assert [d.id for d in docs] == ["30000002", "39999999"]
    assert docs[0].passages[0].text == "Invented cohort 1 with asthma & friends"
    assert "<quickly>" in docs[0].text


def test_450_ids_take_three_requests_of_at_most_200_posting_long_lists(server):
    progress: list[tuple[int, int]] = []
    report, returned, batches = run(ids(450), settings_for(server),
                                    on_progress=lambda done, total: progress.append((done, total)))
    assert returned == ids(450) and len(batches) == 3
    requests = server.requests("efetch.fcgi")
    assert [len(r.ids) for r in requests] == [200, 200, 50]
    assert [r.method for r in requests] == ["POST", "POST", "GET"]
    assert all(r.params["tool"] == "mambaner" and r.params["email"] == EMAIL for r in requests)
    assert report.fetched == 450 and report.complete
    assert progress[0] == (0, 450) and progress[-1] == (450, 450)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_duplicates_are_asked_for_once_and_counted(server):
    report, returned, _ = run(["30000001", "30000002", "30000001"], settings_for(server))
    assert returned == ["30000001", "30000002"]
    assert (report.requested, report.duplicates, report.fetched) == (2, 1, 2)


def test_missing_pmids_are_listed(server):
    wanted = ["30000001", "11", "30000002", "12"]
    report, returned, _ = run(wanted, settings_for(server))
    assert returned == ["30000001", "30000002"]
    assert report.missing == ["11", "12"] and report.failed == []
    assert settled(report) == report.requested == 4
    assert "11, 12" in report.summary()


def test_429_then_success_honours_retry_after(server):
    server.faults.append(Fault(status=429, content_type="text/plain", headers={"Retry-After": "1"},
                               body=b"Too Many Requests"))
    report, returned, _ = run(ids(5), settings_for(server))
    assert returned == ids(5) and report.complete
    first, second = server.requests("efetch.fcgi")
    assert first.status == 429 and second.status == 200
    assert second.time - first.time >= 0.9  # Retry-After: 1, though the back-off is 0.01 s


def test_persistent_500_fails_one_batch_and_the_run_goes_on(server):
    server.faults.append(Fault(status=500, content_type="text/html", body=b"<html>oops</html>",
                               when_id="30000015", times=None))
    report, returned, _ = run(ids(30), settings_for(server, batch_size=10))
    assert returned == ids(10) + ids(10, FIRST + 20)
    [(pmids, reason)] = report.failed
    assert pmids == ids(10, FIRST + 10)
    assert "HTTP 500" in reason and "3 attempts" in reason
    assert report.fetched == 20 and settled(report) == 30
    assert len(server.requests("efetch.fcgi")) == 1 + 3 + 1


def test_batches_failing_in_a_row_stop_the_requests_but_are_all_reported(server):
    server.faults.append(Fault(status=503, times=None))
    report, returned, _ = run(ids(25), settings_for(server, batch_size=5, max_retries=1,
                                                    max_consecutive_failures=2))
    assert returned == []
    assert report.failed_pmids == ids(25) and len(report.failed) == 5
    assert len(server.requests("efetch.fcgi")) == 2 * 2  # two batches, two attempts each
    assert all("not requested" in reason for _, reason in report.failed[2:])


@pytest.mark.parametrize("fault", [Fault(truncate=True), Fault(cut=True)], ids=["truncated", "cut"])
def test_truncated_response_is_retried(server, fault):
    server.faults.append(fault)
    report, returned, _ = run(ids(20), settings_for(server))
    assert returned == ids(20) and report.complete
    assert len(server.requests("efetch.fcgi")) == 2


def test_persistently_truncated_batch_is_reported(server):
    server.faults.append(Fault(truncate=True, times=None))
    report, returned, _ = run(ids(20), settings_for(server))
    assert returned == []
    [(pmids, reason)] = report.failed
    assert pmids == ids(20) and "not well-formed XML" in reason


def test_efetch_error_body_with_http_200(server):
    error = b"<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>"
    server.faults.append(Fault(body=error))
    report, returned, _ = run(ids(4), settings_for(server))
    assert returned == ids(4) and report.complete

    server.faults.append(Fault(body=error, times=None))
    report, returned, _ = run(ids(4, FIRST + 100), settings_for(server))
    assert returned == [] and report.failed == [(ids(4, FIRST + 100),
                                                 "NCBI error: Unable to obtain query #1 (gave up after 3 attempts)")]


def test_timeout_is_retried(server):
    server.faults.append(Fault(delay=1.0))
    report, returned, _ = run(ids(3), settings_for(server, timeout=0.3))
    assert returned == ids(3) and report.complete
    assert len(server.requests("efetch.fcgi")) == 2


# -- cache -----------------------------------------------------------------------------------------

def test_cache_prevents_refetch(server, tmp_path):
    cache = tmp_path / "cache"
    settings = settings_for(server, cache_dir=cache, batch_size=50)
    report1, returned1, batches1 = run(ids(120), settings)
    assert len(server.requests("efetch.fcgi")) == 3 and report1.cached == 0
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{pmid}.xml" for pmid in ids(120))

    report2, returned2, batches2 = run(ids(120), settings)
    assert len(server.requests("efetch.fcgi")) == 3  # zero new requests
    assert returned2 == returned1 and report2.cached == report2.fetched == 120
    articles = [xml for batch in batches1 for _p, xml in split_article_set(batch)]
    assert [xml for batch in batches2 for _p, xml in split_article_set(batch)] == articles

    (cache / "30000005.xml").unlink()
    (cache / "30000006.xml").write_bytes(b"<PubmedArticle><MedlineCit")  # damaged
    (cache / "30000007.xml").write_bytes((cache / "30000008.xml").read_bytes())  # wrong record
    report3, returned3, _ = run(ids(120), settings)
    assert server.requests("efetch.fcgi")[-1].ids == ["30000005", "30000006", "30000007"]
    assert sorted(returned3) == ids(120) and report3.cached == 117 and report3.complete
    assert read_article_pmid(cache / "30000007.xml") == "30000007"


def read_article_pmid(path: Path) -> str:
    return etree.fromstring(path.read_bytes()).findtext("MedlineCitation/PMID")


def test_interrupted_run_resumes_from_the_cache(server, tmp_path):
    settings = settings_for(server, cache_dir=tmp_path / "cache", batch_size=5)
    batches = fetch_batches(ids(15), settings, FetchReport())
    next(batches)
    batches.close()  # the user hit Ctrl-C after the first batch
    report, returned, _ = run(ids(15), settings)
    assert [r.ids for r in server.requests("efetch.fcgi")] == [ids(5), ids(5, FIRST + 5), ids(5, FIRST + 10)]
    assert sorted(returned) == ids(15) and report.cached == 5


# -- search ----------------------------------------------------------------------------------------

def test_query_pages_through_the_history_server(server):
    fever = sorted((a.pmid for a in server.articles.values() if a.matches("fever")), key=int, reverse=True)
    assert len(fever) == 115

    def add_record_after_first_search(entry):
        if entry.cgi == "esearch.fcgi" and len(server.requests("esearch.fcgi")) == 2:
            server.add(Article("38888888", "A new fever report", "Arrived after the search began."))

    server.on_request = add_record_after_first_search
    result = search("fever", settings_for(server), max_results=60, page_size=25)
    assert result.pmids == fever[:60] and result.count == 115 and result.warnings == []
    first, *later = server.requests("esearch.fcgi")
    assert first.params["usehistory"] == "y" and "WebEnv" not in first.params
    assert [(r.params["retstart"], r.params["retmax"]) for r in [first, *later]] == [
        ("0", "25"), ("25", "25"), ("50", "10")]
    assert all(r.params["WebEnv"] == "MCID_0001" and r.params["query_key"] == "1" for r in later)
    assert all(r.params["tool"] == "mambaner" and r.params["email"] == EMAIL for r in [first, *later])

    report, returned, _ = run(result.pmids, settings_for(server))
    assert returned == fever[:60] and report.complete


def test_query_with_no_match_reports_the_phrase(server):
    result = search("zebra", settings_for(server), max_results=100)
    assert (result.count, result.pmids) == (0, [])
    assert result.warnings == ["PubMed did not find 'zebra'"]


@pytest.mark.parametrize("body", [
    b"<eSearchResult><ERROR>Search Backend failed: a made-up outage</ERROR></eSearchResult>",
    json.dumps({"header": {"type": "esearch"},
                "esearchresult": {"ERROR": "Search Backend failed: a made-up outage"}}).encode(),
], ids=["xml", "json"])
def test_search_error_is_retried_then_raised(server, body):
    server.faults.append(Fault(cgi="esearch.fcgi", body=body, times=None))
    with pytest.raises(MambanerError) as err:
        search("fever", settings_for(server), max_results=10)
    assert "a made-up outage" in str(err.value) and "fever" in str(err.value)
    assert len(server.requests("esearch.fcgi")) == 3


# -- the API key stays secret --------------------------------------------------------------------

def test_api_key_is_sent_but_never_shown(server, caplog):
    caplog.set_level(logging.DEBUG, logger="mambaner.fetch")
    echo = f"request was /efetch.fcgi?db=pubmed&api_key={KEY}&id=1".encode()
    server.faults += [
        Fault(status=500, content_type="text/plain", body=echo, when_id="30000001", times=None),
        Fault(status=400, content_type="application/json", when_id="30000011", times=None,
              body=json.dumps({"error": "API rate limit exceeded", "api-key": KEY, "count": "11",
                               "limit": "10"}).encode()),
        Fault(body=b"<eFetchResult><ERROR>bad request " + echo.replace(b"&", b"&amp;") + b"</ERROR></eFetchResult>",
              when_id="30000021", times=None),
        Fault(cgi="esearch.fcgi", status=502, content_type="text/plain", body=echo, times=None),
    ]
    settings = settings_for(server, batch_size=10, max_consecutive_failures=0)
    report, returned, _ = run(ids(40), settings)
    assert returned == ids(10, FIRST + 30)
    assert [pmids[0] for pmids, _ in report.failed] == ["30000001", "30000011", "30000021"]
    assert "API rate limit exceeded" in report.failed[1][1] and "NCBI error: bad request" in report.failed[2][1]
    with pytest.raises(MambanerError) as err:
        search("fever", settings, max_results=5)
    assert all(r.params["api_key"] == KEY for r in server.log)  # sent with every request
    shown = [report.summary(), str(err.value), caplog.text, repr(settings), *(r for _, r in report.failed)]
    assert not any(KEY in text for text in shown)
    assert "api_key=***" in caplog.text  # the request URLs are logged, masked


def test_rejected_api_key_stops_the_run(server):
    server.faults.append(Fault(status=400, content_type="application/json", times=None,
                               body=json.dumps({"error": "API key invalid", "api-key": KEY}).encode()))
    with pytest.raises(MambanerError) as err:
        run(ids(3), settings_for(server))
    assert "NCBI_API_KEY" in str(err.value) and KEY not in str(err.value)
    assert len(server.requests("efetch.fcgi")) == 1


# -- rate limit ------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("rate", [3, 10])
def test_rate_limiter_spaces_requests_on_a_fake_clock(rate):
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(2 * rate + 1):
        limiter.wait(rate)
        starts.append(clock.now)
        clock.now += 0.01  # the request itself
    assert all(sum(1 for s in starts if t <= s < t + 1.0) <= rate for t in starts)
    assert starts[-1] - starts[0] >= 2.0
    clock.now += 5  # idle time is not banked for a burst
    limiter.wait(rate)
    before = clock.now
    limiter.wait(rate)
    assert clock.now - before >= 1 / rate


def test_every_attempt_goes_through_the_shared_limiter(server):
    class Counting(RateLimiter):
        def __init__(self):
            super().__init__()
            self.rates: list[float] = []
            self.buckets: list[str] = []

        def wait(self, requests_per_second: float, bucket: str = "default") -> float:
            self.rates.append(requests_per_second)
            self.buckets.append(bucket)
            return 0.0

    assert FetchSettings().limiter is FetchSettings(email="x").limiter  # one limiter for all settings
    limiter = Counting()
    server.faults.append(Fault(status=503))
    search("gout", settings_for(server, limiter=limiter), max_results=3)
    run(ids(3), settings_for(server, limiter=limiter))
    run(ids(2), settings_for(server, limiter=limiter, api_key=None))
    assert limiter.rates == [10, 10, 10, 3]  # esearch, 503, efetch retry, then without a key
    # NCBI counts per key, or per address without one: two budgets, named without revealing the key
    assert len(set(limiter.buckets[:3])) == 1 and limiter.buckets[3] == "nokey" != limiter.buckets[0]
    assert KEY not in limiter.buckets[0]
    assert len(server.log) == 4


def test_without_a_key_at_most_three_requests_a_second(server):
    server.enforce_rate_limit = True
    report, returned, _ = run(ids(7), settings_for(server, api_key=None, batch_size=1))
    assert returned == ids(7) and report.complete
    times = [r.time for r in server.requests("efetch.fcgi")]
    assert len(times) == 7 and all(r.status == 200 for r in server.log)  # no 429 from the server
    assert times[-1] - times[0] >= 1.9
    assert all(times[i + 3] - times[i] >= 0.95 for i in range(len(times) - 3))


def test_retry_after_accepts_seconds_and_http_dates_and_is_capped():
    soon = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 28 <= _retry_after(soon, 120.0) <= 30
    assert _retry_after("7", 120.0) == 7.0
    assert _retry_after("7200", 120.0) == 120.0
    assert _retry_after("soon", 120.0) is None and _retry_after(None, 120.0) is None


# -- writing one document ----------------------------------------------------------------------------

def test_write_pubmed_xml_merges_batches_into_one_document(server, tmp_path):
    out = tmp_path / "abstracts.xml.gz"
    report = FetchReport()
    with gzip.open(out, "wb") as handle:
        count = write_pubmed_xml(fetch_batches(ids(25), settings_for(server, batch_size=10), report), handle)
    assert count == 25
    root = etree.fromstring(gzip.decompress(out.read_bytes()))
    assert root.tag == "PubmedArticleSet"
    assert [a.findtext("MedlineCitation/PMID") for a in root] == ids(25)

    empty = io.BytesIO()
    assert write_pubmed_xml(iter([]), empty) == 0
    assert len(etree.fromstring(empty.getvalue())) == 0
