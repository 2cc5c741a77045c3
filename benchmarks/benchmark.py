"""Throughput and memory on a CPU: the default tagger against BERT-base (BioBERT's shape) and Mamba-130M.

    python -m benchmarks.benchmark                # 500 BC5CDR test abstracts, 3 models, lengths 128…4096
    python -m benchmarks.benchmark --quick        # 50 abstracts, lengths 128…1024, 1 repeat

(The full run took 12 minutes on an idle 2-core AMD EPYC, --quick about 3. --big-xml 1G took 30 minutes,
one thread, another job on the other core: 127,084 full records (124 a MiB), 70.5 articles/s, peak 521 MB.)
    python -m benchmarks.benchmark --models default --docs 0 --lengths '' --big-xml 1G   # flat memory

Table 1 (throughput). Every model tags the same documents, the BC5CDR test abstracts (PubTator, via
$MAMBANER_DATA or ../shared/data), through the pipeline `mambaner tag` runs: reader → sentence splitter
and tokenizer → length-bucketed batches → spans → Parquet writer (a temporary file). Each model runs in
a subprocess of its own, so its peak RSS (ru_maxrss, read when its tagging run ends) is its own. Model
loading and one warm-up sentence are outside the timed run; the load time is shown apart.

Models:

* default — the embedded default tagger, ``load_tagger("default")``, as shipped.
* bert — a BERT-base token classifier with BioBERT's shape: transformers' BertForTokenClassification
  from a BertConfig (12 layers, hidden 768, 12 heads, intermediate 3072, vocabulary 28,996), random
  weights (speed does not depend on them), 3 labels; [CLS] + at most 510 subwords + [SEP] per sequence.
* mamba130m — a Mamba-130M-shaped model: our Mamba block's stack (``MambaStack``: transformers'
  MambaModel's parameters, hidden 768, 24 layers, vocabulary 50,280, state 16), random weights, run by its
  inference path (``MambaStack.infer``, as tagging a fine-tuned model does) and a linear head, read left
  to right once (as a fine-tuned causal tagger is); at most 512 subwords per sequence.

Subwords: there is no tokenizer to download. Each word becomes 1 + (len > 6) + (len > 10) pieces whose
ids are hashed from the word (deterministic): 1.38 pieces per word on the BC5CDR test abstracts, within
the 1.3-1.5 pieces per word that BioBERT's cased WordPiece vocabulary gives on PubMed text (an
assumption, not a measurement of BioBERT's tokenizer). Both subword models get the same pieces; a word
is tagged at its first piece; sentences longer than a sequence are tagged in overlapping windows.

Table 2 (cost against length). One forward pass of each network (batch 1, no gradient, no decoding) at
each --lengths: the best time of --repeats, and the peak RSS during those passes (VmHWM, reset before
each length) with its increase over the RSS just before (+Δ). The default model's positions are words,
the others' subwords. BERT-base has 512 position embeddings: for longer lengths its config gets
max_position_embeddings = the longest length asked for (a model that could not read them as trained;
only the cost is measured).

--big-xml SIZES: builds PubMed XML files of those sizes (e.g. 25M,50M,100M; K/M/G are binary) from the
BC5CDR and NCBI-disease abstracts with fresh PMIDs, in a temporary folder, runs `mambaner tag FILE -o
OUT.parquet -q` on each in a subprocess, and reports its peak RSS (ru_maxrss of the child) and whether
every PMID is in the Parquet output; flat memory means the same peak RSS at every size.

Timings on a shared machine are noisy: the load average is printed at the start and the end. Threads:
--threads sets torch's intra-op threads in every subprocess (0: one per physical core, as `mambaner tag`
does), and --omp-wait the OpenMP wait policy they run with (passive, as `mambaner tag` sets it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
MODELS = ("default", "bert", "mamba130m")
REFERENCE = "bert"  # the ratios are to this model
LENGTHS = (128, 256, 512, 1024, 2048, 4096)
QUICK_LENGTHS = (128, 256, 512, 1024)
LABELS = ("O", "B-Disease", "I-Disease")

BERT_BASE = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 28996}
MAMBA_130M = {"hidden_size": 768, "num_layers": 24, "vocab_size": 50280, "state_size": 16}  # BackboneConfig
# --tiny (tests): the same code paths at toy sizes
TINY_BERT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
             "vocab_size": 1000}
TINY_MAMBA = {"hidden_size": 32, "num_layers": 2, "vocab_size": 1000, "state_size": 4}
BERT_MAX_SUBWORDS = 510  # 512 positions, less [CLS] and [SEP]
MAMBA_MAX_SUBWORDS = 512
CLS_ID, SEP_ID, PAD_ID = 101, 102, 0  # BERT's; the ids of hashed pieces avoid 0..999

THROUGHPUT_HEADER = "Table 1: tagging throughput"
LENGTHS_HEADER = "Table 2: one forward pass (batch 1) against sequence length"
BIG_XML_HEADER = "Table 3: mambaner tag on generated PubMed XML"


# ---------------------------------------------------------------------------------------------- subwords

def piece_count(word: str) -> int:
    """Subword pieces of a word: 1, 2 for more than 6 characters, 3 for more than 10 (see the module doc)."""
    return 1 + (len(word) > 6) + (len(word) > 10)


def piece_ids(word: str, vocab_size: int) -> list[int]:
    """Deterministic ids for the pieces of a word (crc32 of the word and the piece's index)."""
    low = 1000 if vocab_size > 2000 else 1  # keep clear of BERT's special ids
    return [low + zlib.crc32(f"{k}\t{word}".encode()) % (vocab_size - low) for k in range(piece_count(word))]


class PieceTagger:
    """The SentenceTagger protocol (runtime.pipeline) for a subword network with random weights.

    words → hashed pieces → windows of at most ``window`` pieces (overlapping, as the default tagger's) →
    batches sorted by length → network → each word's tag at its first piece.
    """

    def __init__(self, name: str, network: Callable[[Any, Any], Any], vocab_size: int, window: int,
                 cls_sep: bool) -> None:
        self.name = name
        self.network = network  # (ids [b, l], mask [b, l]) → logits [b, l, labels]
        self.vocab_size = vocab_size
        self.window = window
        self.cls_sep = cls_sep
        self.words = 0
        self.subwords = 0

    @property
    def label(self) -> str:
        return self.name

    def tag(self, sentences: list[list[str]], batch_size: int = 32) -> list[tuple[list[str], list[float]]]:
        import torch

        from mambaner_cli.runtime.sentence_tagger import windows
        from mambaner_cli.runtime.spans import repair_iob

        encoded, firsts = [], []
        for words in sentences:
            ids, first = [], []
            for word in words:
                first.append(len(ids))
                ids.extend(piece_ids(word, self.vocab_size))
            encoded.append(ids)
            firsts.append(first)
            self.words += len(words)
            self.subwords += len(ids)
        pieces = [(s, *w) for s, ids in enumerate(encoded) for w in windows(len(ids), self.window) if ids]
        pieces.sort(key=lambda piece: piece[2] - piece[1])
        labels = [[0] * len(ids) for ids in encoded]
        probabilities = [[1.0] * len(ids) for ids in encoded]
        offset = 1 if self.cls_sep else 0
        with torch.inference_mode():
            for first in range(0, len(pieces), batch_size):
                batch = pieces[first:first + batch_size]
                rows = [encoded[s][start:end] for s, start, end, _, _ in batch]
                if self.cls_sep:
                    rows = [[CLS_ID, *row, SEP_ID] for row in rows]
                width = max(len(row) for row in rows)
                ids = torch.tensor([row + [PAD_ID] * (width - len(row)) for row in rows])  # b l
                mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])  # b l
                best, chosen = self.network(ids, mask).float().softmax(-1).max(-1)  # b l, b l
                best, chosen = best.tolist(), chosen.tolist()
                for row, (s, start, _, keep_start, keep_end) in enumerate(batch):
                    span = range(keep_start - start + offset, keep_end - start + offset)
                    labels[s][keep_start:keep_end] = [chosen[row][i] for i in span]
                    probabilities[s][keep_start:keep_end] = [best[row][i] for i in span]
        return [(repair_iob([LABELS[labels[s][i]] for i in first]), [probabilities[s][i] for i in first])
                for s, first in enumerate(firsts)]


