"""The PubMed fetch under bad input and bad servers (issue 13), against the local E-utilities stand-in.

One unreadable article, bad PMID files, unreachable or trickling servers, queries past esearch's 9,999
records, two runs sharing NCBI's rate limit, odd API keys and a full cache disk.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from click.testing import CliRunner

from mambaner_cli.document import Document
from mambaner_cli.errors import InputError, MambanerError, MambanerUsageError, ReadError
from mambaner_cli.fetch import (
    FetchReport,
    FetchSettings,
    RateLimiter,
    fetch_batches,
    read_pmid_file,
    redact,
    search,
)
from mambaner_cli.fetch.articles import (
    MalformedResponse,
    NcbiErrorResponse,
    join_article_set,
    read_article,
    split_article_set,
)
from mambaner_cli.fetch.cache import ArticleCache
from mambaner_cli.fetch.ratelimit import SHARED_LIMITER
from mambaner_cli.fetch.source import pubmed_documents, report_failures
from mambaner_cli.readers import pubmed_xml
from tests.eutils_server import Article, EutilsServer, Fault

EMAIL = "tester@example.org"
KEY = "k3y0123456789abcdef0123456789abcdef"
FIRST = 30000001
DEEP = "<i>" * 300 + "too deep" + "</i>" * 300  # the PubMed reader stops at 256 levels
UNDEFINED_ENTITY = "caf&eacute; au lait"  # an HTML entity, not defined in XML
NOT_UTF8 = "caf\udce9 au lait"  # the server sends the byte 0xE9 (Latin-1 é) in a UTF-8 answer


def invented(n: int, start: int = FIRST, topic: str = "fever") -> list[Article]:
    return [Article(str(start + i), f"Invented cohort {i} with {topic}", f"We imagined {i + 3} patients.")
            for i in range(n)]


def ids(n: int, start: int = FIRST) -> list[str]:
    return [str(start + i) for i in range(n)]


@pytest.fixture(autouse=True)
def private_rate_state(tmp_path, monkeypatch):
    """The shared rate limiter keeps its state here, not in the user's own directory."""
    monkeypatch.setenv("MAMBANER_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def server():
    srv = EutilsServer(invented(300))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def settings_for(srv: EutilsServer | str, **options) -> FetchSettings:
    values = {"email": EMAIL, "api_key": KEY, "base_url": srv if isinstance(srv, str) else srv.base_url,
              "max_retries": 2, "backoff": 0.01, "timeout": 5.0, "max_retry_after": 2.0}
    values.update(options)
    return FetchSettings(**values)


def fetched_pmids(batches: list[bytes]) -> list[str]:
    return [pmid for batch in batches for pmid, _xml in split_article_set(batch)]


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- 1. one unreadable article costs only itself ----------------------------------------------------

@pytest.mark.parametrize("markup", [DEEP, UNDEFINED_ENTITY, NOT_UTF8],
                         ids=["300-levels-deep", "undefined-entity", "not-utf-8"])
def test_one_unreadable_article_costs_only_itself(server, tmp_path, markup):
    bad = str(FIRST + 50)
    server.add(Article(bad, "An article the reader rejects", "", markup=markup))
    settings = settings_for(server, cache_dir=tmp_path / "cache")
    report = FetchReport()
    documents = list(pubmed_documents(ids(200), settings, report))
    good = [pmid for pmid in ids(200) if pmid != bad]
    assert [doc.id for doc in documents if isinstance(doc, Document)] == good  # the other 199 are tagged
    assert not [doc for doc in documents if isinstance(doc, ReadError)]
    [(pmids, reason)] = report.failed
    assert pmids == [bad] and "cannot be read" in reason
    assert "too deep" not in reason and any(why in reason for why in ("256", "eacute", "UTF-8", "encoding"))
    assert report.fetched == 199 and report.missing == []
    lines = report_failures(report, str(tmp_path / "missing.txt"))
    assert len(lines) == 1 and bad in lines[0]
    assert (tmp_path / "missing.txt").read_text(encoding="utf-8") == f"{bad}\n"
    # the cache holds the 199, not the bad one: a rerun asks PubMed for that one only, and fails it alone
    assert not (tmp_path / "cache" / f"{bad}.xml").exists()
    rerun = FetchReport()
    assert len([d for d in pubmed_documents(ids(200), settings, rerun) if isinstance(d, Document)]) == 199
    assert server.requests("efetch.fcgi")[-1].ids == [bad]
    assert rerun.cached == 199 and rerun.failed_pmids == [bad]


def test_the_fetch_path_accepts_what_the_file_reader_accepts():
    """Each article is checked by the reader's own parser: what the fetch delivers, the reader reads, and
    what the reader rejects, the fetch reports (rather than a whole batch failing in the reader)."""
    samples = [Article("1", "fine", "An ordinary abstract & more."), Article("2", "deep", "", markup=DEEP),
               Article("3", "entity", "", markup=UNDEFINED_ENTITY),
               Article("4", "nested 200", "", markup="<i>" * 200 + "ok" + "</i>" * 200),
               Article("5", "reference", "", markup="caf&#233; &amp; au lait")]
    verdicts = []
    for article in samples:
        xml = article.xml().encode()
        read = _read_file(join_article_set([xml]))
        try:
            fetch_accepts = read_article(xml) == article.pmid
        except MalformedResponse:
            fetch_accepts = False
        verdicts.append(fetch_accepts)
        assert fetch_accepts == (len(read) == 1 and isinstance(read[0], Document)), article.title
    assert verdicts == [True, False, False, True, True]


def _read_file(xml: bytes) -> list:
    """What `mambaner tag` makes of a PubMed XML file: documents and errors."""
    try:
        return list(pubmed_xml.read(io.BytesIO(xml), "file"))
    except InputError as error:
        return [error.error]


def test_a_cached_article_the_reader_rejects_is_fetched_again(server, tmp_path):
    """An entry an earlier version cached (it parsed with huge_tree) but the reader rejects."""
    cache = ArticleCache(tmp_path / "cache")
    deep = Article(str(FIRST), "deep", "", markup=DEEP).xml().encode()
    cache.path(str(FIRST)).write_bytes(deep)
    assert cache.get(str(FIRST)) is None
    report = FetchReport()
    batches = list(fetch_batches(ids(3), settings_for(server, cache_dir=tmp_path / "cache"), report))
    assert server.requests("efetch.fcgi")[-1].ids == ids(3) and report.complete
    assert all(isinstance(doc, Document) for batch in batches for doc in _read_file(batch))


def test_a_batch_split_keeps_raw_articles_and_tells_truncation_from_junk():
    article = Article("7", "t", "a").xml().encode()
    body = b'<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet>\n<PubmedArticleSet><!-- <PubmedArticle> -->' \
           + article + b"<DeleteCitation><PMID>9</PMID></DeleteCitation></PubmedArticleSet>"
    assert split_article_set(body) == [("7", article)]  # the bytes as sent: comments and deletions skipped
    with pytest.raises(MalformedResponse) as cut:
        split_article_set(body[: len(body) // 2])
    assert cut.value.retryable  # truncated: worth another try
    for junk in (b"<html><body><p>Maintenance<br></body></html>", b'{"esearchresult": {}}', b"Bad gateway"):
        with pytest.raises(MalformedResponse) as wrong:
            split_article_set(junk)
        assert not wrong.value.retryable, junk  # complete, and not what was asked for
    with pytest.raises(NcbiErrorResponse):
        split_article_set(b"<eFetchResult><ERROR>Unable to obtain query #1</ERROR></eFetchResult>")


# -- 2. PMID input errors are one-line errors --------------------------------------------------------

def test_pmid_file_accepts_a_byte_order_mark_from_a_file_stdin_or_utf16(tmp_path, monkeypatch):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf31452104\n7\n")
    assert read_pmid_file(tmp_path / "bom.txt") == ["31452104", "7"]
    (tmp_path / "utf16.txt").write_bytes("31452104\r\n7\r\n".encode("utf-16"))  # PowerShell's > writes this
    assert read_pmid_file(tmp_path / "utf16.txt") == ["31452104", "7"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbf12\n13\n"), encoding="utf-8"))
    assert read_pmid_file("-") == ["12", "13"]


@pytest.mark.parametrize(("content", "expected"), [
    (b"12\n3\x004\n", "NUL byte"),
    (b"12\n\xe9t\xe9\n", "not UTF-8"),
    (gzip.compress(b"12\n")[:-12] + b"garbage!" * 3, "cannot read"),
], ids=["nul-byte", "latin-1", "corrupt-gzip"])
def test_pmid_file_problems_name_the_file(tmp_path, content, expected):
    path = tmp_path / ("pmids.txt.gz" if expected == "cannot read" else "pmids.txt")
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_pmid_file(path)
    assert expected in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    if expected != "cannot read":
        assert f"{path}:2" in str(err.value)  # the line


def test_pmid_file_name_problems_are_input_errors(tmp_path):
    for path, expected in [(f"{tmp_path}/pm\x00ids.txt", "file name"), (tmp_path / "absent.txt", "not found"),
                           (tmp_path, "is a directory")]:
        with pytest.raises(InputError) as err:
            read_pmid_file(path)
        assert expected in str(err.value)


def cli(*args: str, env: dict[str, str] | None = None):
    from mambaner_cli.cli import cli as group

    return CliRunner().invoke(group, [str(a) for a in args], env=env)


@pytest.mark.parametrize("pmids", ["0", "12,abc"])
def test_a_bad_pmid_on_the_command_line_is_one_line(tmp_path, pmids):
    result = cli("fetch", "--pmid", pmids, "-o", tmp_path / "out.xml", env={"NCBI_EMAIL": EMAIL})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "is not a PMID" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.xml").exists()


def test_a_missing_email_is_a_usage_error(server, tmp_path, monkeypatch):
    monkeypatch.delenv("NCBI_EMAIL", raising=False)
    with pytest.raises(MambanerUsageError):
        list(fetch_batches(["1"], settings_for(server, email=None), FetchReport()))
    result = cli("fetch", "--pmid", "1", "--eutils-url", server.base_url, "-o", tmp_path / "out.xml")
    assert result.exit_code == 2 and "NCBI_EMAIL" in result.output and "Traceback" not in result.output
    assert server.log == []


def test_a_search_answer_with_a_non_numeric_id_is_reported_and_skipped(server):
    body = (b'<?xml version="1.0" ?><eSearchResult><Count>3</Count><RetMax>3</RetMax><RetStart>0</RetStart>'
            b"<IdList><Id>30000002</Id><Id>PMC123</Id><Id>30000001</Id></IdList></eSearchResult>")
    server.faults.append(Fault(cgi="esearch.fcgi", body=body, times=None))
    result = search("fever", settings_for(server), max_results=10)
    assert result.pmids == ["30000002", "30000001"]
    assert any("'PMC123'" in warning and "not a PMID" in warning for warning in result.warnings)
    report = FetchReport()
    assert fetched_pmids(list(fetch_batches(result.pmids, settings_for(server), report))) == result.pmids


# -- 3. an unreachable server is reported at once; junk is not retried --------------------------------

def test_a_refused_connection_is_reported_at_once(caplog):
    caplog.set_level(logging.INFO, logger="mambaner.fetch")
    url = f"http://127.0.0.1:{closed_port()}/entrez/eutils/"
    settings = settings_for(url, max_retries=5, backoff=0.01)
    with pytest.raises(MambanerError) as err:
        list(fetch_batches(ids(3), settings, FetchReport()))
    assert str(err.value).startswith(f"cannot reach E-utilities at {url}: connection refused")
    with pytest.raises(MambanerError, match="cannot reach E-utilities"):
        search("fever", settings_for(url, max_retries=5, backoff=0.01), max_results=5)
    assert "retry" not in caplog.text


def test_a_name_that_does_not_resolve_is_reported_at_once(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="mambaner.fetch")
    real = socket.getaddrinfo

    def offline(host, *args, **kwargs):  # what getaddrinfo says offline, without asking any DNS server
        if host == "eutils.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    settings = settings_for("http://eutils.invalid/entrez/eutils/", max_retries=5, backoff=0.01)
    with pytest.raises(MambanerError) as err:
        list(fetch_batches(ids(3), settings, FetchReport()))
    assert "cannot reach E-utilities at http://eutils.invalid/entrez/eutils/: the host name does not resolve" \
           in str(err.value)
    assert "retry" not in caplog.text


def test_a_server_that_goes_away_mid_run_fails_its_batches_not_the_run(server):
    """Once E-utilities has answered, a refused connection is an outage to retry, not a wrong URL."""
    settings = settings_for(server, batch_size=5, max_retries=1)
    report = FetchReport()
    batches = fetch_batches(ids(10), settings, report)
    first = next(batches)
    server.stop()
    rest = list(batches)
    server.start()  # for the fixture's stop()
    assert fetched_pmids([first, *rest]) == ids(5)
    [(pmids, reason)] = report.failed
    assert pmids == ids(5, FIRST + 5) and "2 attempts" in reason


HTML_PAGE = b"<html><head><title>Down for maintenance</title></head><body>Back soon<br></body></html>"


@pytest.mark.parametrize("body", [HTML_PAGE, b'{"error": "something else"}'], ids=["html", "json"])
def test_a_complete_answer_that_is_not_pubmed_xml_is_not_retried(server, body):
    server.faults.append(Fault(body=body, content_type="text/html", times=None))
    report = FetchReport()
    assert list(fetch_batches(ids(4), settings_for(server, max_retries=3), report)) == []
    assert len(server.requests("efetch.fcgi")) == 1
    [(pmids, reason)] = report.failed
    assert pmids == ids(4) and ("<html>" in reason or "not XML" in reason)


# -- 4. a trickling answer ends at the deadline -----------------------------------------------------

def test_a_trickling_answer_is_cut_at_the_deadline(server):
    server.faults.append(Fault(trickle=0.05, times=None))  # a byte every 50 ms: never silent for 2 s
    settings = settings_for(server, timeout=2.0, deadline=0.5, max_retries=1)
    report = FetchReport()
    started = time.monotonic()
    assert list(fetch_batches(ids(3), settings, report)) == []
    assert time.monotonic() - started < 15  # the whole body would take ~100 s
    [(pmids, reason)] = report.failed
    assert pmids == ids(3) and "0.5 s deadline" in reason and "2 attempts" in reason


def test_the_deadline_also_bounds_a_slow_start(server):
    server.faults.append(Fault(delay=1.5, times=None))
    report = FetchReport()
    list(fetch_batches(ids(2), settings_for(server, timeout=5.0, deadline=0.3, max_retries=0), report))
    [(_pmids, reason)] = report.failed
    assert "deadline" in reason


# -- 5. a query past esearch's 9,999 records ------------------------------------------------------------

@pytest.fixture(scope="module")
def big_server():
    srv = EutilsServer(invented(15000, start=20000001) + invented(50, start=40000001, topic="gout"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_query_past_9999_records_lists_them_all(big_server):
    big_server.log.clear()
    result = search("fever", settings_for(big_server), max_results=20000)
    assert result.count == 15000 and result.warnings == []
    assert sorted(result.pmids, key=int) == ids(15000, 20000001)  # every record, once
    assert result.pmids == sorted(result.pmids, key=int, reverse=True)  # highest (newest) first
    for request in big_server.requests("esearch.fcgi"):
        assert int(request.params["retmax"]) <= 9999 and int(request.params["retstart"]) <= 9998
    assert len(big_server.requests("esearch.fcgi")) <= 8

    capped = search("fever", settings_for(big_server), max_results=12000)
    assert capped.pmids == result.pmids[:12000]


def test_a_query_past_9999_on_a_server_without_pmid_ranges_is_refused(big_server):
    big_server.uid_ranges = False
    try:
        with pytest.raises(MambanerError) as err:
            search("fever", settings_for(big_server), max_results=15000)
    finally:
        big_server.uid_ranges = True
    assert "9999" in str(err.value) and "--max" in str(err.value) and "[uid]" in str(err.value)
    # within the limit, the range search is not needed
    assert len(search("fever", settings_for(big_server), max_results=9999).pmids) == 9999


# -- 6. the rate limit is shared by every run of the user ---------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_two_limiters_on_one_state_dir_share_the_budget(tmp_path):
    clock = FakeClock()
    first = RateLimiter(clock=clock, sleep=clock.sleep, state_dir=tmp_path)
    second = RateLimiter(clock=clock, sleep=clock.sleep, state_dir=tmp_path)  # another run, same user
    assert first.wait(10, bucket="nokey") == 0
    assert second.wait(10, bucket="nokey") == pytest.approx(0.102)  # the slot after the first run's
    assert first.wait(10, bucket="nokey") == pytest.approx(0.204)
    assert second.wait(10, bucket="key-1") == 0  # another key: another budget
    assert (tmp_path / "eutils-nokey.next").is_file()
    # a slot far ahead (a clock set back, a damaged file) is not waited for
    (tmp_path / "eutils-nokey.next").write_text(str(clock.now + 3600))
    assert RateLimiter(clock=clock, sleep=clock.sleep, state_dir=tmp_path).wait(10, bucket="nokey") == 0


def test_threads_with_their_own_limiters_keep_the_rate_together(tmp_path):
    rate, per_thread = 20, 4
    barrier = threading.Barrier(2)
    starts: list[float] = []

    def run() -> None:
        limiter = RateLimiter(state_dir=tmp_path)  # like a second process: its own instance, same file
        barrier.wait()
        for _ in range(per_thread):
            limiter.wait(rate)
            starts.append(time.time())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(starts) == 2 * per_thread
    # 8 starts at 20/s span at least 7 intervals (~0.36 s); unshared, each thread's 4 would span ~0.15 s
    assert max(starts) - min(starts) >= 0.3


def test_the_shared_limiter_keeps_its_state_in_the_configured_directory(server, tmp_path):
    settings = settings_for(server, api_key=None)
    assert settings.limiter is SHARED_LIMITER
    list(fetch_batches(ids(2), settings, FetchReport()))
    assert SHARED_LIMITER.state_file("nokey") == tmp_path / "state" / "eutils-nokey.next"
    assert (tmp_path / "state" / "eutils-nokey.next").is_file()


def test_an_unusable_state_dir_falls_back_to_this_process_with_one_warning(tmp_path, caplog):
    (tmp_path / "file").write_text("not a directory")
    limiter = RateLimiter(state_dir=tmp_path / "file" / "state")
    caplog.set_level(logging.WARNING, logger="mambaner.fetch")
    for _ in range(3):
        limiter.wait(1000)
    assert caplog.text.count("cannot share the E-utilities rate limit") == 1


# -- 7. odd keys, other 400s, a full cache disk ---------------------------------------------------------

@pytest.mark.parametrize("key", ["my key+with/odd=chars&more", "plus+plus"])
def test_a_key_with_spaces_or_plus_never_shows_in_any_spelling(server, caplog, key):
    caplog.set_level(logging.DEBUG, logger="mambaner.fetch")
    spellings = [key, quote_plus(key), quote(key, safe=""), quote(key), quote_plus(key).lower(),
                 quote(quote_plus(key), safe=""), json.dumps(key)[1:-1], key.replace("&", "&amp;")]
    echo = " | ".join(f"seen {spelling}" for spelling in spellings).encode()
    server.faults += [Fault(status=500, content_type="text/plain", body=echo, times=None, when_id=str(FIRST)),
                      Fault(cgi="esearch.fcgi", status=502, content_type="text/plain", body=echo, times=None)]
    settings = settings_for(server, api_key=key, batch_size=2, max_retries=0, max_consecutive_failures=0)
    report = FetchReport()
    list(fetch_batches(ids(4), settings, report))  # GET: the key is in the logged URL, form-encoded
    list(fetch_batches(ids(250, FIRST + 10), settings_for(server, api_key=key, max_retries=0), FetchReport()))
    with pytest.raises(MambanerError) as err:
        search("fever", settings, max_results=5)
    assert all(r.params["api_key"] == key for r in server.log)  # sent as it is
    shown = "\n".join([report.summary(), str(err.value), caplog.text, *(r for _, r in report.failed)])
    assert "seen ***" in shown and "api_key=***" in caplog.text
    for spelling in spellings:
        assert spelling not in shown, spelling


def test_redact_masks_every_spelling_of_the_key():
    key = "a b+c/d"
    for spelling in [key, "a+b%2Bc%2Fd", "a%20b%2bc%2fd", "a%2520b%252Bc%252Fd", "a&#32;b+c/d"]:
        assert redact(f"x {spelling} y", key) == "x *** y", spelling


def test_only_ncbis_key_rejection_stops_the_run(server):
    """A 400 that mentions the API key but is not NCBI's "API key invalid" fails its own request only."""
    other = json.dumps({"error": "Invalid request: id list malformed (see the api key and usage docs)"})
    server.faults.append(Fault(status=400, content_type="application/json", body=other.encode(),
                               when_id=str(FIRST), times=None))
    report = FetchReport()
    batches = list(fetch_batches(ids(10), settings_for(server, batch_size=5), report))
    assert fetched_pmids(batches) == ids(5, FIRST + 5)
    [(pmids, reason)] = report.failed
    assert pmids == ids(5) and "HTTP 400" in reason
    assert len(server.requests("efetch.fcgi")) == 2  # a 400 is not retried

    server.faults[:] = [Fault(status=400, content_type="application/json", times=None,
                              body=json.dumps({"error": "API key invalid", "api-key": KEY}).encode())]
    with pytest.raises(MambanerError, match="rejected the API key"):
        list(fetch_batches(ids(3), settings_for(server), FetchReport()))


def test_a_full_cache_disk_warns_once_and_the_fetch_goes_on(server, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="mambaner.fetch")
    puts: list[str] = []

    def disk_full(self, pmid: str, xml: bytes) -> None:
        puts.append(pmid)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ArticleCache, "put", disk_full)
    report = FetchReport()
    batches = list(fetch_batches(ids(25), settings_for(server, cache_dir=tmp_path / "cache", batch_size=10),
                                 report))
    assert fetched_pmids(batches) == ids(25) and report.complete
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "No space left on device" in warnings[0].getMessage()
    assert puts == [str(FIRST)]  # no write is tried after the first failure
    assert not list(Path(tmp_path / "cache").glob("*.xml"))
