"""One E-utilities call through Biopython's ``Bio.Entrez``, with pacing, retries and redaction.

Bio.Entrez builds the request (tool, email, api_key, id lists, POST for long lists) but has no setting
for the server: each of its functions hard-codes ``https://eutils.ncbi.nlm.nih.gov/entrez/eutils/``
and opens it with the module-level name ``Bio.Entrez.urlopen``. :func:`_routed` swaps that name, under a
lock and only for the length of one call, for an opener that moves the request to the configured base
URL, waits for the shared rate limiter and applies our timeout. It also sets ``Bio.Entrez.max_tries``
to 1 so that retrying is ours alone: Biopython retries 5xx at once and waits a fixed 15 s after a
network error, and never honours Retry-After.

Each request has a deadline (``FetchSettings.deadline``) as well as the socket timeout: the timeout
only bounds silence, so the connection's reads are made to give up at a fixed moment (:class:`_DeadlineSocket`),
which also ends a server that sends one byte every few seconds.

Retried: timeouts and other network errors, HTTP 429 and 5xx, NCBI's "API rate limit exceeded" (also
sent as HTTP 400), truncated bodies and NCBI ``<ERROR>`` bodies sent with HTTP 200. Not retried: other
4xx, complete bodies that are not what was asked for (an HTML page), and, until the server has answered
once, a host name that does not resolve or a refused connection (a wrong URL or no network: retrying
would only wait a minute to say so). Messages never contain the API key.
"""

from __future__ import annotations

import email.utils
import errno
import functools
import hashlib
import http.client
import io
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from Bio import Entrez
from lxml import etree

from ..errors import MambanerError
from .articles import MalformedResponse, NcbiErrorResponse
from .settings import FetchSettings

log = logging.getLogger("mambaner.fetch")

T = TypeVar("T")

_ENTREZ_LOCK = threading.RLock()  # Bio.Entrez's settings are module globals
MAX_BACKOFF = 60.0


#: NCBI's answer to a key it does not know (HTTP 400, JSON ``{"error": "API key invalid", ...}``). Only
#: this rejects the key; another 400 that happens to mention "api key" fails its request only.
_KEY_REJECTED = re.compile(r"(api[ _-]?key (is )?(invalid|not valid|revoked|expired|disabled)|"
                           r"(invalid|unknown|bad) api[ _-]?key)[.!]?", re.IGNORECASE)
#: Connection errors that mean "nothing there" rather than "busy": no such host, nothing listening.
_UNREACHABLE = {errno.ECONNREFUSED: "connection refused", errno.ENETUNREACH: "network is unreachable",
                errno.EHOSTUNREACH: "host is unreachable"}


class RequestFailed(Exception):
    """A request that failed for good: not retryable, or still failing after every retry (redacted)."""


class DeadlineExceeded(TimeoutError):
    """The answer did not complete within ``FetchSettings.deadline`` (it may have kept trickling in)."""


class _DeadlineReader(io.RawIOBase):
    """The reading side of a connection (the socket's own file object) that stops at ``deadline``.

    Before each read the socket timeout is cut to what is left, so a read that would outlast the
    deadline times out then, and no read starts after it.
    """

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float, timeout: float | None):
        super().__init__()
        self._raw, self._sock, self._deadline, self._timeout = raw, sock, deadline, timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the answer did not complete in time")
        self._sock.settimeout(left if self._timeout is None else min(self._timeout, left))
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise DeadlineExceeded("the answer did not complete in time") from None
            raise

    def close(self) -> None:
        self._raw.close()  # releases the socket (it stays open while a response reads from it)
        super().close()