# ------------------------------------------------------------------------------------------------ models

def bert_network(tiny: bool, max_positions: int = 512):
    """(module, forward(ids, mask) → logits) of a randomly initialised BERT token classifier."""
    from transformers import BertConfig, BertForTokenClassification

    config = BertConfig(**(TINY_BERT if tiny else BERT_BASE), max_position_embeddings=max(512, max_positions),
                        num_labels=len(LABELS))
    model = BertForTokenClassification(config).eval()
    return model, lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits


def mamba_network(tiny: bool):
    """(module, forward(ids, mask) → logits) of a randomly initialised Mamba-130M with a linear head."""
    from torch import nn

    from mambaner_cli.model.modules.block import BackboneConfig, MambaStack

    config = BackboneConfig(**(TINY_MAMBA if tiny else MAMBA_130M))
    model = nn.ModuleDict({"backbone": MambaStack(config),
                           "head": nn.Linear(config.hidden_size, len(LABELS))}).eval()

    def forward(ids, mask):
        backbone = model["backbone"]
        states = backbone.infer(backbone.embed(ids), mask)  # b l h
        return model["head"](states)

    return model, forward


def build_tagger(name: str, tiny: bool):
    """The SentenceTagger for a model of MODELS, and its torch module."""
    if name == "default":
        from mambaner_cli.runtime.load import load_tagger

        tagger = load_tagger("default", device="cpu")
        return tagger, tagger.model
    if name == "bert":
        module, forward = bert_network(tiny)
        vocab = (TINY_BERT if tiny else BERT_BASE)["vocab_size"]
        return PieceTagger("bert-base", forward, vocab, BERT_MAX_SUBWORDS, cls_sep=True), module
    if name == "mamba130m":
        module, forward = mamba_network(tiny)
        vocab = (TINY_MAMBA if tiny else MAMBA_130M)["vocab_size"]
        return PieceTagger("mamba-130m", forward, vocab, MAMBA_MAX_SUBWORDS, cls_sep=False), module
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


