"""Downloading NCBI's PubMed baseline and daily update files (``pubmedYYnNNNN.xml.gz``) over HTTPS.

NCBI publishes them at ``https://ftp.ncbi.nlm.nih.gov/pubmed/baseline/`` and ``…/pubmed/updatefiles/``:
an HTML index page lists every ``.xml.gz`` file and, beside it, a ``.md5`` file holding its checksum as
OpenSSL writes it (``MD5(pubmed25n0001.xml.gz)= 0123…``). :func:`list_files` reads the index and
:func:`download_files` fetches a selection of the files into a folder, each one:

- checked against its published md5; a file already there with that md5 is skipped (not fetched again);
- written to ``NAME.part`` beside the target and renamed onto ``NAME`` only once its md5 matches, so an
  interrupted run (Ctrl-C, a crash) never leaves a half-written ``NAME``; the ``.part`` stays, and the next
  run resumes it with an HTTP Range request (or starts over, if the server ignores Range);
- retried after a timeout, HTTP 429/5xx or a dropped connection, with the E-utilities fetcher's back-off
  (exponential from ``backoff`` seconds, Retry-After honoured, capped); an attempt that received data resets
  the count, so a connection that drops now and then still gets a 30 MB file through;
- deleted and downloaded once more from scratch when its md5 does not match, then reported as failed.

Files are downloaded by a small thread pool (``connections``, at most :data:`MAX_CONNECTIONS`: NCBI asks
for few parallel connections). Nothing here prints: progress and results go to a :class:`DownloadObserver`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin
from urllib.request import Request

from ..errors import MambanerError, MambanerUsageError
from .transport import MAX_BACKOFF, DeadlineExceeded, _retry_after, _unreachable, open_with_deadline

log = logging.getLogger("mambaner.fetch")

DEFAULT_FTP_URL = "https://ftp.ncbi.nlm.nih.gov/pubmed/"
ENV_FTP_URL = "NCBI_PUBMED_FTP_URL"
#: The folder of each collection under the base URL.
COLLECTIONS = {"baseline": "baseline/", "updates": "updatefiles/"}
MAX_CONNECTIONS = 4
PART_SUFFIX = ".part"

#: A baseline or update file's name: ``pubmed`` + two-digit year + ``n`` + four-digit number.
FILE_NAME = re.compile(r"pubmed\d{2}n\d{4,}\.xml\.gz")
_HREF = re.compile(r"""href\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
#: OpenSSL's ``md5`` output, as NCBI publishes it: ``MD5(NAME)= HASH``.
_OPENSSL_MD5 = re.compile(r"MD5\((?P<name>[^()\r\n]+)\)= ?(?P<hash>[0-9a-fA-F]{32})")
#: GNU ``md5sum``'s: ``HASH  NAME`` (text mode) or ``HASH *NAME`` (binary mode).
_MD5SUM = re.compile(r"(?P<hash>[0-9a-fA-F]{32}) [ *](?P<name>[^\r\n]+)")
_CHUNK = 1 << 16
#: Bytes read for an index page or an .md5 file at most: anything bigger is not what was asked for.
_SMALL_BODY_LIMIT = 16 << 20


class DownloadInterrupted(Exception):
    """The run was asked to stop (Ctrl-C, SIGTERM): raised in a worker between two chunks."""


class _Retryable(Exception):
    """Worth another attempt. ``progress``: this attempt got the file further, so the next one starts at
    once and the count of attempts starts again."""

    def __init__(self, reason: str, retry_after: float | None = None, progress: bool = False):
        super().__init__(reason)
        self.reason, self.retry_after, self.progress = reason, retry_after, progress


class _Failed(Exception):
    """This request cannot succeed (HTTP 404, a malformed .md5, …): no retry."""


@dataclass
class DownloadSettings:
    """Where the files are and how patient to be; build it with :meth:`from_env` for NCBI_PUBMED_FTP_URL."""

    base_url: str = DEFAULT_FTP_URL
    connections: int = 2
    max_retries: int = 5  # retries after the first attempt without progress (timeouts, 429, 5xx, drops)
    backoff: float = 1.0  # first retry delay in seconds; doubles on each retry (Retry-After wins)
    max_retry_after: float = 120.0  # cap on any single wait between attempts
    timeout: float = 30.0  # seconds without data before a request counts as timed out
    # seconds for one request, connection to last byte: a server trickling bytes cannot hold a worker
    # forever; a file that takes longer simply resumes where the deadline cut it
    deadline: float = 900.0
    # whether the server has answered once: until then a host that does not resolve or refuses the
    # connection is a wrong URL or no network, reported at once rather than retried for a minute
    answered: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise MambanerUsageError(f"--connections must be 1 to {MAX_CONNECTIONS} (NCBI asks for few "
                                     f"parallel connections), not {self.connections}")
        if self.max_retries < 0 or self.backoff < 0 or self.timeout <= 0 or self.deadline <= 0:
            raise MambanerError("max_retries and backoff must be >= 0, timeout and deadline > 0")
        if not self.base_url.startswith(("http://", "https://")):
            raise MambanerUsageError(f"PubMed download URL {self.base_url!r} must start with http:// or "
                                     f"https:// (set it with --base-url or {ENV_FTP_URL})")
        if not self.base_url.endswith("/"):
            self.base_url += "/"

    @classmethod
    def from_env(cls, *, base_url: str | None = None, environ: Mapping[str, str] | None = None,
                 **options: Any) -> DownloadSettings:
        """The explicit ``base_url`` first, then NCBI_PUBMED_FTP_URL, then NCBI's server."""
        env = os.environ if environ is None else environ
        return cls(base_url=base_url or env.get(ENV_FTP_URL) or DEFAULT_FTP_URL, **options)

    def collection_url(self, collection: str) -> str:
        return urljoin(self.base_url, COLLECTIONS[collection])


