"""The benchmark behind `mambaner evaluate`, at two levels, with efficiency figures and error analysis.

* Benchmark level — the standard IOB split with its gold tokens, strict entity-level P/R/F1 from
  seqeval (micro and per type): comparable to published numbers.
* Document level — the original PubTator documents through the full `mambaner tag` pipeline (our own
  sentence splitting and tokenization), mentions matched by exact character offsets, plus an overlap
  match: what a user actually gets.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from seqeval.scheme import IOB2, Entities

from mambaner_cli.corpora import Sentence, corpus, iob_path, pubtator_path, read_conll
from mambaner_cli.document import Document, Span
from mambaner_cli.errors import MambanerError, ReadError
from mambaner_cli.metrics import entity_scores
from mambaner_cli.readers import pubtator
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import model_conventions, read_metrics, resolve_model
from mambaner_cli.runtime.pipeline import SentenceTagger, tag_chunk

# The paper's Table 1 (../shared/seed/mambaner-paper.txt), as published: F1 (%) on NCBI-disease and
# BC5-disease, parameters, RAM (GB; None where the paper gives none).
PAPER_TABLE_1 = [
    ("BioBERT", 27.19, 36.78, "1.1×10^8", "> 64"),
    ("ClinicalBERT", 8.27, 19.96, "1.1×10^8", None),
    ("GatorTron", 35.00, 26.97, "3.45×10^8", "> 64"),
    ("Vanilla ICL", 43.48, 43.90, "1.76×10^9", None),
    ("MambaNER (paper)", 32.68, 57.80, "1.3×10^8", "12"),
]
# Our datasets that correspond to the paper's two columns.
PAPER_COLUMNS = {"ncbi": "NCBI-disease F1", "bc5cdr-disease": "BC5-disease F1"}
LENGTH_BUCKETS = ("1", "2", "3", "4+")  # mention length in tokens, for the error analysis


@dataclass
class EvalArgs:
    dataset: str | None = "ncbi"
    split: str = "test"
    model: str | None = None
    conll: str | None = None  # a gold CoNLL file instead of a benchmark split
    data_dir: str | None = None
    device: str = "auto"
    batch_size: int = 64
    document_level: bool = True
    top_errors: int = 15
    # For a model with annotation conventions: the one to tag by; None picks the evaluated corpus's when
    # the model has it, else the model's default.
    convention: str | None = None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start token, end token exclusive, type) of each mention, exactly as seqeval's strict IOB2 mode
    sees them, so that the error analysis adds up to the scores."""
    return [(e.start, e.end, e.tag) for e in Entities([list(tags)], IOB2).entities[0]]


def length_bucket(start: int, end: int) -> str:
    return LENGTH_BUCKETS[min(end - start, len(LENGTH_BUCKETS)) - 1]


