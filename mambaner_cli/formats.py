"""The one registry of file formats: which names exist, which file names pick them, and where they live.

Every other place that needs a format's name, extensions or help (the readers, the writers, the command
line) reads it here, so adding a format or an extension is one edit. The module imports nothing outside
the standard library: the command line builds its choices and help from it without loading pyarrow,
lxml or torch. A format's implementation (a reader module, a writer class) is imported on first use.

Input formats are picked by file name, and where one extension is shared (``.xml``: PubMed or BioC;
``.txt``: plain text or PubTator) by the first bytes: the reader that claims the extension "by content"
has a ``sniff(head: bytes) -> bool`` and wins when it says yes; otherwise the format that claims it
by name does. Output formats are picked by the longest extension that the output's name ends with.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mambaner_cli.errors import MambanerError

#: gzip is recognized by these first bytes, whatever the file is called.
GZIP_MAGIC = b"\x1f\x8b"
#: A compressed input is named like the uncompressed one plus this suffix (``pubmed25n0001.xml.gz``).
COMPRESSED_SUFFIX = ".gz"
#: Standard input is read as this format unless --input-format says otherwise.
STDIN_FORMAT = "text"
#: Standard output is written as this format unless --format says otherwise.
STDOUT_FORMAT = "jsonl"
#: How much of an input sniffing looks at: enough for an XML declaration, a DOCTYPE and the root tag.
SNIFF_BYTES = 2048


@dataclass(frozen=True)
class FileFormat:
    """One input or output format.

    ``extensions`` are the file-name endings that may pick the format, most specific first (also the
    order the help shows). Those also in ``sniffed_extensions`` pick it only when its implementation's
    ``sniff(head)`` accepts the file's first bytes; every such extension must have another format that
    claims it by name, to fall back on.
    """

    name: str
    extensions: tuple[str, ...]
    help: str
    module: str  # imported on first use, so that the registry stays light
    attribute: str | None = None  # a class in ``module`` (writers); None: the module itself (readers)
    sniffed_extensions: tuple[str, ...] = ()

    @property
    def named_extensions(self) -> tuple[str, ...]:
        """The extensions that pick this format by name alone."""
        return tuple(extension for extension in self.extensions if extension not in self.sniffed_extensions)

    def load(self) -> Any:
        """The implementation: the reader module or the writer class (imported now if it was not yet)."""
        module = importlib.import_module(self.module)
        return getattr(module, self.attribute) if self.attribute else module


def _by_name(*formats: FileFormat) -> Mapping[str, FileFormat]:
    """Formats by name, in the order given (choices and help list them so), read-only: a format is
    added here or nowhere."""
    return MappingProxyType({fmt.name: fmt for fmt in formats})


INPUT_FORMATS: Mapping[str, FileFormat] = _by_name(
    FileFormat(name="pubmed", extensions=(".xml",),
               help="PubMed XML (a PubmedArticleSet), as efetch and the annual baseline give it",
               module="mambaner_cli.readers.pubmed_xml"),
    FileFormat(name="text", extensions=(".txt",),
               help="plain UTF-8 text, a document per file (per line with --lines)",
               module="mambaner_cli.readers.text"),
    # corpora ship PubTator as plain .txt (e.g. NCBItestset_corpus.txt): for .txt the first line decides
    FileFormat(name="pubtator", extensions=(".pubtator", ".pubtator.txt", ".txt"), sniffed_extensions=(".txt",),
               help="PubTator (PMID|t|title, PMID|a|abstract)",
               module="mambaner_cli.readers.pubtator"),
    # PubTator Central ships BioC as plain .xml, PubMed's extension: for .xml the root element decides
    FileFormat(name="bioc", extensions=(".bioc.xml", ".xml"), sniffed_extensions=(".xml",),
               help="BioC XML (a <collection> root)",
               module="mambaner_cli.readers.bioc"),
)

OUTPUT_FORMATS: Mapping[str, FileFormat] = _by_name(
    FileFormat(name="parquet", extensions=(".parquet",),
               help="one row per mention (a document without any: one row of nulls)",
               module="mambaner_cli.writers.parquet", attribute="ParquetWriter"),
    FileFormat(name="conll", extensions=(".conll", ".tsv"),
               help="token<TAB>IOB2 tag lines, a blank line after each sentence",
               module="mambaner_cli.writers.conll", attribute="ConllWriter"),
    FileFormat(name="bioc", extensions=(".bioc.xml", ".xml", ".bioc"),
               help="BioC XML, valid against the BioC DTD",
               module="mambaner_cli.writers.bioc", attribute="BiocWriter"),
    FileFormat(name="jsonl", extensions=(".jsonl", ".json"),
               help="one JSON object per document: text, passages, mentions",
               module="mambaner_cli.writers.jsonl", attribute="JsonlWriter"),
    FileFormat(name="pubtator", extensions=(".pubtator", ".txt"),
               help="id|t|title, id|a|abstract, a tab-separated line per mention",
               module="mambaner_cli.writers.pubtator", attribute="PubtatorWriter"),
)

#: What directory expansion keeps (after dropping ``.gz``): every ending that some input format claims.
INPUT_EXTENSIONS: tuple[str, ...] = tuple(dict.fromkeys(
    extension for fmt in INPUT_FORMATS.values() for extension in fmt.extensions))


class Implementations(Mapping[str, Any]):
    """A read-only ``name → implementation`` view of a registry that imports each one on first access.

    ``readers.READERS`` and ``writers.WRITERS`` are such views: code that iterates over the names (help,
    error messages) never imports pyarrow or lxml; only the format actually used is loaded.
    """

    def __init__(self, formats: Mapping[str, FileFormat]) -> None:
        self._formats = formats

    def __getitem__(self, name: str) -> Any:
        return self._formats[name].load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._formats)

    def __len__(self) -> int:
        return len(self._formats)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._formats)})"


def is_input_file(name: str) -> bool:
    """Whether directory expansion keeps a file of this name: some input format claims its extension."""
    return name.lower().removesuffix(COMPRESSED_SUFFIX).endswith(INPUT_EXTENSIONS)


def detect_input_format(path: str, head: bytes | None = None) -> str:
    """The input format of ``path``: from its name (``.gz`` ignored), and from its first bytes where the
    name is ambiguous (``.xml``, ``.txt``). ``head`` spares reading them again when the caller has them;
    a file that cannot be read is taken by its name (reading it reports the problem).
    """
    name = Path(path).name.lower().removesuffix(COMPRESSED_SUFFIX)
    matches = [extension for extension in INPUT_EXTENSIONS if name.endswith(extension)]
    if not matches:
        raise MambanerError(f"{path}: cannot tell the input format from the file name; "
                            f"use --input-format ({'|'.join(INPUT_FORMATS)})")
    extension = max(matches, key=len)  # ".bioc.xml" says more than ".xml"
    claimants = [fmt for fmt in INPUT_FORMATS.values() if extension in fmt.extensions]
    for fmt in claimants:
        if extension in fmt.sniffed_extensions:
            head = read_head(path) if head is None else head
            if fmt.load().sniff(head):
                return fmt.name
    return next(fmt.name for fmt in claimants if extension in fmt.named_extensions)


#: The root element that marks each XML input format: what a nameless input (stdin) is recognized by.
XML_ROOTS: Mapping[str, str] = MappingProxyType({"PubmedArticleSet": "pubmed", "collection": "bioc"})

# byte-order marks, UTF-32 first (its little-endian mark begins with UTF-16's); readers.text decodes by them
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# what may come before the root element: space, the XML declaration and other processing instructions,
# comments, a DOCTYPE (with an internal subset in brackets)
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.DOTALL)
_ROOT_TAG = re.compile(rb"<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)[\s/>]")


def sniffable(head: bytes) -> bytes:
    """``head`` as the sniffers read it: without a byte-order mark, and re-encoded as UTF-8 when the mark
    says UTF-16 or UTF-32 (whose ASCII characters are not ASCII bytes), so that a sniffer's byte patterns
    see through any encoding a mark announces."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            body = head[len(bom):]
            if encoding != "utf-8":
                body = body.decode(encoding, "ignore").encode("utf-8")  # "ignore": a cut at the end of head
            return body
    return head


