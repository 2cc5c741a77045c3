"""A bounded, seeded fuzz of every reader through :func:`iter_documents` (issue 13).

Small valid inputs of each format (written here) are mutated by a seeded loop: byte flips, truncations,
deleted and duplicated spans, insertions of ``<``, ``&``, NUL, undecodable bytes, byte-order marks, huge and
negative numbers, entity declarations and deep nesting. A few thousand runs, about a second or two. For each
mutated input these properties must hold:

1. no exception escapes ``iter_documents``, and every item is a Document or a ReadError naming the input;
2. every Document is sound: its passages in order without overlap at non-negative offsets, every
   annotation (``keep_annotations=True``) equal to the document text at its offsets, its text at most
   twice the input plus 1 kB (an offset cannot blow a small input up) and writable as UTF-8;
3. no record silently vanishes: every record of the seed whose bytes survive the mutation intact (framed
   by their line ends for the line formats; and not behind a new UTF-16 byte-order mark, which changes the
   decoding of everything) is accounted for by a Document with its id or a ReadError naming
   its id, or, for XML, where the parser must give up on the rest of a file, by a file-level ReadError.
   For the line formats a file-level error is no excuse: an intact PubTator record is yielded or named,
   and an intact line of ``--lines`` text is yielded as a document with exactly its text.
"""

from __future__ import annotations

import codecs
import io
import random
import re
from collections.abc import Callable

import pytest

from mambaner_cli.document import Document
from mambaner_cli.errors import ReadError
from mambaner_cli.readers import iter_documents

SEED = 20240613
RUNS = 1000  # per seed input: a few seconds in all


def pubmed_seed() -> tuple[bytes, list[tuple[str, bytes]]]:
    records = [(pmid, (f"<PubmedArticle>\n<MedlineCitation Status='MEDLINE'><PMID Version='1'>{pmid}</PMID>\n"
                       f"<Article><ArticleTitle>{title}</ArticleTitle><Abstract>"
                       f"<AbstractText Label='BACKGROUND'>{abstract}</AbstractText>"
                       "<AbstractText>Fever &amp; rash <i>in</i> 12 of 40.</AbstractText></Abstract></Article>\n"
                       "</MedlineCitation>\n</PubmedArticle>\n").encode())
               for pmid, title, abstract in [("31000001", "Gout and café-au-lait spots.", "Uric acid."),
                                             ("31000002", "Asthma in children.", "Wheeze &lt; 3 years."),
                                             ("31000003", "Crohn disease.", "Ileitis.")]]
    data = (b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle'
            b'//EN" "pubmed.dtd">\n<PubmedArticleSet>\n' + b"".join(record for _, record in records)
            + b"<DeleteCitation><PMID Version='1'>1</PMID></DeleteCitation>\n</PubmedArticleSet>\n")
    return data, records


def bioc_seed() -> tuple[bytes, list[tuple[str, bytes]]]:
    def document(doc_id: str, title: str, abstract: str, mention: str) -> bytes:
        start = len(title) + 1 + abstract.index(mention)
        return (f"<document><id>{doc_id}</id><infon key='journal'>J</infon>\n"
                f"<passage><infon key='type'>title</infon><offset>0</offset><text>{title}</text></passage>\n"
                f"<passage><infon key='type'>abstract</infon><offset>{len(title) + 1}</offset><text>{abstract}</text>"
                f"<annotation id='A{doc_id}'><infon key='type'>Disease</infon><location offset='{start}' "
                f"length='{len(mention)}'/><text>{mention}</text></annotation></passage>\n"
                "<passage><offset>200</offset><sentence><offset>200</offset><text>One.</text></sentence>"
                "<sentence><offset>205</offset><text>Two.</text></sentence></passage>\n</document>\n").encode()

    records = [("d1", document("d1", "Marfan syndrome.", "Aortic dissection is common.", "Aortic dissection")),
               ("d2", document("d2", "Lupus.", "Nephritis in lupus.", "Nephritis")),
               ("d3", document("d3", "Gout.", "Tophi and gout.", "gout"))]
    data = (b"<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n<collection>"
            b"<source>fuzz</source><date>20240613</date><key>k</key>\n" + b"".join(r for _, r in records)
            + b"</collection>\n")
    return data, records


def pubtator_seed() -> tuple[bytes, list[tuple[str, bytes]]]:
    records = [("41000001", (b"41000001|t|Fabry disease and renal failure.\n41000001|a|Fabry disease is rare.\n"
                             b"41000001\t0\t13\tFabry disease\tDisease\tD000795\n"
                             b"41000001\t18\t31\trenal failure\tDisease\tD051437\n"
                             b"41000001\tCID\tD000001\tD000795")),
               ("41000002", (b"41000002|t|Gout.\n41000002|a|Caf\xc3\xa9 and gout.\n"
                             b"41000002\t14\t18\tgout\tDisease\tD006073\n"
                             b"41000002\tAssociation\t672\tD006073\tNovel")),
               ("41000003", b"41000003|t|Asthma.\n41000003\t0\t6\tAsthma\tDisease")]
    return b"\n\n".join(record for _, record in records) + b"\n", records