def prf(correct: int, gold: int, predicted: int) -> dict:
    """Precision, recall and F1 in %, 0 where undefined (as seqeval's zero_division=0)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1}


def false_positive_kind(span: tuple[int, int, str], gold: set[tuple[int, int, str]]) -> str:
    """Why a predicted mention is wrong: right boundaries but wrong type, overlapping a gold mention of
    its type with wrong boundaries, or neither (spurious)."""
    start, end, label = span
    if any(g[0] == start and g[1] == end for g in gold):
        return "wrong type"
    if any(g[2] == label and g[0] < end and start < g[1] for g in gold):
        return "wrong boundaries"
    return "spurious"


def error_analysis(data: Sequence[Sentence], predicted: Sequence[Sequence[str]], top: int) -> dict:
    """Most frequent false positives and negatives (mention text and type), what kind of error each false
    positive is, and strict P/R/F1 by mention length in tokens (a prediction is bucketed by its own
    length, a gold mention by its own; a correct one has the same length in both)."""
    false_pos: Counter = Counter()
    false_neg: Counter = Counter()
    kinds: Counter = Counter()
    gold_n: Counter = Counter()
    pred_n: Counter = Counter()
    correct_n: Counter = Counter()
    for (tokens, gold_tags), pred_tags in zip(data, predicted, strict=True):
        gold, pred = set(entities(gold_tags)), set(entities(pred_tags))
        for start, end, label in pred - gold:
            false_pos[" ".join(tokens[start:end]), label] += 1
            kinds[false_positive_kind((start, end, label), gold)] += 1
        for start, end, label in gold - pred:
            false_neg[" ".join(tokens[start:end]), label] += 1
        gold_n.update(length_bucket(s, e) for s, e, _ in gold)
        pred_n.update(length_bucket(s, e) for s, e, _ in pred)
        correct_n.update(length_bucket(s, e) for s, e, _ in gold & pred)
    by_length = {bucket: {"gold": gold_n[bucket], "predicted": pred_n[bucket], "correct": correct_n[bucket],
                          **prf(correct_n[bucket], gold_n[bucket], pred_n[bucket])}
                 for bucket in LENGTH_BUCKETS if gold_n[bucket] or pred_n[bucket]}

    def listing(counts: Counter) -> list[dict]:
        return [{"mention": text, "type": label, "count": n} for (text, label), n in counts.most_common(top)]

    return {"false_positives": listing(false_pos), "false_negatives": listing(false_neg),
            "false_positive_kinds": {kind: kinds[kind] for kind in ("wrong type", "wrong boundaries", "spurious")},
            "f1_by_length": by_length}


def benchmark_level(tagger: SentenceTagger, data: Sequence[Sentence], batch_size: int, top: int) -> dict:
    """Strict seqeval scores of the tagger's predictions on gold-tokenized sentences, with throughput."""
    started = time.perf_counter()
    predicted = [tags for tags, _ in tagger.tag([tokens for tokens, _ in data], batch_size=batch_size)]
    seconds = max(time.perf_counter() - started, 1e-9)
    for (tokens, _), tags in zip(data, predicted, strict=True):
        if len(tags) != len(tokens):
            raise MambanerError(f"the tagger returned {len(tags)} tags for a sentence of {len(tokens)} tokens")
    scores = entity_scores([tags for _, tags in data], predicted)
    tokens = sum(len(tokens) for tokens, _ in data)
    scores.update({"tokens": tokens,
                   "gold_mentions": sum(len(entities(tags)) for _, tags in data),
                   "predicted_mentions": sum(len(entities(tags)) for tags in predicted),
                   "seconds": seconds, "sentences_per_s": len(data) / seconds, "tokens_per_s": tokens / seconds,
                   "errors": error_analysis(data, predicted, top)})
    return scores


def gold_documents(name: str, split: str, data_dir: str | None) -> list[Document]:
    """The PubTator documents of a split with their gold mentions, typed as in the IOB benchmark
    (NCBI's four disease classes are one ``Disease`` type there)."""
    c = corpus(name)
    path = pubtator_path(name, split, data_dir)
    label = {"ncbi": "Disease"}.get(name)
    documents = []
    with open(path, "rb") as stream:
        for item in pubtator.read(stream, str(path), keep_annotations=True):
            if isinstance(item, ReadError):
                if item.warning:  # a malformed or mismatched annotation line: the document is still read
                    continue
                raise MambanerError(str(item))
            for passage in item.passages:
                passage.annotations = [Span(s.start, s.end, s.text, label or s.label) for s in passage.annotations
                                       if s.label in c.entity_types]
            documents.append(item)
    return documents


def match_scores(gold: Sequence[set], predicted: Sequence[set], overlap: bool) -> dict:
    """P/R/F1 over documents of (start, end, type) mentions. Exact: offsets and type equal. Overlap: a
    prediction is right when it overlaps a gold mention of its type, a gold mention is found when a
    prediction of its type overlaps it (so precision and recall may count different pairs)."""
    tp_pred = tp_gold = n_pred = n_gold = 0
    for g, p in zip(gold, predicted, strict=True):
        n_gold, n_pred = n_gold + len(g), n_pred + len(p)
        if overlap:
            tp_pred += sum(any(a[2] == b[2] and a[0] < b[1] and b[0] < a[1] for b in g) for a in p)
            tp_gold += sum(any(a[2] == b[2] and a[0] < b[1] and b[0] < a[1] for b in p) for a in g)
        else:
            tp_pred += len(g & p)
            tp_gold += len(g & p)
    precision = tp_pred / n_pred if n_pred else 0.0
    recall = tp_gold / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1, "gold": n_gold,
            "predicted": n_pred}