# ---------------------------------------------------------------------------------------- data, machine

def data_dir(given: str | None) -> Path:
    """--data-dir, else $MAMBANER_DATA, else ../shared/data beside the repository."""
    from mambaner_cli.corpora import DATA_ENV

    for candidate in (given, os.environ.get(DATA_ENV), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "bc5cdr").is_dir():
            return Path(candidate)
    from mambaner_cli.errors import MambanerError

    raise MambanerError(f"BC5CDR not found: give --data-dir or set {DATA_ENV} to the folder holding bc5cdr/.")


def corpus_documents(path: Path, limit: int | None = None) -> Iterator[Any]:
    """Documents of a PubTator file, in order (at most ``limit``)."""
    from mambaner_cli.errors import ReadError
    from mambaner_cli.readers import pubtator

    with open(path, "rb") as stream:
        for count, item in enumerate(pubtator.read(stream, str(path))):
            if limit is not None and count >= limit:
                return
            if not isinstance(item, ReadError):
                yield item


def rss_mb() -> float:
    """Current resident set size (Linux; 0 where /proc is missing)."""
    return _proc_status("VmRSS")


def _proc_status(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """Peak RSS of this process since it started or since ``reset_peak_rss`` (ru_maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM and ru_maxrss) to the current RSS; Linux >= 4.0 only."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------------------------- workers

def throughput(name: str, args: argparse.Namespace) -> dict:
    """Tag the documents through the whole pipeline into a Parquet file; rates and peak RSS."""
    import pyarrow.parquet as pq
    import torch

    from mambaner_cli.runtime.run import tag_to_file

    started = time.perf_counter()
    tagger, module = build_tagger(name, args.tiny)
    load_seconds = time.perf_counter() - started
    tagger.tag([["Warm", "-", "up", "of", "the", "model", "."]], batch_size=args.batch_size)
    if isinstance(tagger, PieceTagger):
        tagger.words = tagger.subwords = 0
    source = data_dir(args.data_dir) / "bc5cdr" / "CDR_TestSet.PubTator.txt"
    with tempfile.TemporaryDirectory(prefix="mambaner-bench-") as folder:
        output = Path(folder) / "out.parquet"
        started = time.perf_counter()
        summary = tag_to_file(corpus_documents(source, args.docs), tagger, str(output), "parquet",
                              batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        peak = peak_rss_mb()
        distinct = len(set(pq.read_table(output, columns=["doc_id"]).column("doc_id").to_pylist()))
    result = {"model": name, "name": tagger.name, "parameters": sum(p.numel() for p in module.parameters()),
              "documents": summary.documents, "sentences": summary.sentences, "tokens": summary.tokens,
              "mentions": summary.mentions, "seconds": seconds, "load_seconds": load_seconds,
              "peak_rss_mb": peak, "documents_in_output": distinct, "threads": torch.get_num_threads()}
    if isinstance(tagger, PieceTagger):
        result["subwords"] = tagger.subwords
        result["subwords_per_word"] = tagger.subwords / max(tagger.words, 1)
    if name == "bert":
        result["attention"] = getattr(module.config, "_attn_implementation", None)
    return result


def length_inputs(name: str, length: int, words: list[str], tagger: Any, vocab_size: int = 0) -> dict:
    """Network inputs of one sequence of ``length`` positions."""
    import torch

    if name == "default":
        tokens = (words * (length // max(len(words), 1) + 1))[:length]
        # every input the network reads (lexicon matches, variant patterns), as tagging builds them
        return tagger.encode([tokens], *tagger.input_codes([tokens]))
    generator = torch.Generator().manual_seed(length)
    ids = torch.randint(vocab_size // 2, vocab_size, (1, length), generator=generator)
    return {"ids": ids, "mask": torch.ones_like(ids)}


def lengths_sweep(name: str, args: argparse.Namespace) -> list[dict]:
    """Forward time and peak RSS of the bare network at each length (batch 1)."""
    import gc

    import torch

    if not args.lengths:
        return []
    longest = max(args.lengths)
    words: list[str] = []
    vocab_size = 0
    tagger = None
    if name == "default":
        from mambaner_cli.runtime.load import load_tagger
        from mambaner_cli.text.sentences import segment_document

        tagger = load_tagger("default", device="cpu")
        network = tagger.model

        def forward(inputs: dict) -> Any:
            return network(**inputs, infer=True)  # the tagging paths, as decode runs them

        for doc in corpus_documents(data_dir(args.data_dir) / "bc5cdr" / "CDR_TestSet.PubTator.txt"):
            words.extend(token.text for sentence in segment_document(doc).sentences for token in sentence.tokens)
            if len(words) >= longest:
                break
    else:
        module, subword_forward = bert_network(args.tiny, longest) if name == "bert" else mamba_network(args.tiny)
        vocab_size = (module.config if name == "bert" else module["backbone"].config).vocab_size

        def forward(inputs: dict) -> Any:
            return subword_forward(inputs["ids"], inputs["mask"])

    times: dict[int, float] = {}
    with torch.inference_mode():
        forward(length_inputs(name, min(args.lengths), words, tagger, vocab_size))  # one-time initialisation
        for length in args.lengths:  # time first, with the allocator as it is in a tagging run
            inputs = length_inputs(name, length, words, tagger, vocab_size)
            for _ in range(args.repeats):
                started = time.perf_counter()
                forward(inputs)
                times[length] = min(times.get(length, float("inf")), time.perf_counter() - started)
        # Then memory: with big blocks mapped and unmapped one by one (glibc), the RSS falls back after
        # each pass, so the peak above the RSS before a pass is that pass's own working memory.
        exact_release = return_memory_to_os()
        rows = []
        for length in args.lengths:
            inputs = length_inputs(name, length, words, tagger, vocab_size)
            gc.collect()
            return_memory_to_os()
            before = rss_mb()
            exact = reset_peak_rss() and exact_release
            forward(inputs)
            peak = peak_rss_mb()
            rows.append({"model": name, "length": length, "ms": 1000 * times[length], "peak_rss_mb": peak,
                         "delta_mb": max(peak - before, 0.0), "peak_exact": exact})
    return rows


def return_memory_to_os() -> bool:
    """Make glibc map every block over 64 KiB on its own and give free memory back (malloc_trim).

    Only for the memory pass of the length sweep: afterwards freed blocks leave the RSS at once.
    False where this is not glibc (then the increases of table 2 are approximate).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (also stops glibc raising it by itself)
        libc.mallopt(-1, 64 * 1024)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def worker(args: argparse.Namespace) -> int:
    import torch

    from mambaner_cli.runtime.device import set_threads

    set_threads(args.threads)  # as `mambaner tag --threads` does (0: one per physical core)
    result = {"throughput": throughput(args.worker, args) if args.docs else None}
    import gc

    gc.collect()
    result["lengths"] = lengths_sweep(args.worker, args)
    result["torch"] = torch.__version__
    result["threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    return 0


def run_child(command: list[str], env: dict[str, str], sample_every: float = 0.0
              ) -> tuple[int, float, float, list[tuple[float, float]]]:
    """Run a command; its exit code, wall seconds, peak RSS in MB (ru_maxrss of that child alone) and,
    with ``sample_every`` > 0, its RSS in MB every so many seconds as (seconds, MB) pairs (Linux)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env)
    samples: list[tuple[float, float]] = []
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG if sample_every else 0)
        if pid:
            break
        rss = current_rss_mb(process.pid)
        if rss is not None:
            samples.append((time.perf_counter() - started, rss))
        time.sleep(sample_every)
    process.returncode = os.waitstatus_to_exitcode(status)
    scale = 2**20 if sys.platform == "darwin" else 1024
    return process.returncode, time.perf_counter() - started, usage.ru_maxrss / scale, samples


def current_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.omp_wait == "unset":
        env.pop("OMP_WAIT_POLICY", None)
    else:
        env["OMP_WAIT_POLICY"] = args.omp_wait.upper()
    return env


def measure_model(name: str, args: argparse.Namespace, folder: Path) -> dict:
    result_path = folder / f"{name}.json"
    command = [sys.executable, "-m", "benchmarks.benchmark", "--worker", name, "--result", str(result_path),
               "--docs", str(args.docs), "--threads", str(args.threads), "--batch-size", str(args.batch_size),
               "--lengths", ",".join(map(str, args.lengths)), "--repeats", str(args.repeats)]
    command += ["--tiny"] if args.tiny else []
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    code, _, _, _ = run_child(command, child_env(args))  # (its ru_maxrss is reset by the length sweep)
    if code != 0:
        raise SystemExit(f"the {name} benchmark failed (exit status {code}); its error is above")
    return json.loads(result_path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------- big XML

ARTICLE = ('<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>'
           '<Article PubModel="Print"><Journal><Title>Benchmark Journal</Title></Journal>'
           '<ArticleTitle>{title}</ArticleTitle><Abstract><AbstractText>{abstract}</AbstractText></Abstract>'
           '</Article></MedlineCitation></PubmedArticle>\n')
# A record as PubMed serves it: dates, journal, authors with affiliations, publication types, MeSH
# headings, keywords, history and a reference list around the title and abstract (all of it made up
# here except the corpus text). The reader must walk past all of it, and it sets how many articles
# a gigabyte holds: about 8 KB an article instead of the bare record's 1.6 KB.
FULL_ARTICLE = (
    '<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM" IndexingMethod="Automated">'
    '<PMID Version="1">{pmid}</PMID><DateCompleted><Year>2024</Year><Month>03</Month><Day>12</Day>'
    '</DateCompleted><DateRevised><Year>2025</Year><Month>01</Month><Day>07</Day></DateRevised>'
    '<Article PubModel="Print-Electronic"><Journal><ISSN IssnType="Electronic">1234-5678</ISSN>'
    '<JournalIssue CitedMedium="Internet"><Volume>{volume}</Volume><Issue>{issue}</Issue><PubDate><Year>2024'
    '</Year><Month>Mar</Month></PubDate></JournalIssue><Title>Journal of Benchmark Medicine</Title>'
    '<ISOAbbreviation>J Bench Med</ISOAbbreviation></Journal><ArticleTitle>{title}</ArticleTitle>'
    '<Pagination><StartPage>{page}</StartPage><EndPage>{end_page}</EndPage><MedlinePgn>{page}-{end_page}'
    '</MedlinePgn></Pagination><ELocationID EIdType="doi" ValidYN="Y">10.5555/jbm.{pmid}</ELocationID>'
    '<Abstract><AbstractText>{abstract}</AbstractText><CopyrightInformation>Copyright 2024 the authors.'
    '</CopyrightInformation></Abstract><AuthorList CompleteYN="Y">{authors}</AuthorList><Language>eng'
    '</Language><PublicationTypeList><PublicationType UI="D016428">Journal Article</PublicationType>'
    '<PublicationType UI="D013485">Research Support, Non-U.S. Gov\'t</PublicationType></PublicationTypeList>'
    '<ArticleDate DateType="Electronic"><Year>2024</Year><Month>02</Month><Day>01</Day></ArticleDate>'
    '</Article><MedlineJournalInfo><Country>United States</Country><MedlineTA>J Bench Med</MedlineTA>'
    '<NlmUniqueID>101000000</NlmUniqueID><ISSNLinking>1234-5678</ISSNLinking></MedlineJournalInfo>'
    '<CitationSubset>IM</CitationSubset><MeshHeadingList>{mesh}</MeshHeadingList>'
    '<KeywordList Owner="NOTNLM"><Keyword MajorTopicYN="N">benchmark</Keyword><Keyword MajorTopicYN="N">'
    'generated record {pmid}</Keyword></KeywordList></MedlineCitation><PubmedData><History>{history}'
    '</History><PublicationStatus>ppublish</PublicationStatus><ArticleIdList><ArticleId IdType="pubmed">'
    '{pmid}</ArticleId><ArticleId IdType="doi">10.5555/jbm.{pmid}</ArticleId></ArticleIdList>'
    '<ReferenceList>{references}</ReferenceList></PubmedData></PubmedArticle>\n')
AUTHOR_XML = ('<Author ValidYN="Y"><LastName>Author{n}</LastName><ForeName>Given {n}</ForeName><Initials>G</Initials>'
          '<AffiliationInfo><Affiliation>Department of Medicine {n}, Example University Hospital, 1000 Example '
          'Street, Example City {n}, Country.</Affiliation></AffiliationInfo></Author>')
MESH_XML = ('<MeshHeading><DescriptorName UI="D{ui:06d}" MajorTopicYN="N">Descriptor {ui}</DescriptorName>'
        '<QualifierName UI="Q{ui:06d}" MajorTopicYN="Y">qualifier {n}</QualifierName></MeshHeading>')
HISTORY_XML = ('<PubMedPubDate PubStatus="{status}"><Year>2024</Year><Month>{n}</Month><Day>1{n}</Day>'
           '<Hour>0{n}</Hour><Minute>0</Minute></PubMedPubDate>')
CITED_XML = ('<Reference><Citation>Author{n} A, Author{n} B, Author C. A cited study of example number {ui}. '
             'J Example Res. 2019;{n}:101-9.</Citation><ArticleIdList><ArticleId IdType="pubmed">{ui}'
             '</ArticleId></ArticleIdList></Reference>')
RECORDS = ("full", "bare")


def full_article(pmid: int, title: str, abstract: str) -> str:
    """One PubMed record with made-up metadata (6 authors, 10 MeSH headings, 5 references)."""
    return FULL_ARTICLE.format(
        pmid=pmid, title=title, abstract=abstract, volume=pmid % 97, issue=pmid % 12 + 1, page=pmid % 900 + 1,
        end_page=pmid % 900 + 9, authors="".join(AUTHOR_XML.format(n=n) for n in range(1, 7)),
        mesh="".join(MESH_XML.format(ui=(pmid + n) % 999_999, n=n) for n in range(10)),
        history="".join(HISTORY_XML.format(status=status, n=n) for n, status in
                        enumerate(("received", "revised", "accepted", "pubmed", "medline"), 1)),
        references="".join(CITED_XML.format(n=n, ui=(pmid * 7 + n) % 40_000_000) for n in range(5)))


XML_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
            '1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
            '<PubmedArticleSet>\n')
XML_TAIL = "</PubmedArticleSet>\n"
FIRST_PMID = 90_000_000


def parse_size(text: str) -> int:
    """'50M' → 50 MiB in bytes (K, M, G binary; a bare number is bytes)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    number = float(text[:-1] if scale > 1 else text)
    if number <= 0:
        raise ValueError(f"not a positive size: {text!r}")
    return int(number * scale)


def write_big_pubmed_xml(path: Path, size: int, sources: Sequence[Path], first_pmid: int = FIRST_PMID,
                         records: str = "full") -> int:
    """A PubmedArticleSet of at least ``size`` bytes: the sources' abstracts repeated with fresh PMIDs
    (``first_pmid``, +1, …), as ``full`` records (with PubMed's metadata, made up) or ``bare`` ones (PMID,
    journal title, title, abstract). Returns the number of articles."""
    if records not in RECORDS:
        raise ValueError(f"records must be one of {RECORDS}, not {records!r}")
    articles = escaped_articles(sources)
    count = 0
    with open(path, "wb") as out:
        written = out.write(XML_HEAD.encode())
        while written < size:
            title, abstract = articles[count % len(articles)]
            pmid = first_pmid + count
            record = (full_article(pmid, title, abstract) if records == "full"
                      else ARTICLE.format(pmid=pmid, title=title, abstract=abstract))
            written += out.write(record.encode())
            count += 1
        out.write(XML_TAIL.encode())
    return count


def escaped_articles(sources: Sequence[Path]) -> list[tuple[str, str]]:
    """(title, abstract) of every document of the PubTator ``sources``, escaped for XML; an error if none."""
    articles = []
    for source in sources:
        for doc in corpus_documents(source):
            texts = {passage.type: passage.text for passage in doc.passages}
            articles.append((escape(texts.get("title", "")), escape(texts.get("abstract", ""))))
    if not articles:
        raise ValueError("no documents in " + ", ".join(map(str, sources)))
    return articles


def big_xml_sources(root: Path) -> list[Path]:
    names = ["bc5cdr/CDR_TrainingSet.PubTator.txt", "bc5cdr/CDR_DevelopmentSet.PubTator.txt",
             "bc5cdr/CDR_TestSet.PubTator.txt", "ncbi-disease/NCBItrainset_corpus.txt",
             "ncbi-disease/NCBIdevelopset_corpus.txt", "ncbi-disease/NCBItestset_corpus.txt"]
    return [root / name for name in names if (root / name).is_file()]


def big_xml(size: int, args: argparse.Namespace) -> dict:
    """Generate, tag with `mambaner tag` in a subprocess (its RSS sampled as it runs), check the output,
    delete."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="mambaner-bigxml-", dir=args.big_xml_dir) as folder:
        xml, output = Path(folder) / "big.xml", Path(folder) / "out.parquet"
        articles = write_big_pubmed_xml(xml, size, big_xml_sources(data_dir(args.data_dir)),
                                        records=args.big_xml_records)
        file_mb = xml.stat().st_size / 2**20
        command = [sys.executable, "-m", "mambaner_cli", "tag", str(xml), "-o", str(output), "-q",
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        code, seconds, peak, samples = run_child(command, child_env(args), sample_every=2.0)
        ids = set(pq.read_table(output, columns=["doc_id"]).column("doc_id").to_pylist()) if code == 0 else set()
    expected = {str(FIRST_PMID + k) for k in range(articles)}
    # RSS at each quarter of the run: flat memory shows as the same figure from the first quarter on.
    quarters = [max((mb for t, mb in samples if t <= seconds * q / 4), default=0.0) for q in (1, 2, 3, 4)]
    return {"size_mb": file_mb, "records": args.big_xml_records, "articles": articles, "exit_status": code,
            "seconds": seconds, "articles_per_s": articles / seconds, "peak_rss_mb": peak,
            "peak_rss_by_quarter_mb": quarters, "distinct_doc_ids": len(ids),
            "all_pmids_present": ids == expected}


# ------------------------------------------------------------------------------------------------ output

def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(header))]
    lines = ["  ".join(cell.rjust(width) if k else cell.ljust(width) for k, (cell, width) in
                       enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def throughput_table(results: dict[str, dict]) -> str:
    reference = results.get(REFERENCE, {}).get("throughput")
    rows = []
    for name, result in results.items():
        t = result["throughput"]
        if t is None:
            continue
        rate = t["documents"] / t["seconds"]
        ratio = f"{rate / (reference['documents'] / reference['seconds']):.2f}x" if reference else "–"
        memory = f"{t['peak_rss_mb'] / reference['peak_rss_mb']:.2f}x" if reference else "–"
        rows.append([name, f"{t['parameters'] / 1e6:.1f}M", f"{rate:.2f}", f"{t['sentences'] / t['seconds']:.1f}",
                     f"{t['tokens'] / t['seconds']:.0f}", f"{t['subwords_per_word']:.2f}" if "subwords" in t else "–",
                     f"{t['peak_rss_mb']:.0f}", f"{t['load_seconds']:.1f}", ratio, memory])
    return table(["model", "params", "docs/s", "sentences/s", "tokens/s", "subwords/token", "peak RSS MB",
                  "load s", f"docs/s vs {REFERENCE}", f"RSS vs {REFERENCE}"], rows)


def lengths_table(results: dict[str, dict]) -> str:
    names = [name for name, result in results.items() if result["lengths"]]
    by_length: dict[int, dict[str, dict]] = {}
    for name in names:
        for row in results[name]["lengths"]:
            by_length.setdefault(row["length"], {})[name] = row
    header = ["length"]
    for name in names:
        header += [f"{name} ms", f"{name} peak MB (+Δ)"]
    rows = []
    for length in sorted(by_length):
        row: list[object] = [length]
        for name in names:
            cell = by_length[length].get(name)
            exact = "" if cell is None or cell["peak_exact"] else "*"
            row += ["–", "–"] if cell is None else \
                [f"{cell['ms']:.1f}", f"{cell['peak_rss_mb']:.0f} (+{cell['delta_mb']:.0f}){exact}"]
        rows.append(row)
    return table(header, rows)


def big_xml_table(rows: Sequence[dict]) -> str:
    return table(["XML MB", "records", "articles", "seconds", "articles/s", "peak RSS MB",
                  "RSS by quarter MB", "every PMID in output"],
                 [[f"{r['size_mb']:.1f}", r["records"], r["articles"], f"{r['seconds']:.1f}",
                   f"{r['articles_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                   "/".join(f"{mb:.0f}" for mb in r["peak_rss_by_quarter_mb"]), "yes" if r["all_pmids_present"] else
                   f"NO ({r['distinct_doc_ids']} distinct doc_id, exit status {r['exit_status']})"] for r in rows])


# -------------------------------------------------------------------------------------------------- main

def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=None,
                   help="BC5CDR test abstracts to tag (default 500, 50 with --quick; 0 skips table 1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads in each subprocess (0: one per physical core)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per batch (as `mambaner tag`)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--lengths", default=None,
                   help="comma-separated sequence lengths for table 2 ('' skips it; default 128,…,4096, "
                        "up to 1024 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed forward passes per length (default 3; 1 "
                                                              "with --quick); the best counts")
    p.add_argument("--quick", action="store_true", help="fewer documents, lengths and repeats")
    p.add_argument("--big-xml", default="", metavar="SIZES",
                   help="also tag generated PubMed XML of these sizes, e.g. 25M,50M,100M (table 3)")
    p.add_argument("--big-xml-records", choices=RECORDS, default="full",
                   help="full PubMed records with (made-up) metadata, about 8 KB each, or bare ones (1.6 KB)")
    p.add_argument("--big-xml-dir", default=None, help="folder for the generated XML (default: the temp dir)")
    p.add_argument("--omp-wait", choices=["passive", "active", "unset"], default="passive",
                   help="OMP_WAIT_POLICY of the subprocesses (passive: as `mambaner tag` sets it)")
    p.add_argument("--data-dir", default=None, help="folder holding bc5cdr/ (default $MAMBANER_DATA, "
                                                     "else ../shared/data)")
    p.add_argument("--json", default=None, help="also write every number to this JSON file")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # toy model shapes (tests)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    args.docs = args.docs if args.docs is not None else (50 if args.quick else 500)
    if args.lengths is None:
        args.lengths = list(QUICK_LENGTHS if args.quick else LENGTHS)
    elif isinstance(args.lengths, str):
        args.lengths = int_list(args.lengths)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in MODELS]
    if unknown:
        parser().error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    args.big_xml = [parse_size(size) for size in args.big_xml.split(",") if size.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from mambaner_cli.runtime.device import physical_cores  # (imports torch; the subprocesses reload it)

    command = "python -m benchmarks.benchmark " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    print(f"command: {command}".rstrip())
    print(f"machine: {cpu_name()}; {os.cpu_count()} logical / {physical_cores()} physical cores; "
          f"python {platform.python_version()}; OMP_WAIT_POLICY={args.omp_wait}")
    print(f"load average at start: {load_average()}", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mambaner-bench-") as folder:
        for name in args.models if args.docs or args.lengths else []:
            print(f"… {name}", file=sys.stderr, flush=True)
            results[name] = measure_model(name, args, Path(folder))
    threads = sorted({r["threads"] for r in results.values()})
    if results:
        torch_version = next(r["torch"] for r in results.values())
        print(f"torch {torch_version}; torch threads in the subprocesses: {', '.join(map(str, threads)) or 'n/a'}"
              f" (--threads {args.threads})")
    if args.docs:
        first = next(r["throughput"] for r in results.values() if r["throughput"])
        print(f"\n{THROUGHPUT_HEADER}: {first['documents']} BC5CDR test abstracts, {first['sentences']} "
              f"sentences, {first['tokens']} tokens, batch size {args.batch_size}; reader → splitter → "
              "tagger → Parquet writer")
        print(throughput_table(results))
        missing = [n for n, r in results.items() if r["throughput"]
                   and r["throughput"]["documents_in_output"] != r["throughput"]["documents"]]
        if missing:
            print(f"WARNING: documents missing from the Parquet output of {', '.join(missing)}")
        if "bert" in results and results["bert"]["throughput"]:
            print(f"(bert attention: {results['bert']['throughput'].get('attention')}; subwords hashed, "
                  "1 + (len > 6) + (len > 10) pieces per word)")
    if args.lengths:
        print(f"\n{LENGTHS_HEADER}: best of {args.repeats}; default in words, bert/mamba130m in subwords; "
              "BERT position embeddings extended past 512 for the cost only")
        print(lengths_table(results))
        if any(not row["peak_exact"] for r in results.values() for row in r["lengths"]):
            print("* approximate: the peak RSS could not be reset between lengths, or freed memory kept "
                  "(not Linux/glibc)")
    big = []
    if args.big_xml:
        print(f"\n{BIG_XML_HEADER} (`mambaner tag big.xml -o out.parquet -q` in a subprocess)", flush=True)
        for size in args.big_xml:
            print(f"… {size / 2**20:.0f} MiB", file=sys.stderr, flush=True)
            big.append(big_xml(size, args))
        print(big_xml_table(big))
        rate = sum(r["articles"] for r in big) / sum(r["seconds"] for r in big)
        per_gib = sum(r["articles"] for r in big) / sum(r["size_mb"] for r in big) * 1024
        print(f"1 GiB of such XML: about {per_gib:,.0f} articles, about {per_gib / rate / 60:,.0f} minutes at "
              f"{rate:.1f} articles/s")
    print(f"\nload average at end: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "cpu": cpu_name(), "models": results,
                                               "big_xml": big}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
