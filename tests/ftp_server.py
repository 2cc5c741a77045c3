"""A small stand-in for NCBI's PubMed download server (``ftp.ncbi.nlm.nih.gov/pubmed/`` over HTTPS),
served over real HTTP on 127.0.0.1, for the `mambaner pubmed download` tests.

It serves an Apache-style index page per folder (``baseline/``, ``updatefiles/``) listing the files and
their ``.md5`` files, the files themselves (honouring ``Range: bytes=N-`` with 206 and Content-Range,
416 past the end) and the ``.md5`` files in OpenSSL's ``MD5(NAME)= HASH`` format. It logs every request
(path and Range header) and can be scripted to misbehave with :class:`Fault`: a status code, a connection
that drops after some bytes, a server that ignores Range, a wrong .md5 or wrong content.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from tests.local_http import LocalHTTPApp

FOLDERS = ("baseline", "updatefiles")


def make_file(name: str, size: int = 150_000) -> bytes:
    """A made-up, gzip-compressed PubmedArticleSet of about ``size`` bytes, different for each name (and
    barely compressible, so that a drop after N bytes really is mid-file)."""
    seed = hashlib.sha256(name.encode()).digest()
    noise = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).hexdigest().encode()
                     for i in range(size // 64 + 1))
    xml = b"<?xml version='1.0'?><PubmedArticleSet><!-- " + noise + b" --></PubmedArticleSet>\n"
    return gzip.compress(xml, mtime=0)


def md5_line(name: str, data: bytes) -> bytes:
    return f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()


@dataclass
class Fault:
    """A scripted misbehaviour for GETs of ``path`` (e.g. ``baseline/pubmed25n0002.xml.gz``)."""

    path: str
    status: int = 200  # another status: answered with it and an HTML body
    drop_after: int | None = None  # announce the whole (ranged) body, send this many bytes, close
    ignore_range: bool = False  # answer 200 with the whole file, whatever the Range header says
    body: bytes | None = None  # send this instead of the real content (a corrupt copy)
    times: int | None = 1  # None: every matching request


@dataclass
class Logged:
    path: str
    range: str | None
    status: int = 0


class PubmedFtpServer(LocalHTTPApp):
    def __init__(self, files: dict[str, dict[str, bytes]], prefix: str = "/pubmed/"):
        """``files``: folder (``baseline``, ``updatefiles``) → file name → content. ``.md5`` files are made
        from the content unless ``files`` gives them (to publish a wrong or malformed checksum)."""
        self.prefix = prefix
        self.files: dict[str, dict[str, bytes]] = {folder: {} for folder in FOLDERS}
        for folder, entries in files.items():
            for name, data in entries.items():
                self.files[folder][name] = data
            for name, data in entries.items():
                if name.endswith(".xml.gz") and name + ".md5" not in entries:
                    self.files[folder][name + ".md5"] = md5_line(name, data)
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self._lock = threading.Lock()

    def requests(self, path: str) -> list[Logged]:
        with self._lock:
            return [entry for entry in self.log if entry.path == path]

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path == path and fault.times != 0:
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def index(self, folder: str) -> bytes:
        """An index page as Apache writes NCBI's, with a README and the parent link among the files."""
        rows = ['<a href="/pubmed/">Parent Directory</a>                             -',
                '<a href="README.txt">README.txt</a>               2024-12-11 11:21  4.3K']
        for name in sorted(self.files[folder]):
            rows.append(f'<a href="{name}">{name}</a>  2024-11-13 15:02   {len(self.files[folder][name])}')
        return (f"<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html>\n <head>\n"
                f"  <title>Index of /pubmed/{folder}</title>\n </head>\n <body>\n<h1>Index of /pubmed/{folder}</h1>\n"
                f"<pre>Name                     Last modified      Size  <hr>" + "\n".join(rows)
                + "\n<hr></pre>\n</body></html>\n").encode()


_RANGE = re.compile(r"bytes=(\d+)-$")


class _Handler(BaseHTTPRequestHandler):
    app: PubmedFtpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet test output

    def do_GET(self) -> None:
        app = self.app
        path = unquote(urlsplit(self.path).path)
        relative = path[len(app.prefix):] if path.startswith(app.prefix) else None
        entry = Logged(relative or path, self.headers.get("Range"))
        with app._lock:
            app.log.append(entry)
        fault = app.take_fault(relative) if relative is not None else None
        folder, _, name = (relative or "").partition("/")
        data: bytes | None = None
        if folder in app.files and name == "":
            data = app.index(folder)
        elif folder in app.files and name in app.files[folder]:
            data = app.files[folder][name]
        if fault is not None and fault.status != 200:
            return self._send(entry, fault.status, b"<html><body>error</body></html>", {})
        if data is None:
            return self._send(entry, 404, b"<html><body>404 Not Found</body></html>", {})
        if fault is not None and fault.body is not None:
            data = fault.body
        status, headers = 200, {}
        requested = _RANGE.match(self.headers.get("Range") or "")
        if requested and not (fault is not None and fault.ignore_range):
            start = int(requested.group(1))
            if start >= len(data):
                return self._send(entry, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status, headers = 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            data = data[start:]
        self._send(entry, status, data, headers, drop_after=fault.drop_after if fault else None)

    def _send(self, entry: Logged, status: int, body: bytes, headers: dict[str, str],
              drop_after: int | None = None) -> None:
        entry.status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if entry.path.endswith("/") else "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body if drop_after is None else body[:drop_after])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up
        self.close_connection = True


PubmedFtpServer.handler = _Handler  # defined below the server class, which names it
