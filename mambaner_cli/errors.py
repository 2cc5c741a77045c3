"""Errors that name the file (and line or PMID) they come from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReadError:
    """A problem with one input: a whole file, or one document in it.

    Readers *yield* a ReadError for a bad document and go on with the next one; they *raise*
    :class:`InputError` when the rest of the file cannot be read (missing, truncated, not XML…).

    ``warning=True`` marks a problem that cost less than a document (a malformed PubTator annotation line,
    an annotation whose offsets do not match the text): the document itself is still yielded, so a
    consumer that counts lost documents must not count these.
    """

    source: str
    message: str
    line: int | None = None
    doc_id: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
        if self.doc_id:
            where += f" (PMID {self.doc_id})" if self.doc_id.isdigit() else f" (document {self.doc_id})"
        return f"{where}: {self.message}"


class InputError(Exception):
    """An input that cannot be read any further."""

    def __init__(self, source: str, message: str, line: int | None = None, doc_id: str | None = None):
        self.error = ReadError(source, message, line, doc_id)
        super().__init__(str(self.error))


class MambanerError(Exception):
    """A user-facing error whose message says how to fix it."""


class MambanerUsageError(MambanerError):
    """A MambanerError caused by what the user asked for (an unknown model, convention or output format,
    a missing option value): the command line reports it as a usage error, exit status 2."""