@dataclass
class FileResult:
    """What became of one file: ``downloaded``, ``skipped`` (already there with the right md5) or ``failed``."""

    name: str
    status: str
    reason: str = ""
    size: int = 0
    resumed: bool = False  # the download continued a .part left by an earlier attempt or run


@dataclass
class DownloadReport:
    results: list[FileResult] = field(default_factory=list)

    def _with(self, status: str) -> list[FileResult]:
        return [result for result in self.results if result.status == status]

    @property
    def downloaded(self) -> list[FileResult]:
        return self._with("downloaded")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary_lines(self) -> list[str]:
        """One line of counts, then one line per failed file with its reason."""
        resumed = sum(result.resumed for result in self.downloaded)
        size = sum(result.size for result in self.downloaded)
        line = (f"{len(self.downloaded)} downloaded ({_megabytes(size)}"
                + (f", {resumed} resumed" if resumed else "") + f"), {len(self.skipped)} skipped "
                f"(already there, md5 checked), {len(self.failed)} failed")
        return [line] + [f"  failed: {result.name}: {result.reason}" for result in self.failed]


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class DownloadObserver(Protocol):
    """Progress from the workers (called from their threads)."""

    def started(self, name: str, offset: int, total: int | None) -> None:
        """A file's body started coming, ``offset`` bytes already in its .part (``total``: its full size)."""

    def advanced(self, name: str, size: int) -> None:
        """``size`` more bytes of ``name`` arrived."""

    def restarted(self, name: str) -> None:
        """``name`` starts over from byte 0 (the server ignored Range, or the md5 did not match)."""

    def finished(self, result: FileResult) -> None:
        """``name`` is done: downloaded, skipped or failed."""


class _NoObserver:
    def started(self, name: str, offset: int, total: int | None) -> None:
        pass

    def advanced(self, name: str, size: int) -> None:
        pass

    def restarted(self, name: str) -> None:
        pass

    def finished(self, result: FileResult) -> None:
        pass


# -- checksums ------------------------------------------------------------------------------------------