def document_level(tagger: SentenceTagger, name: str, split: str, data_dir: str | None, batch_size: int) -> dict:
    documents = gold_documents(name, split, data_dir)
    gold = [{(s.start, s.end, s.label) for s in doc.annotations} for doc in documents]
    started = time.perf_counter()
    for first in range(0, len(documents), 64):
        tag_chunk(documents[first:first + 64], tagger, batch_size)
    seconds = max(time.perf_counter() - started, 1e-9)
    predicted = [{(s.start, s.end, s.label) for s in doc.annotations} for doc in documents]
    sentences = sum(len(doc.sentences) for doc in documents)
    return {"documents": len(documents), "sentences": sentences, "seconds": seconds,
            "documents_per_s": len(documents) / seconds, "sentences_per_s": sentences / seconds,
            "exact": match_scores(gold, predicted, overlap=False),
            "overlap": match_scores(gold, predicted, overlap=True)}


def trained_parameters(model_dir: Path | None, parameters: int) -> int:
    """Parameters that training updated: a fine-tuned model directory's ``metrics.json`` says (frozen
    backbone, LoRA); else all ``parameters``."""
    if model_dir is not None:
        try:
            return int(read_metrics(model_dir)["trainable_parameters"])
        except (MambanerError, KeyError, TypeError, ValueError):
            pass
    return parameters