class _DeadlineSocket:
    """A connected socket whose read stream (what http.client reads the status, headers and body from)
    is a :class:`_DeadlineReader`; everything else is the socket's own."""

    def __init__(self, sock: socket.socket, deadline: float, timeout: float | None):
        self._sock, self._deadline, self._timeout = sock, deadline, timeout

    def makefile(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode != "rb":
            return self._sock.makefile(mode, *args, **kwargs)
        raw = self._sock.makefile("rb", buffering=0)
        return io.BufferedReader(_DeadlineReader(raw, self._sock, self._deadline, self._timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineConnection:
    """Mixed into http.client's connections: wraps the socket once connected (and TLS set up)."""

    deadline: float

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock = _DeadlineSocket(self.sock, self.deadline, self.timeout)  # type: ignore[attr-defined]


class _HTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline = deadline


class _HTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline = deadline


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, deadline=self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: Request) -> http.client.HTTPResponse:
        options: dict[str, Any] = {"context": self._context}  # type: ignore[attr-defined]
        if getattr(self, "_check_hostname", None) is not None:  # gone in Python 3.12
            options["check_hostname"] = self._check_hostname  # type: ignore[attr-defined]
        return self.do_open(functools.partial(_HTTPSConnection, deadline=self.deadline), req, **options)


def open_with_deadline(request: Request, timeout: float, deadline: float) -> Any:
    """``urlopen(request, timeout=timeout)`` whose reads (status line to last body byte) all end by the
    monotonic time ``deadline``, raising :class:`DeadlineExceeded`. Proxies work as with ``urlopen``."""
    opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
    return opener.open(request, timeout=timeout)


def rate_bucket(api_key: str | None) -> str:
    """The name of the rate-limit budget a request draws on: NCBI counts per key, or per address without
    one. The key is hashed: the name ends up in a file name, which must not reveal it."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else "nokey"


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def rebase(url: str, base_url: str) -> str:
    """``url`` (an E-utility URL on any server) moved to ``base_url``, keeping the tool name and query."""
    parts = urlsplit(url)
    cgi = parts.path.rsplit("/", 1)[-1]
    return base_url + cgi + (f"?{parts.query}" if parts.query else "")


@contextmanager
def _routed(settings: FetchSettings) -> Iterator[list[str]]:
    """Point Bio.Entrez at ``settings``; yields the list of URLs actually opened (redacted)."""
    opened: list[str] = []

    def open_request(request: Request, *args: Any, **kwargs: Any) -> Any:
        request.full_url = rebase(request.full_url, settings.base_url)
        settings.limiter.wait(settings.requests_per_second, bucket=rate_bucket(settings.api_key))
        opened.append(settings.redact(request.full_url))
        log.debug("%s %s", request.get_method(), opened[-1])
        return open_with_deadline(request, settings.timeout, time.monotonic() + settings.deadline)

    with _ENTREZ_LOCK:
        saved = Entrez.urlopen, Entrez.max_tries
        Entrez.urlopen, Entrez.max_tries = open_request, 1
        try:
            yield opened
        finally:
            Entrez.urlopen, Entrez.max_tries = saved


def _retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), cap)


def error_message(body: bytes) -> str | None:
    """NCBI's own words from an error body: JSON ``{"error": ...}``, XML ``<ERROR>``, or short text.

    Only the message is kept: NCBI's rate-limit JSON also echoes the API key.
    """
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            inner = data.get("esearchresult") if isinstance(data.get("esearchresult"), dict) else data
            for key in ("error", "ERROR"):
                if inner.get(key):
                    return str(inner[key])
            return None
    if text.startswith("<"):
        try:
            root = etree.fromstring(body, etree.XMLParser(no_network=True, load_dtd=False,
                                                          resolve_entities=False, recover=True))
        except etree.XMLSyntaxError:
            root = None
        if root is not None:
            errors = [" ".join(e.itertext()).strip() for e in root.iter("ERROR")]
            if errors:
                return "; ".join(errors)
        return None  # an HTML error page: the status line says enough
    return " ".join(text.split())[:200]


def _http_error(exc: HTTPError, settings: FetchSettings) -> Exception:
    """Classify an HTTP error response: retryable, fatal for the run, or failed for this request."""
    settings.answered = True
    try:
        body = exc.read() or b""
    except (OSError, http.client.HTTPException):
        body = b""
    message = error_message(body)
    reason = f"HTTP {exc.code} {exc.reason}" + (f": {message}" if message else "")
    reason = settings.redact(reason)
    lowered = (message or "").lower()
    if exc.code == 429 or exc.code >= 500 or "rate limit" in lowered:
        headers = exc.headers
        return _Retryable(reason, _retry_after(headers.get("Retry-After") if headers else None,
                                               settings.max_retry_after))
    if exc.code in (400, 401, 403) and settings.api_key and message and _KEY_REJECTED.fullmatch(message.strip()):
        return MambanerError(f"NCBI rejected the API key ({reason}); check --api-key or NCBI_API_KEY")
    return RequestFailed(reason)


def _unreachable(exc: BaseException) -> str | None:
    """Why nothing can answer at all (no such host, nothing listening, no route, a bad certificate), or
    None for errors that may pass (timeouts, resets)."""
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not valid ({exc.verify_message or exc})"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return _UNREACHABLE[exc.errno]
    return None


def _network_error(exc: BaseException, settings: FetchSettings) -> Exception:
    if isinstance(exc, URLError) and not isinstance(exc.reason, str):
        exc = exc.reason  # type: ignore[assignment]
    unreachable = _unreachable(exc)
    if unreachable is not None and not settings.answered:
        return MambanerError(settings.redact(f"cannot reach E-utilities at {settings.base_url}: {unreachable}; "
                                             f"check the network, or --eutils-url / NCBI_EUTILS_URL"))
    if isinstance(exc, DeadlineExceeded):
        return _Retryable(f"no complete answer within the {settings.deadline:g} s deadline")
    if isinstance(exc, TimeoutError):
        return _Retryable(f"no answer within {settings.timeout:g} s (timed out)")
    if isinstance(exc, http.client.IncompleteRead):
        return _Retryable(f"connection closed mid-response ({len(exc.partial)} bytes received)")
    return _Retryable(settings.redact(f"network error: {exc}"))


def _attempt(settings: FetchSettings, utility: str, params: dict[str, Any]) -> bytes:
    function: Callable[..., Any] = getattr(Entrez, utility)
    with _routed(settings) as opened:
        try:
            handle = function(**params)
        except HTTPError as exc:
            raise _http_error(exc, settings) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            raise _network_error(exc, settings) from None
        settings.answered = True  # status and headers came: the host is there (the body may still fail)
        try:
            body = handle.read()
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(exc, settings) from None
        finally:
            handle.close()
    if not opened:
        raise RuntimeError("Bio.Entrez no longer opens URLs through Bio.Entrez.urlopen; "
                           "mambaner_cli.fetch.transport needs updating for this Biopython")
    return body.encode("utf-8") if isinstance(body, str) else body


def call(settings: FetchSettings, utility: str, params: dict[str, Any], parse: Callable[[bytes], T]) -> T:
    """``parse(body)`` of a successful ``Bio.Entrez.<utility>(**params)`` call, retrying as needed.

    ``parse`` raises :class:`~.articles.MalformedResponse` (retried if ``retryable``) or
    :class:`~.articles.NcbiErrorResponse` for a body that must be retried. Raises :class:`RequestFailed`
    when retries run out or the error is not retryable, and :class:`MambanerError` when no request can
    succeed (API key rejected, E-utilities unreachable).
    """
    params = {**params, "tool": settings.tool, "email": settings.email, "api_key": settings.api_key}
    attempts = settings.max_retries + 1
    reason = "no attempt made"
    for attempt in range(attempts):
        retry_after: float | None = None
        try:
            return parse(_attempt(settings, utility, params))
        except _Retryable as exc:
            reason, retry_after = exc.reason, exc.retry_after
        except MalformedResponse as exc:
            reason = settings.redact(str(exc))
            if not exc.retryable:  # a complete answer that asking again would only repeat
                raise RequestFailed(reason) from None
        except NcbiErrorResponse as exc:
            reason = settings.redact(f"NCBI error: {exc}")
        if attempt + 1 < attempts:
            delay = retry_after if retry_after is not None else min(settings.backoff * 2 ** attempt,
                                                                    MAX_BACKOFF, settings.max_retry_after)
            log.info("%s: %s; retry %d of %d in %.2f s", utility, reason, attempt + 1, settings.max_retries,
                     delay)
            time.sleep(delay)
    raise RequestFailed(f"{reason} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})")
