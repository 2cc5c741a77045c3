"""A small stand-in for NCBI E-utilities, served over real HTTP on 127.0.0.1, for the fetch tests.

It speaks ``esearch.fcgi`` (term, usehistory, WebEnv, query_key, retstart, retmax) and ``efetch.fcgi``
(db=pubmed, ids by GET or POST, or WebEnv + query_key), answers with PubmedArticleSet XML built from
invented :class:`Article` records, logs every request with its arrival time, and can be scripted to
misbehave with :class:`Fault` (status codes, Retry-After, truncated bodies, NCBI ``<ERROR>`` bodies,
slow answers, answers trickling in a byte at a time). Optionally it enforces NCBI's per-second request
limits the way NCBI does (HTTP 429 with a JSON body).

Like PubMed's esearch, it lists no record past the 9,999th of a result set (``ESEARCH_CAP``: retstart
above 9,998 is an error and a page stops there), and it understands a PMID range added to a term,
``(term) AND low:high[uid]``, which is how a client gets past that cap (``uid_ranges=False`` plays a
server that ignores it).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from tests.local_http import LocalHTTPApp

PUBMED_DOCTYPE = ('<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
                  '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">')
ESEARCH_DOCTYPE = ('<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
                   '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">')
#: PubMed's esearch lists at most the first 9,999 records of a result set.
ESEARCH_CAP = 9999
_UID_RANGE = re.compile(r"^\((?P<term>.*)\) AND (?P<low>\d+):(?P<high>\d+)\[uid\]$", re.IGNORECASE)


@dataclass
class Article:
    pmid: str
    title: str
    abstract: str
    book: bool = False  # a PubmedBookArticle rather than a PubmedArticle
    markup: str | None = None  # the abstract as raw markup (not escaped): to send what a reader rejects

    def xml(self) -> str:
        # a citation with its own PMID: the fetcher must key the article by MedlineCitation/PMID
        cited = str(int(self.pmid) + 7)
        if self.book:
            return (f'<PubmedBookArticle><BookDocument><PMID Version="1">{self.pmid}</PMID>'
                    f'<Book><BookTitle>{escape(self.title)}</BookTitle></Book>'
                    f'<Abstract><AbstractText>{escape(self.abstract)}</AbstractText></Abstract>'
                    f'</BookDocument><PubmedBookData><ArticleIdList><ArticleId IdType="pubmed">{self.pmid}'
                    f'</ArticleId></ArticleIdList></PubmedBookData></PubmedBookArticle>')
        abstract = escape(self.abstract) if self.markup is None else self.markup
        return (f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">'
                f'<PMID Version="1">{self.pmid}</PMID><Article PubModel="Print">'
                f'<Journal><Title>Annals of Invented Clinical Findings</Title></Journal>'
                f'<ArticleTitle>{escape(self.title)}</ArticleTitle>'
                f'<Abstract><AbstractText>{abstract}</AbstractText></Abstract></Article>'
                f'<CommentsCorrectionsList><CommentsCorrections RefType="Cites"><PMID Version="1">{cited}'
                f'</PMID></CommentsCorrections></CommentsCorrectionsList></MedlineCitation>'
                f'<PubmedData><ArticleIdList><ArticleId IdType="pubmed">{self.pmid}</ArticleId>'
                f'</ArticleIdList></PubmedData></PubmedArticle>')

    def matches(self, term: str) -> bool:
        return term.lower() in f"{self.title} {self.abstract}".lower()


@dataclass
class Fault:
    """A scripted misbehaviour for requests to ``cgi`` (optionally only those asking for ``when_id``)."""

    cgi: str = "efetch.fcgi"
    status: int = 200
    body: bytes | None = None  # None: the normal answer
    content_type: str = "text/xml; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False  # a complete HTTP answer whose body is the first half of the XML
    cut: bool = False  # announce the whole body, send half of it, close the connection
    delay: float = 0.0  # seconds to wait before answering
    trickle: float = 0.0  # send the body one byte at a time, this many seconds apart (never silent long)
    when_id: str | None = None
    times: int | None = 1  # None: every matching request


@dataclass
class Logged:
    time: float  # time.monotonic() on arrival
    method: str
    cgi: str
    params: dict[str, str]
    status: int = 0

    @property
    def ids(self) -> list[str]:
        return [i for i in self.params.get("id", "").split(",") if i]


class EutilsServer(LocalHTTPApp):
    def __init__(self, articles: list[Article], prefix: str = "/entrez/eutils/",
                 enforce_rate_limit: bool = False, uid_ranges: bool = True):
        self.articles = {a.pmid: a for a in articles}
        self.prefix = prefix
        self.enforce_rate_limit = enforce_rate_limit
        self.uid_ranges = uid_ranges  # False: "AND low:high[uid]" is dropped from a term, not applied
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.history: dict[str, list[list[str]]] = {}  # WebEnv -> stored result sets (query_key - 1)
        self.on_request: Callable[[Logged], None] | None = None
        self._lock = threading.Lock()

    def add(self, article: Article) -> None:
        with self._lock:
            self.articles[article.pmid] = article

    def requests(self, cgi: str) -> list[Logged]:
        with self._lock:
            return [entry for entry in self.log if entry.cgi == cgi]

    # -- answering ---------------------------------------------------------------------------------
    def _take_fault(self, entry: Logged) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.cgi != entry.cgi or fault.times == 0:
                    continue
                if fault.when_id is not None and fault.when_id not in entry.ids:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def _over_rate_limit(self, entry: Logged) -> str | None:
        if not self.enforce_rate_limit:
            return None
        key = entry.params.get("api_key")
        limit = 10 if key else 3
        with self._lock:
            recent = [e for e in self.log if e.params.get("api_key") == key and entry.time - e.time < 1.0]
        if len(recent) > limit:  # the log already holds this request
            return json.dumps({"error": "API rate limit exceeded", "api-key": key or "127.0.0.1",
                               "count": str(len(recent)), "limit": str(limit)})
        return None

    def answer(self, entry: Logged) -> tuple[int, str, bytes, dict[str, str]]:
        if self.on_request is not None:
            self.on_request(entry)
        limited = self._over_rate_limit(entry)
        if limited:
            return 429, "application/json", limited.encode(), {"Retry-After": "1"}
        if entry.cgi == "esearch.fcgi":
            return self._esearch(entry.params)
        if entry.cgi == "efetch.fcgi":
            return self._efetch(entry)
        return 404, "text/plain", b"unknown E-utility", {}

    def _stored(self, params: dict[str, str]) -> list[str] | str:
        webenv, key = params.get("WebEnv"), params.get("query_key")
        with self._lock:
            sets = self.history.get(webenv or "")
            if sets is None or not key or not key.isdigit() or not 1 <= int(key) <= len(sets):
                return "Unable to obtain query #" + (key or "")
            return list(sets[int(key) - 1])

    def _esearch(self, params: dict[str, str]) -> tuple[int, str, bytes, dict[str, str]]:
        def error(message: str) -> tuple[int, str, bytes, dict[str, str]]:
            body = f'<?xml version="1.0" encoding="UTF-8" ?>\n{ESEARCH_DOCTYPE}\n' \
                   f"<eSearchResult><ERROR>{escape(message)}</ERROR></eSearchResult>"
            return 200, "text/xml; charset=UTF-8", body.encode(), {}

        term = params.get("term", "").strip()
        if params.get("db") != "pubmed" or not term:
            return error("Empty term and query_key - nothing todo")
        words, low, high = term, 1, 10 ** 10
        if (in_range := _UID_RANGE.match(term)) is not None:
            words = in_range.group("term")
            if self.uid_ranges:
                low, high = int(in_range.group("low")), int(in_range.group("high"))
        with self._lock:
            ids = sorted((a.pmid for a in self.articles.values() if a.matches(words) and low <= int(a.pmid) <= high),
                         key=int, reverse=True)
        if params.get("WebEnv") and params.get("query_key"):
            stored = self._stored(params)
            if isinstance(stored, str):
                return error(stored)
            current = set(ids)
            ids = [i for i in stored if i in current]  # the stored set, intersected with the query
        retstart, retmax = int(params.get("retstart", 0)), int(params.get("retmax", 20))
        if retstart > ESEARCH_CAP - 1:
            return error(f"Search Backend failed: retstart cannot be larger than {ESEARCH_CAP - 1}")
        history = ""
        if params.get("usehistory") == "y":
            with self._lock:
                webenv = params.get("WebEnv") or f"MCID_{len(self.history) + 1:04d}"
                sets = self.history.setdefault(webenv, [])
                sets.append(ids)
                history = f"<QueryKey>{len(sets)}</QueryKey><WebEnv>{webenv}</WebEnv>"
        page = ids[retstart:min(retstart + retmax, ESEARCH_CAP)]
        extra = ""
        if not ids:
            extra = (f"<ErrorList><PhraseNotFound>{escape(term)}</PhraseNotFound></ErrorList>"
                     "<WarningList><OutputMessage>No items found.</OutputMessage></WarningList>")
        body = (f'<?xml version="1.0" encoding="UTF-8" ?>\n{ESEARCH_DOCTYPE}\n<eSearchResult>'
                f"<Count>{len(ids)}</Count><RetMax>{len(page)}</RetMax><RetStart>{retstart}</RetStart>"
                f"{history}<IdList>{''.join(f'<Id>{i}</Id>' for i in page)}</IdList>"
                f"<TranslationSet/><QueryTranslation>{escape(term)}[All Fields]</QueryTranslation>"
                f"{extra}</eSearchResult>")
        return 200, "text/xml; charset=UTF-8", body.encode(), {}

    def _efetch(self, entry: Logged) -> tuple[int, str, bytes, dict[str, str]]:
        params = entry.params
        if params.get("db") != "pubmed":
            return 400, "text/xml", b"<eFetchResult><ERROR>Invalid db name specified</ERROR></eFetchResult>", {}
        if entry.method == "GET" and len(entry.ids) > 200:
            return 414, "text/plain", b"Request-URI Too Long: use POST for more than 200 ids", {}
        if entry.ids:
            ids = entry.ids
        else:
            stored = self._stored(params)
            if isinstance(stored, str):
                body = f"<eFetchResult><ERROR>{stored}</ERROR></eFetchResult>".encode()
                return 200, "text/xml; charset=UTF-8", body, {}
            retstart, retmax = int(params.get("retstart", 0)), int(params.get("retmax", 20))
            ids = stored[retstart:retstart + retmax]
        with self._lock:
            found = [self.articles[i] for i in ids if i in self.articles]
        body = (f'<?xml version="1.0" ?>\n{PUBMED_DOCTYPE}\n<PubmedArticleSet>\n'
                + "".join(a.xml() + "\n" for a in found) + "</PubmedArticleSet>\n")
        # surrogateescape: an article's markup can hold a byte that is not UTF-8 ("\udcff" sends 0xFF)
        return 200, "text/xml; charset=UTF-8", body.encode("utf-8", "surrogateescape"), {}


class _Handler(BaseHTTPRequestHandler):
    app: EutilsServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet test output

    def do_GET(self) -> None:
        self._serve(urlsplit(self.path).query)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length).decode("utf-8"))

    def _serve(self, query: str) -> None:
        arrived = time.monotonic()
        path = urlsplit(self.path).path
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        entry = Logged(arrived, self.command, path.rsplit("/", 1)[-1], params)
        app = self.app
        with app._lock:
            app.log.append(entry)
        if not path.startswith(app.prefix):
            status, ctype, body, headers = 404, "text/plain", b"not found", {}
            fault = None
        else:
            status, ctype, body, headers = app.answer(entry)
            fault = app._take_fault(entry) if status == 200 else None
        if fault is not None:
            time.sleep(fault.delay)
            status = fault.status
            ctype = fault.content_type
            headers = dict(fault.headers)
            if fault.body is not None:
                body = fault.body
        entry.status = status
        length = len(body)
        if fault is not None and (fault.truncate or fault.cut):
            half = body[: len(body) // 2]
            length = len(half) if fault.truncate else len(body)
            body = half
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if fault is not None and fault.trickle:
                self.wfile.flush()
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(fault.trickle)
            else:
                self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
        self.close_connection = True


EutilsServer.handler = _Handler  # defined below the server class, which names it
