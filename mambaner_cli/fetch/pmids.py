"""Reading PMIDs from the command line and from files, with errors that point at the bad entry."""

from __future__ import annotations

import gzip
import io
import re
import sys
from pathlib import Path

from ..errors import InputError

_SEPARATORS = re.compile(r"[\s,;]+")
_PMID = re.compile(r"\d{1,10}")


def parse_pmid_list(text: str, source: str = "--pmid", line: int | None = None) -> list[str]:
    """PMIDs separated by commas, semicolons or whitespace, e.g. ``"31452104, 29323442"``.

    Leading zeros are dropped (``"007"`` is PMID 7). Duplicates are kept: the fetcher counts them.
    Raises :class:`InputError` naming ``source`` (and ``line``) for an entry that is not a PMID.
    """
    pmids: list[str] = []
    for token in _SEPARATORS.split(text):
        if not token:
            continue
        if not _PMID.fullmatch(token) or int(token) == 0:
            raise InputError(source, f"{token!r} is not a PMID (PMIDs are positive whole numbers, e.g. "
                                     f"31452104)", line)
        pmids.append(str(int(token)))
    return pmids


def read_pmid_file(path: str | Path) -> list[str]:
    """PMIDs from a file: one per line or several separated by commas/whitespace; ``#`` starts a comment.

    ``-`` reads standard input; a name ending in ``.gz`` is decompressed. Errors name the file and line.
    """
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        if str(path) == "-":
            text = sys.stdin.read()
        else:
            raw = Path(path).read_bytes()
            if str(path).endswith(".gz"):
                raw = gzip.decompress(raw)
            text = raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(source, "PMID file not found") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(source, f"cannot read PMID file: {exc}") from None
    pmids: list[str] = []
    for number, line in enumerate(io.StringIO(text), start=1):
        content = line.split("#", 1)[0]
        pmids.extend(parse_pmid_list(content, source, number))
    return pmids
