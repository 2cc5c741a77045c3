"""Reading PMIDs from the command line and from files, with errors that point at the bad entry."""

from __future__ import annotations

import gzip
import io
import re
import sys
import zlib
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


def _decode(raw: bytes, source: str) -> str:
    """The text of a PMID file: UTF-8 (a byte-order mark at the start is fine), or UTF-16 with its BOM (as
    Windows tools save "Unicode" text); anything else is refused with a message that says what it is."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(source, "starts with a UTF-16 byte-order mark but is not UTF-16 text") from None
    if b"\x00" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        raise InputError(source, "contains a NUL byte: not a text file of PMIDs (or UTF-16 without a "
                                 "byte-order mark; save it as UTF-8)", line)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(source, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8", line) from None


def read_pmid_file(path: str | Path) -> list[str]:
    """PMIDs from a file: one per line or several separated by commas/whitespace; ``#`` starts a comment.

    ``-`` reads standard input; a name ending in ``.gz`` is decompressed. Errors name the file and line.
    """
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        if str(path) == "-":
            stdin = getattr(sys.stdin, "buffer", None)
            raw = stdin.read() if stdin is not None else sys.stdin.read().encode("utf-8")
        else:
            raw = Path(path).read_bytes()
        if str(path).endswith(".gz"):
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise InputError(source, "PMID file not found") from None
    except IsADirectoryError:
        raise InputError(source, "is a directory, not a PMID file") from None
    except ValueError as exc:  # a NUL byte in the file name
        raise InputError(repr(source), f"not a usable file name ({exc})") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(source, f"cannot read PMID file: {getattr(exc, 'strerror', None) or exc}") from None
    text = _decode(raw, source)
    pmids: list[str] = []
    for number, line in enumerate(io.StringIO(text), start=1):
        content = line.split("#", 1)[0]
        pmids.extend(parse_pmid_list(content, source, number))
    return pmids