def evaluate(args: EvalArgs, tagger: SentenceTagger | None = None) -> dict:
    """Every number of one evaluation; ``tagger`` replaces the model named by ``args.model`` (tests)."""
    started = time.perf_counter()
    if args.conll:
        data, source, dataset, split = read_conll(args.conll), args.conll, None, None
    else:
        corpus(args.dataset or "")  # an unknown name fails here, before the model is loaded
        path = iob_path(args.dataset, args.split, args.data_dir)
        data, source, dataset, split = read_conll(path), str(path), args.dataset, args.split
        if args.document_level:  # fail now, not after the benchmark
            try:
                pubtator_path(args.dataset, args.split, args.data_dir)
            except MambanerError as error:
                raise MambanerError(f"{error} (The document level needs the original PubTator files; "
                                    "--no-documents skips it.)") from None
    model_dir = None if tagger is not None else resolve_model(args.model)
    if tagger is None:
        convention = args.convention
        if convention is None and dataset in model_conventions(model_dir):
            convention = dataset
        tagger = load_tagger(model_dir, device=args.device, convention=convention)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = {"model": tagger.name, "convention": tagger.convention, "dataset": dataset,
              "split": split, "gold": source,
              "benchmark": benchmark_level(tagger, data, args.batch_size, args.top_errors)}
    if args.document_level and dataset:
        result["document"] = document_level(tagger, dataset, split, args.data_dir, args.batch_size)
    result["efficiency"] = {"parameters": tagger.num_parameters,
                            "trainable_parameters": trained_parameters(model_dir, tagger.num_parameters),
                            "peak_rss_mb": peak_rss_mb(), "wall_seconds": time.perf_counter() - started,
                            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20
                            if torch.cuda.is_available() else None,
                            "machine": machine()}
    return result


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    return (["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def markdown_report(result: dict, command: str) -> str:
    b, e = result["benchmark"], result["efficiency"]
    title = result["dataset"] or result["gold"]
    if result["split"]:
        title += f" ({result['split']})"
    lines = [f"# mambaner evaluate: {title}", "", f"Command: `{command}`", "", f"Gold: `{result['gold']}`", "",
             "## Comparison with the paper's Table 1", "",
             ("Published rows are copied from the paper (its Table 1); the last row is measured by this run "
             "(benchmark level, strict entity-level F1 on the split named above)."), ""]
    rows: list[list[object]] = [[model, f"{ncbi:.2f}", f"{bc5:.2f}", params, ram or "–", "published (paper)"]
                                for model, ncbi, bc5, params, ram in PAPER_TABLE_1]
    ours = {name: (f"{b['f1']:.2f}" if result["dataset"] == name else "–") for name in PAPER_COLUMNS}
    convention = f" ({result['convention']} convention)" if result.get("convention") else ""
    rows.append([f"mambaner `{result['model']}`{convention}", ours["ncbi"], ours["bc5cdr-disease"], f"{e['parameters']:,}",
                 f"{e['peak_rss_mb'] / 1024:.2f} (peak RSS)", "measured here"])
    lines += markdown_table(["model", *PAPER_COLUMNS.values(), "parameters", "RAM (GB)", "source"], rows)
    lines += ["", "## Benchmark level (gold tokens, strict entity-level, seqeval)", ""]
    rows = [[label, f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}", m["support"]]
            for label, m in sorted(b["per_type"].items())]
    rows.append(["**micro**", f"{b['precision']:.2f}", f"{b['recall']:.2f}", f"{b['f1']:.2f}", b["gold_mentions"]])
    lines += markdown_table(["type", "precision", "recall", "F1", "support"], rows)
    lines += ["", (f"{b['sentences']:,} sentences, {b['tokens']:,} tokens, {b['gold_mentions']:,} gold and "
              f"{b['predicted_mentions']:,} predicted mentions.")]
    if "document" in result:
        d = result["document"]
        lines += ["", "## Document level (full pipeline on the PubTator documents, character offsets)", "",
                  f"{d['documents']:,} documents, {d['sentences']:,} sentences (our splitting).", ""]
        lines += markdown_table(["match", "precision", "recall", "F1", "gold", "predicted"],
                                [[kind, f"{d[kind]['precision']:.2f}", f"{d[kind]['recall']:.2f}",
                                  f"{d[kind]['f1']:.2f}", d[kind]["gold"], d[kind]["predicted"]]
                                 for kind in ("exact", "overlap")])
    m = e["machine"]
    lines += ["", "## Efficiency", "",
              f"- parameters: {e['parameters']:,} (trained {e['trainable_parameters']:,})",
              f"- peak RSS: {e['peak_rss_mb']:.0f} MB" + (f"; peak GPU memory {e['peak_gpu_mb']:.0f} MB"
                                                          if e["peak_gpu_mb"] is not None else ""),
              f"- benchmark level: {b['sentences_per_s']:.0f} sentences/s, {b['tokens_per_s']:.0f} tokens/s"]
    if "document" in result:
        lines.append(f"- document level (splitting, tokenizing, tagging): {result['document']['documents_per_s']:.1f} "
                     f"documents/s, {result['document']['sentences_per_s']:.0f} sentences/s")
    lines += [f"- wall time of the whole evaluation (model loading included): {e['wall_seconds']:.1f} s",
              (f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
              f"GPU: {m['gpu'] or 'none'}")]
    errors = b["errors"]
    lines += ["", "## Error analysis (benchmark level)", "", "Strict scores by mention length (tokens):", ""]
    lines += markdown_table(["length", "gold", "predicted", "correct", "precision", "recall", "F1"],
                            [[bucket, m["gold"], m["predicted"], m["correct"], f"{m['precision']:.2f}",
                              f"{m['recall']:.2f}", f"{m['f1']:.2f}"] for bucket, m in errors["f1_by_length"].items()])
    kinds = errors["false_positive_kinds"]
    lines += ["", "False positives: " + ", ".join(f"{n:,} {kind}" for kind, n in kinds.items()) + "."]
    for title, key in (("Most frequent false positives", "false_positives"),
                       ("Most frequent false negatives", "false_negatives")):
        lines += ["", f"{title}:", ""]
        lines += markdown_table(["mention", "type", "count"],
                                [[item["mention"], item["type"], item["count"]] for item in errors[key]])
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict) -> None:
    Path(path).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
