"""A directory of raw PubMed XML, one small file per PMID, so a rerun does not fetch again.

Files are ``<cache_dir>/<pmid>.xml``, each one ``<PubmedArticle>`` (or ``<PubmedBookArticle>``) exactly
as efetch returned it. Each is written to a temporary file and renamed into place, so an interrupted
run leaves whole files or none. A file the PubMed reader cannot parse (checked with the reader's own
parser, as fetched articles are), or that holds another PMID, is ignored (and the PMID fetched again,
which overwrites it). Entries never expire: delete the directory to refresh.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ..errors import MambanerError
from .articles import MalformedResponse, read_article

log = logging.getLogger("mambaner.fetch")


class ArticleCache:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MambanerError(f"cannot create the cache directory {self.directory}: {exc.strerror}; "
                                f"choose another with --cache-dir") from None

    def path(self, pmid: str) -> Path:
        return self.directory / f"{pmid}.xml"

    def get(self, pmid: str) -> bytes | None:
        """The stored article, or None when it is absent or unusable."""
        path = self.path(pmid)
        try:
            xml = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s: cannot read cached article (%s); fetching PMID %s again", path, exc, pmid)
            return None
        try:
            stored = read_article(xml)
        except MalformedResponse as exc:
            log.warning("%s: damaged cache entry (%s); fetching PMID %s again", path, exc, pmid)
            return None
        if stored != pmid:
            log.warning("%s: holds PMID %s, not %s; fetching it again", path, stored, pmid)
            return None
        return xml

    def put(self, pmid: str, xml: bytes) -> None:
        """Store one article atomically (temporary file in the same directory, then rename)."""
        if not pmid.isdigit():
            raise ValueError(f"not a PMID: {pmid!r}")
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{pmid}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(xml)
            os.replace(tmp, self.path(pmid))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
