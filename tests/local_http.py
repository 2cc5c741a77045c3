"""The lifecycle that the tests' fake servers share: an HTTP server on 127.0.0.1, on a free port, in a thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHTTPApp:
    """A fake server: subclasses give ``handler`` (a request handler reading ``self.app``) and ``prefix``."""

    handler: type[BaseHTTPRequestHandler]
    prefix: str
    _httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        handler = type("Handler", (self.handler,), {"app": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.prefix}"
