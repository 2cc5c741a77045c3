"""How to reach NCBI E-utilities: who we are, which key, which server, how patient to be.

The API key is a secret: it is left out of ``repr`` and :func:`redact` scrubs it (and any
``api_key=...`` parameter) from every message, log line and exception text this package produces, in
whatever spelling it appears there: as typed, form-encoded (a space as ``+``, ``+`` as ``%2B``), percent-
encoded once or twice in either case, or escaped as XML/HTML or JSON text.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import MambanerError, MambanerUsageError
from .ratelimit import SHARED_LIMITER, RateLimiter

DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
#: NCBI asks for at most 200 UIDs per efetch request (and POST beyond that).
MAX_BATCH_SIZE = 200

ENV_EMAIL = "NCBI_EMAIL"
ENV_API_KEY = "NCBI_API_KEY"
ENV_BASE_URL = "NCBI_EUTILS_URL"

_KEY_PARAMETER = re.compile(r"""(api[_-]?key["']?\s*[=:]\s*["']?)[^&\s"',;}<]+""", re.IGNORECASE)


def _spellings(char: str) -> list[str]:
    """Regular expressions for every way ``char`` can be written in a URL, a form body, XML or JSON."""
    utf8 = char.encode("utf-8")
    forms = [re.escape(char),
             "".join(f"%{byte:02x}" for byte in utf8),  # percent-encoded (case-insensitive match)
             "".join(f"%25{byte:02x}" for byte in utf8),  # ... twice (a URL quoted inside a URL)
             f"&#0*{ord(char)};", f"&#x0*{ord(char):x};",  # XML character references
             re.escape(f"\\u{ord(char):04x}")]  # a JSON string escape
    if char == " ":
        forms.append(r"\+")  # application/x-www-form-urlencoded, as Bio.Entrez sends it
    escaped = html.escape(char)
    if escaped != char:
        forms.append(re.escape(escaped))
    return forms


@lru_cache(maxsize=8)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    """Matches ``secret`` with each character in any of its spellings (mixed spellings too)."""
    return re.compile("".join(f"(?:{'|'.join(_spellings(char))})" for char in secret), re.IGNORECASE)


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with ``secret`` (in any spelling) and every ``api_key=value`` / ``"api-key": "value"`` masked."""
    if secret:
        text = _secret_pattern(secret).sub("***", text)
    return _KEY_PARAMETER.sub(r"\1***", text)


@dataclass
class FetchSettings:
    """Options for talking to E-utilities; build it with :meth:`from_env` to pick up NCBI_* variables."""

    email: str | None = None
    api_key: str | None = field(default=None, repr=False)
    tool: str = "mambaner"
    base_url: str = DEFAULT_BASE_URL
    max_retries: int = 5  # retries after the first attempt, for timeouts, 429, 5xx, bad bodies
    backoff: float = 1.0  # first retry delay in seconds; doubles on each retry (Retry-After wins)
    timeout: float = 30.0  # seconds without data before a request counts as timed out
    # seconds for a whole request, connection to last byte: the timeout above only bounds silence, so a
    # server sending a byte now and then would otherwise hold a request (and the run) forever
    deadline: float = 120.0
    batch_size: int = MAX_BATCH_SIZE
    cache_dir: Path | None = None
    max_retry_after: float = 120.0  # cap on any single wait between attempts
    # after this many failed batches in a row, stop asking and report the rest as failed (0: never stop)
    max_consecutive_failures: int = 3
    limiter: RateLimiter = field(default=SHARED_LIMITER, repr=False, compare=False)
    # whether E-utilities has answered one request with these settings: until it has, a host that does
    # not resolve or refuses the connection is a wrong URL or no network, reported at once, not retried
    answered: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise MambanerError(f"batch size {self.batch_size} is out of range: NCBI allows 1 to "
                                f"{MAX_BATCH_SIZE} PMIDs per request")
        if self.max_retries < 0 or self.backoff < 0 or self.timeout <= 0 or self.deadline <= 0:
            raise MambanerError("max_retries and backoff must be >= 0, timeout and deadline > 0")
        if not self.base_url.startswith(("http://", "https://")):
            raise MambanerError(f"E-utilities URL {self.base_url!r} must start with http:// or https:// "
                                f"(set it with --eutils-url or {ENV_BASE_URL})")
        if not self.base_url.endswith("/"):
            self.base_url += "/"
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)

    @classmethod
    def from_env(cls, *, email: str | None = None, api_key: str | None = None, base_url: str | None = None,
                 environ: Mapping[str, str] | None = None, **options: object) -> FetchSettings:
        """Explicit arguments first, then NCBI_EMAIL, NCBI_API_KEY and NCBI_EUTILS_URL."""
        env = os.environ if environ is None else environ
        return cls(email=email or env.get(ENV_EMAIL) or None,
                   api_key=api_key or env.get(ENV_API_KEY) or None,
                   base_url=base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL,
                   **options)  # type: ignore[arg-type]

    @property
    def requests_per_second(self) -> int:
        return 10 if self.api_key else 3

    def require_email(self) -> None:
        """NCBI wants a contact address with every request, to write before it blocks a client.

        A usage error (exit status 2): the command line lacks an option it needs."""
        if not self.email:
            raise MambanerUsageError(f"NCBI asks for a contact email with every request: pass --email or "
                                     f"set {ENV_EMAIL}")

    def redact(self, text: str) -> str:
        return redact(text, self.api_key)
