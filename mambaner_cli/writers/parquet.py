"""Apache Parquet output: one row per mention, streamed in row groups.

Rows are buffered and written as a row group every ``row_group_rows`` rows (10,000 by default), so
memory stays constant however many documents a run tags. The file is readable by any Arrow/Parquet tool
(pyarrow, polars, DuckDB, Spark, pandas).

Schema (one row per mention)::

    doc_id    string   document id (the PMID for PubMed)
    source    string   where the document came from: the input file, "<stdin>" or "pubmed"
    passage   string   type of the passage holding the mention ("title", "abstract", "text")
    sentence  int32    index of the sentence in the document, 0-based, counting across passages
    start     int32    document offset of the mention's first character (title at 0, abstract at
                       len(title) + 1; offsets count Unicode code points)
    end       int32    document offset one past the mention's last character
    text      string   the mention text, equal to the document text [start:end]
    label     string   entity type, e.g. "Disease"
    score     float32  model confidence in [0, 1]
    model     string   name of the model that tagged the document

A document with no mention still gets exactly one row, in which ``passage``, ``sentence``, ``start``,
``end``, ``text``, ``label`` and ``score`` are null; counting distinct ``doc_id`` therefore counts the
documents processed. ``sentence`` is also null for a mention whose sentence is unknown. A run with no
document writes a valid file with this schema and zero rows.

pandas turns an integer column with a null into float64, which would make ``start`` and ``end`` inexact
past 2**53 and print as ``12.0``. The file therefore carries the metadata pandas itself writes for a
nullable ``Int32`` column (:data:`PANDAS_METADATA`): ``pd.read_parquet`` gives ``sentence``, ``start``
and ``end`` as ``Int32`` (``<NA>`` in the rows without a mention). Other readers ignore it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ..document import Document
from .base import Writer
from .escape import unicode_safe

#: The integer columns that are null in the row of a document without a mention.
NULLABLE_INTEGER_COLUMNS = ("sentence", "start", "end")

#: What pandas writes for a DataFrame whose NULLABLE_INTEGER_COLUMNS have its nullable ``Int32`` dtype,
#: and reads back to give those columns that dtype instead of float64 (pyarrow's ``to_pandas`` honours
#: it; columns it does not list are converted as usual). Checked against pandas 2.2 and 3.1.
PANDAS_METADATA = {
    "index_columns": [],
    "column_indexes": [],
    "columns": [{"name": name, "field_name": name, "pandas_type": "int32", "numpy_type": "Int32",
                 "metadata": None} for name in NULLABLE_INTEGER_COLUMNS],
    "creator": {"library": "mambaner", "version": "1"},
    "pandas_version": "2.2.3",
}

SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("source", pa.string()),
    ("passage", pa.string()),
    ("sentence", pa.int32()),
    ("start", pa.int32()),
    ("end", pa.int32()),
    ("text", pa.string()),
    ("label", pa.string()),
    ("score", pa.float32()),
    ("model", pa.string()),
], metadata={b"pandas": json.dumps(PANDAS_METADATA).encode("utf-8")})


class _Sink:
    """What pyarrow writes to: the caller's stream, until the writer is discarded.

    pyarrow's writer writes its footer when it is closed or garbage collected; after a failed run the
    caller has already closed (and deleted) the temporary file, and that late footer would be an
    "Exception ignored … write to closed file" traceback, or garbage at the end of standard output.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.position = 0
        self.discarded = False

    @property
    def closed(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:  # counted here: a pipe cannot tell
        return self.position

    def write(self, data: Any) -> int:
        if self.discarded:
            return len(data)
        written = self.stream.write(data)
        self.position += len(data)
        return written if written is not None else len(data)

    def flush(self) -> None:
        if not self.discarded:
            self.stream.flush()


class ParquetWriter(Writer):
    name = "parquet"

    def __init__(self, stream: BinaryIO, *, model: str = "", source: str = "mambaner",
                 row_group_rows: int = 10_000, compression: str = "snappy") -> None:
        super().__init__(stream, model=model, source=source)
        if row_group_rows < 1:
            raise ValueError("row_group_rows must be at least 1")
        self.row_group_rows = row_group_rows
        self._columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        # Opened now, not at the first document, so that an empty run still gets a valid file.
        self._sink = _Sink(stream)
        self._writer = pq.ParquetWriter(self._sink, SCHEMA, compression=compression)

    def _write_document(self, doc: Document) -> None:
        columns = self._columns
        doc_id = unicode_safe(doc.id)
        source = unicode_safe(doc.source)
        model = unicode_safe(self.model)
        wrote = False
        for passage in doc.passages:
            for span in passage.annotations:
                columns["doc_id"].append(doc_id)
                columns["source"].append(source)
                columns["passage"].append(passage.type)
                columns["sentence"].append(span.sentence_index if span.sentence_index >= 0 else None)
                columns["start"].append(span.start)
                columns["end"].append(span.end)
                columns["text"].append(unicode_safe(span.text))
                columns["label"].append(span.label)
                columns["score"].append(span.score)
                columns["model"].append(model)
                wrote = True
        if not wrote:
            for name, value in (("doc_id", doc_id), ("source", source), ("model", model)):
                columns[name].append(value)
            for name in ("passage", "sentence", "start", "end", "text", "label", "score"):
                columns[name].append(None)
        if len(columns["doc_id"]) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._columns["doc_id"]:
            return
        table = pa.Table.from_pydict(self._columns, schema=SCHEMA)
        self._writer.write_table(table, row_group_size=max(len(table), 1))
        self._columns = {name: [] for name in SCHEMA.names}

    def _finish(self) -> None:
        self._flush()
        self._writer.close()  # writes the footer; leaves the caller's stream open

    def discard(self) -> None:
        """Give up the file (the run failed or was interrupted): nothing more reaches the stream, and
        pyarrow's writer is finished now, into nothing, rather than at garbage collection."""
        self._closed = True
        self._sink.discarded = True
        with contextlib.suppress(Exception):
            self._writer.close()
        self._writer.is_open = False  # even if closing failed: never again, not from __del__