def parse_md5(text: str, name: str) -> str:
    """The lower-case hex md5 that an ``.md5`` file's ``text`` gives for ``name``.

    Accepts exactly one line (plus blank lines) in OpenSSL's ``MD5(NAME)= HASH`` format, as NCBI writes
    it, or md5sum's ``HASH  NAME``; the line must name ``name`` (a path before it is ignored). Anything
    else raises ValueError: a checksum we cannot read is never taken as a match.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected one checksum line, found {len(lines)}")
    match = _OPENSSL_MD5.fullmatch(lines[0]) or _MD5SUM.fullmatch(lines[0])
    if match is None:
        raise ValueError(f"not an md5 line: {lines[0][:80]!r}")
    named = match.group("name").strip().rsplit("/", 1)[-1]
    if named != name:
        raise ValueError(f"the checksum is for {named!r}, not {name!r}")
    return match.group("hash").lower()


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- HTTP -----------------------------------------------------------------------------------------------

def _open(settings: DownloadSettings, url: str, headers: Mapping[str, str] | None = None) -> Any:
    """The response to a GET of ``url``; errors classified as :class:`_Retryable`, :class:`_Failed` or
    (the server cannot be reached at all) :class:`MambanerError`."""
    request = Request(url, headers={"User-Agent": "mambaner", **(headers or {})})
    try:
        response = open_with_deadline(request, settings.timeout, time.monotonic() + settings.deadline)
    except HTTPError as exc:
        settings.answered = True
        exc.close()
        reason = f"HTTP {exc.code} {exc.reason}"
        if exc.code == 429 or exc.code >= 500:
            headers_ = exc.headers
            raise _Retryable(reason, _retry_after(headers_.get("Retry-After") if headers_ else None,
                                                  settings.max_retry_after)) from None
        raise _Failed(reason) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(exc, settings) from None
    settings.answered = True
    return response


def _network_error(exc: BaseException, settings: DownloadSettings) -> Exception:
    if isinstance(exc, URLError) and not isinstance(exc.reason, str):
        exc = exc.reason  # type: ignore[assignment]
    unreachable = _unreachable(exc)
    if unreachable is not None and not settings.answered:
        return MambanerError(f"cannot reach the PubMed download server at {settings.base_url}: {unreachable}; "
                             f"check the network, or --base-url / {ENV_FTP_URL}")
    if isinstance(exc, DeadlineExceeded):
        return _Retryable(f"no complete answer within the {settings.deadline:g} s deadline")
    if isinstance(exc, TimeoutError):
        return _Retryable(f"no data for {settings.timeout:g} s (timed out)")
    return _Retryable(f"network error: {exc}")


def _delay(settings: DownloadSettings, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return retry_after
    return min(settings.backoff * 2 ** attempt, MAX_BACKOFF, settings.max_retry_after)


def _retrying(settings: DownloadSettings, what: str, action: Callable[[], Any],
              stop: threading.Event | None = None) -> Any:
    """``action()``, retried on :class:`_Retryable` with back-off; raises :class:`_Failed` at the end.

    An attempt that raises ``_Retryable`` with ``progress`` set starts the count again (see
    :func:`_fetch_to_part`)."""
    attempt = 0
    while True:
        try:
            return action()
        except _Retryable as exc:
            if exc.progress:
                attempt = 0  # data arrived before the failure: the server works, resume at once
                log.info("%s: %s; resuming", what, exc.reason)
                continue
            if attempt >= settings.max_retries:
                tries = attempt + 1
                raise _Failed(f"{exc.reason} (gave up after {tries} attempt{'s' if tries > 1 else ''})") from None
            delay = _delay(settings, attempt, exc.retry_after)
            attempt += 1
            log.info("%s: %s; retry %d of %d in %.2f s", what, exc.reason, attempt, settings.max_retries, delay)
            if stop is not None:
                if stop.wait(delay):
                    raise DownloadInterrupted from None
            else:
                time.sleep(delay)


def _read_small(settings: DownloadSettings, url: str) -> bytes:
    def attempt() -> bytes:
        with _open(settings, url) as response:
            try:
                body = response.read(_SMALL_BODY_LIMIT + 1)
            except (OSError, http.client.HTTPException) as exc:
                raise _network_error(exc, settings) from None
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and len(body) < int(length):
                raise _Retryable(f"connection closed mid-response ({len(body)} of {length} bytes)")
        if len(body) > _SMALL_BODY_LIMIT:
            raise _Failed(f"more than {_SMALL_BODY_LIMIT >> 20} MB: not an index page or an .md5 file")
        return body

    return _retrying(settings, url, attempt)


def list_files(settings: DownloadSettings, collection: str) -> list[str]:
    """The ``pubmedYYnNNNN.xml.gz`` files that the index page of ``collection`` (``baseline`` or
    ``updates``) lists, in name order. Raises :class:`MambanerError` when the page cannot be had."""
    url = settings.collection_url(collection)
    try:
        page = _read_small(settings, url)
    except _Failed as exc:
        raise MambanerError(f"cannot read the {collection} listing at {url}: {exc}") from None
    names = set()
    for href in _HREF.findall(page.decode("utf-8", "replace")):
        name = href.rsplit("/", 1)[-1]
        if FILE_NAME.fullmatch(name):
            names.add(name)
    return sorted(names)


def select(listing: Sequence[str], *, limit: int | None = None, names: Iterable[str] = ()) -> list[str]:
    """The files to fetch: those of ``names`` (all of ``listing`` if none), then the first ``limit``.

    A name that is not in ``listing`` is a usage error (a typo must not quietly download nothing)."""
    wanted = list(dict.fromkeys(names))
    if wanted:
        unknown = [name for name in wanted if name not in listing]
        if unknown:
            raise MambanerUsageError(f"not in the listing: {', '.join(unknown)}")
        chosen = sorted(wanted)
    else:
        chosen = list(listing)
    return chosen[:limit] if limit is not None else chosen


# -- one file -------------------------------------------------------------------------------------------

def _fetch_to_part(settings: DownloadSettings, url: str, part: Path, name: str, observer: DownloadObserver,
                   stop: threading.Event, state: dict[str, bool]) -> None:
    """One attempt at completing ``part`` from ``url``, resuming it when it holds anything."""
    offset = before = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _open(settings, url, headers)
    except _Failed as exc:
        if offset and str(exc).startswith("HTTP 416"):  # the .part is not a prefix of the file: start over
            part.unlink(missing_ok=True)
            observer.restarted(name)
            raise _Retryable("the partial file does not fit the server's file; starting over",
                             progress=True) from None  # no back-off: the server is fine
        raise
    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:  # not the bytes asked for: appending them would corrupt the file
                part.unlink(missing_ok=True)
                observer.restarted(name)
                raise _Retryable(f"the server answered the range request with bytes from {start}, not {offset}")
            mode = "ab"
            state["resumed"] = True
        else:  # 200: the whole file (a server that ignores Range sends it all again)
            if offset:
                log.info("%s: the server ignored the range request; starting over", name)
                observer.restarted(name)
            offset, mode = 0, "wb"
        total = offset + length if length is not None else None
        observer.started(name, offset, total)
        received = 0
        with open(part, mode) as out:
            try:
                while True:
                    if stop.is_set():
                        raise DownloadInterrupted
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    observer.advanced(name, len(block))
            except (OSError, http.client.HTTPException) as exc:
                error = _network_error(exc, settings)
                if isinstance(error, _Retryable):
                    error.progress = offset + received > before
                raise error from None
            finally:
                out.flush()
                os.fsync(out.fileno())
        if length is not None and received < length:
            # progress only if the .part grew: a server that ignores Range and drops each time must
            # still run out of retries rather than start over for ever
            raise _Retryable(f"connection closed mid-file ({offset + received} of {total} bytes)",
                             progress=offset + received > before)


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def download_file(settings: DownloadSettings, collection: str, name: str, folder: Path,
                  observer: DownloadObserver | None = None, stop: threading.Event | None = None) -> FileResult:
    """Fetch ``name`` of ``collection`` into ``folder`` (see the module's docstring); never raises for a
    problem with this file alone, which is a ``failed`` result, only for a stop or an unreachable server."""
    observer = observer or _NoObserver()
    stop = stop or threading.Event()
    url = urljoin(settings.collection_url(collection), name)
    target, part = folder / name, folder / (name + PART_SUFFIX)
    try:
        try:
            expected = parse_md5(_read_small(settings, url + ".md5").decode("utf-8", "replace"), name)
        except ValueError as exc:
            raise _Failed(f"cannot read {name}.md5: {exc}") from None
        except _Failed as exc:
            raise _Failed(f"cannot fetch {name}.md5: {exc}") from None
        if target.is_file() and file_md5(target) == expected:
            return FileResult(name, "skipped", size=target.stat().st_size)
        if part.is_file() and file_md5(part) == expected:  # complete, but the last run stopped before renaming
            os.replace(part, target)
            return FileResult(name, "downloaded", size=target.stat().st_size, resumed=True)
        state = {"resumed": False}
        for download in (1, 2):
            _retrying(settings, name, lambda: _fetch_to_part(settings, url, part, name, observer, stop, state),
                      stop)
            actual = file_md5(part)
            if actual == expected:
                size = part.stat().st_size
                os.replace(part, target)  # atomic: NAME is either the old file or the complete new one
                return FileResult(name, "downloaded", size=size, resumed=state["resumed"])
            part.unlink()
            if download == 1:
                log.info("%s: md5 %s, expected %s; downloading it again", name, actual, expected)
                observer.restarted(name)
        raise _Failed(f"md5 mismatch: expected {expected}, got {actual} (downloaded twice; not kept)")
    except _Failed as exc:
        return FileResult(name, "failed", str(exc))
    except OSError as exc:  # the local side: a full disk, a folder we cannot write, a file we cannot read
        return FileResult(name, "failed", f"local file error: {exc.filename or part}: {exc.strerror or exc}")


def download_files(settings: DownloadSettings, collection: str, names: Sequence[str], folder: str | os.PathLike,
                   observer: DownloadObserver | None = None, stop: threading.Event | None = None) -> DownloadReport:
    """Fetch ``names`` of ``collection`` into ``folder`` with ``settings.connections`` workers.

    A failed file does not stop the others. On KeyboardInterrupt (or another BaseException, such as
    SIGTERM's) in the calling thread, the workers are told to stop after their current chunk and waited
    for, then the exception goes on: no file is half renamed, and each ``.part`` stays for resuming.
    """
    observer = observer or _NoObserver()
    stop = stop or threading.Event()
    folder = Path(folder)
    report = DownloadReport()
    with ThreadPoolExecutor(max_workers=settings.connections, thread_name_prefix="pubmed-download") as pool:
        pending: set[Future[FileResult]] = set()
        try:
            for name in names:
                pending.add(pool.submit(download_file, settings, collection, name, folder, observer, stop))
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()  # MambanerError (unreachable) or DownloadInterrupted go on
                    report.results.append(result)
                    observer.finished(result)
        except BaseException:
            stop.set()
            for future in pending:
                future.cancel()
            raise
    report.results.sort(key=lambda result: result.name)
    return report
