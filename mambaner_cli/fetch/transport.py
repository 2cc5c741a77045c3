"""One E-utilities call through Biopython's ``Bio.Entrez``, with pacing, retries and redaction.

Bio.Entrez builds the request (tool, email, api_key, id lists, POST for long lists) but has no setting
for the server: each of its functions hard-codes ``https://eutils.ncbi.nlm.nih.gov/entrez/eutils/``
and opens it with the module-level name ``Bio.Entrez.urlopen``. :func:`_routed` swaps that name, under a
lock and only for the length of one call, for an opener that moves the request to the configured base
URL, waits for the shared rate limiter and applies our timeout. It also sets ``Bio.Entrez.max_tries``
to 1 so that retrying is ours alone: Biopython retries 5xx at once and waits a fixed 15 s after a
network error, and never honours Retry-After.

Retried: timeouts and other network errors, HTTP 429 and 5xx, NCBI's "API rate limit exceeded" (also
sent as HTTP 400), bodies that do not parse (truncated) and NCBI ``<ERROR>`` bodies sent with HTTP 200.
Other 4xx fail at once. Messages never contain the API key.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from Bio import Entrez
from lxml import etree

from ..errors import MambanerError
from .articles import MalformedResponse, NcbiErrorResponse
from .settings import FetchSettings

log = logging.getLogger("mambaner.fetch")

T = TypeVar("T")

_ENTREZ_LOCK = threading.RLock()  # Bio.Entrez's settings are module globals
MAX_BACKOFF = 60.0


class RequestFailed(Exception):
    """A request that failed for good: not retryable, or still failing after every retry (redacted)."""


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
        settings.limiter.wait(settings.requests_per_second)
        opened.append(settings.redact(request.full_url))
        log.debug("%s %s", request.get_method(), opened[-1])
        return urlopen(request, timeout=settings.timeout)

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
    if exc.code in (400, 401, 403) and "api key" in lowered.replace("_", " ").replace("-", " "):
        return MambanerError(f"NCBI rejected the API key ({reason}); check --api-key or NCBI_API_KEY")
    return RequestFailed(reason)


def _network_error(exc: BaseException, settings: FetchSettings) -> _Retryable:
    if isinstance(exc, URLError) and not isinstance(exc.reason, str):
        exc = exc.reason  # type: ignore[assignment]
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

    ``parse`` raises :class:`~.articles.MalformedResponse` or :class:`~.articles.NcbiErrorResponse`
    for a body that must be retried. Raises :class:`RequestFailed` when retries run out or the error is
    not retryable, and :class:`MambanerError` when no request can succeed (API key rejected).
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
        except NcbiErrorResponse as exc:
            reason = settings.redact(f"NCBI error: {exc}")
        if attempt + 1 < attempts:
            delay = retry_after if retry_after is not None else min(settings.backoff * 2 ** attempt,
                                                                    MAX_BACKOFF, settings.max_retry_after)
            log.info("%s: %s; retry %d of %d in %.2f s", utility, reason, attempt + 1, settings.max_retries,
                     delay)
            time.sleep(delay)
    raise RequestFailed(f"{reason} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})")