def text_seed() -> tuple[bytes, list[tuple[str, bytes]]]:
    lines = [b"Cystic fibrosis and asthma.", b"Caf\xc3\xa9-au-lait spots in NF1.", b"  indented line",
             b"last line"]
    return b"\n".join(lines) + b"\n", [(line.decode(), line) for line in lines]


INSERTIONS = [b"<", b"&", b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\xff\xfe", b"]]>", b"&#0;", b"&#xD800;",
              b"&lol;", b"\t", b"|", b"|t|", b"\n", b"\n\n", b"99999999999999999999999", b"-1", b"1e308",
              b"<a>" * 300, b"<x>" * 40 + b"</x>" * 40, b'<!ENTITY e SYSTEM "file:///etc/passwd">', b"&e;"]
NUMBER = re.compile(rb"\d+")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three random mutations of ``data``."""
    for _ in range(rng.randint(1, 3)):
        if not data:
            return data
        kind = rng.randrange(7)
        at = rng.randrange(len(data))
        if kind == 0:  # flip a byte
            data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
        elif kind == 1:  # truncate
            data = data[:at]
        elif kind == 2:  # insert something hostile
            data = data[:at] + rng.choice(INSERTIONS) + data[at:]
        elif kind == 3:  # delete a span
            data = data[:at] + data[at + rng.randint(1, 40):]
        elif kind == 4:  # duplicate a span
            end = at + rng.randint(1, 80)
            data = data[:end] + data[at:end] + data[end:]
        elif kind == 5:  # replace a number with a huge or negative one
            numbers = list(NUMBER.finditer(data))
            if numbers:
                number = rng.choice(numbers)
                data = data[:number.start()] + rng.choice([b"10" * 12, b"-100", b"2200000000", b"100000000",
                                                           b"0"]) + data[number.end():]
        else:  # swap two bytes
            other = rng.randrange(len(data))
            chars = bytearray(data)
            chars[at], chars[other] = chars[other], chars[at]
            data = bytes(chars)
    return data


def check(data: bytes, fmt: str, records: list[tuple[str, bytes]], errors: str, lines: bool,
          intact: Callable[[bytes, bytes], bool]) -> None:
    items = list(iter_documents(["-"], fmt, lines=lines, stdin=io.BytesIO(data), keep_annotations=True,
                                errors=errors))
    assert all(isinstance(item, (Document, ReadError)) for item in items)
    assert all(item.source == "<stdin>" for item in items)
    docs = [item for item in items if isinstance(item, Document)]
    for doc in docs:
        text = doc.text
        assert len(text) <= 2 * len(data) + 1024
        text.encode("utf-8")  # no lone surrogate (from an undecodable byte) that no writer could write
        end = 0
        for passage in doc.passages:
            assert passage.offset >= end
            end = passage.end
        for span in doc.annotations:
            assert 0 <= span.start < span.end <= len(text) and span.text == text[span.start:span.end]
    named = {item.doc_id for item in items if isinstance(item, ReadError) and not item.warning}
    file_error = any(isinstance(item, ReadError) and item.doc_id is None and not item.warning for item in items)
    yielded = {doc.id for doc in docs}
    texts = {doc.text for doc in docs}
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return  # a UTF-16 mark now decides the encoding of the whole input: no record is intact
    for record_id, record in records:
        if not intact(data, record):
            continue
        if lines:  # text: the line, exactly
            assert record_id in texts, (record_id, data)
        elif fmt == "pubtator":
            assert record_id in yielded | named, (record_id, data)
        else:  # XML: libxml2 may have to give up on the rest of the file, but says so
            assert record_id in yielded | named or file_error, (record_id, data)


def framed(data: bytes, record: bytes) -> bool:
    """A line-format record is intact when it still stands on lines of its own."""
    return (b"\n" + record + b"\n") in (b"\n" + data)


SEEDS = {
    "pubmed": (pubmed_seed, False, lambda data, record: record in data),
    "bioc": (bioc_seed, False, lambda data, record: record in data),
    "pubtator": (pubtator_seed, False, framed),
    "text": (text_seed, True, framed),
}


@pytest.mark.parametrize("fmt", list(SEEDS))
def test_fuzz_reader(fmt):
    seed_input, lines, intact = SEEDS[fmt]
    data, records = seed_input()
    check(data, fmt, records, "strict", lines, intact)  # the seed itself is fine …
    assert all(intact(data, record) for _, record in records)
    rng = random.Random(f"{SEED}-{fmt}")
    for run in range(RUNS):
        mutated = mutate(data, rng)
        check(mutated, fmt, records, "replace" if run % 4 == 3 else "strict", lines, intact)


def test_fuzz_stdin_sniffing():
    """Without --input-format, stdin is sniffed: whatever the mutation makes of it, nothing escapes."""
    rng = random.Random(f"{SEED}-sniff")
    seeds = [seed()[0] for seed, _, _ in SEEDS.values()]
    for _ in range(RUNS):
        data = mutate(rng.choice(seeds), rng)
        for item in iter_documents(["-"], stdin=io.BytesIO(data), keep_annotations=True):
            assert isinstance(item, (Document, ReadError))
            if isinstance(item, Document):
                assert all(span.text == item.text[span.start:span.end] for span in item.annotations)