def xml_root(head: bytes) -> str | None:
    """The local name of the root element that ``head`` (an input's first bytes) opens, None when it does
    not start like XML or the root lies beyond it."""
    head = sniffable(head)
    position = 0
    while match := _PROLOG_ITEM.match(head, position):
        position = match.end()
    root = _ROOT_TAG.match(head, position)
    return root[2].decode("ascii") if root else None


def detect_stream_format(head: bytes) -> str:
    """The input format of a nameless input (standard input) from its first bytes (:data:`SNIFF_BYTES`,
    gunzipped): an XML root of :data:`XML_ROOTS` picks its format, then every reader that sniffs by content
    is asked; plain text (:data:`STDIN_FORMAT`) when none claims it."""
    root = xml_root(head)
    if root in XML_ROOTS:
        return XML_ROOTS[root]
    if root is None:  # XML formats are told by their root above; the others' sniffers need no lxml
        for fmt in INPUT_FORMATS.values():
            if fmt.sniffed_extensions and fmt.name not in XML_ROOTS.values() and fmt.load().sniff(head):
                return fmt.name
    return STDIN_FORMAT


def detect_output_format(path: str) -> str:
    """The output format of ``path`` from its extension, the longest that matches (``.bioc.xml`` before
    ``.xml``); ``-``, standard output, gives :data:`STDOUT_FORMAT`.

    Raises :class:`MambanerError` when no format claims the extension.
    """
    if path == "-":
        return STDOUT_FORMAT
    name = os.path.basename(path).lower()
    claims = sorted(((extension, fmt.name) for fmt in OUTPUT_FORMATS.values() for extension in fmt.extensions),
                    key=lambda claim: -len(claim[0]))
    for extension, fmt_name in claims:
        if name.endswith(extension) and len(name) > len(extension):  # ".parquet" alone is not a file name
            return fmt_name
    known = ", ".join(f"{fmt.name} ({' '.join(fmt.extensions)})" for fmt in OUTPUT_FORMATS.values())
    raise MambanerError(
        f"cannot tell the output format of '{path}' from its extension; pass --format with one of: {known}")


def read_head(path: str, size: int = SNIFF_BYTES) -> bytes:
    """The first ``size`` bytes of a file, decompressed when it is gzip (whatever its name); nothing when
    it cannot be read, so that detection falls back on the name and reading reports the real problem."""
    try:
        with open(path, "rb") as raw:
            if raw.peek(len(GZIP_MAGIC))[:len(GZIP_MAGIC)] != GZIP_MAGIC:  # peek: a pipe cannot seek back
                return raw.read(size)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                return unzipped.read(size)
    except (OSError, EOFError, zlib.error):
        return b""
