"""One tagging run: inputs → pipeline → one output file, written atomically."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mambaner_cli.document import Document
from mambaner_cli.errors import MambanerError, ReadError
from mambaner_cli.runtime.pipeline import RunSummary, SentenceTagger, tag_documents
from mambaner_cli.writers import WRITERS, atomic_output


class FailFast(MambanerError):
    """Raised on the first read error when the user asked to stop there."""


def tag_to_file(items: Iterable[Document | ReadError], tagger: SentenceTagger, output: str, fmt: str,
                batch_size: int = 32, fail_fast: bool = False,
                on_error: Callable[[ReadError], None] | None = None,
                on_progress: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Tag every document of ``items`` and write them to ``output`` ("-" for stdout) as ``fmt``.

    The output appears only once complete (a crash, Ctrl-C or ``fail_fast`` leaves any earlier file
    untouched). Read errors are collected in the summary; the caller decides the exit status.
    """
    summary = RunSummary()

    def handle_error(error: ReadError) -> None:
        if on_error:
            on_error(error)
        if fail_fast:
            raise FailFast(f"stopped at the first error (--fail-fast): {error}")

    with atomic_output(output) as stream:
        writer = WRITERS[fmt](stream, model=tagger.label)
        for doc in tag_documents(items, tagger, summary, batch_size=batch_size, on_error=handle_error,
                                 on_progress=on_progress):
            writer.write(doc)
        writer.close()
    return summary
