"""`mambaner evaluate`: the benchmark, at two levels, with efficiency figures and error analysis.

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
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mambaner_cli.document import Document, Span
from mambaner_cli.errors import MambanerError, ReadError
from mambaner_cli.readers import pubtator
from mambaner_cli.runtime.pipeline import tag_chunk
from mambaner_cli.runtime.tagger import Tagger
from training.datasets import CORPORA, Sentence, corpus, iob_path, pubtator_path, read_conll
from training.metrics import entity_scores

# The paper's Table 1 (../shared/seed/mambaner-paper.txt), as published: F1 (%) on NCBI-disease and
# BC5-disease, parameters, RAM (GB; None where the paper gives none).
PAPER_TABLE_1 = [
    ("BioBERT", 27.19, 36.78, "1.1×10^8", "> 64"),
    ("ClinicalBERT", 8.27, 19.96, "1.1×10^8", None),
    ("GatorTron", 35.00, 26.97, "3.45×10^8", "> 64"),
    ("Vanilla ICL", 43.48, 43.90, "1.76×10^9", None),
    ("MambaNER (paper)", 32.68, 57.80, "1.3×10^8", "12"),
]


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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    """(start token, end token exclusive, type) of each mention of a valid IOB2 sequence."""
    found, start, label = [], -1, ""
    for i, tag in enumerate([*tags, "O"]):
        if start >= 0 and not (tag.startswith("I-") and tag[2:] == label):
            found.append((start, i, label))
            start = -1
        if tag.startswith("B-") or (tag.startswith("I-") and start < 0):
            start, label = i, tag[2:]
    return found


def error_analysis(data: list[Sentence], predicted: list[list[str]], top: int) -> dict:
    """Most frequent false positives and negatives, and F1 by mention length in tokens."""
    false_pos, false_neg = Counter(), Counter()
    by_length: dict[str, Counter] = {}
    for (tokens, gold), pred in zip(data, predicted):
        g, p = set(entities(gold)), set(entities(pred))
        for span in p - g:
            false_pos[" ".join(tokens[span[0]:span[1]])] += 1
        for span in g - p:
            false_neg[" ".join(tokens[span[0]:span[1]])] += 1
        for spans, key in ((g, "gold"), (p, "pred")):
            for span in spans:
                bucket = str(min(span[1] - span[0], 4)) if span[1] - span[0] < 4 else "4+"
                counts = by_length.setdefault(bucket, Counter())
                counts[key] += 1
                counts["correct"] += span in g and span in p and key == "gold"
    length_f1 = {}
    for bucket in sorted(by_length):
        c = by_length[bucket]
        precision = c["correct"] / c["pred"] if c["pred"] else 0.0
        recall = c["correct"] / c["gold"] if c["gold"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        length_f1[bucket] = {"gold": c["gold"], "predicted": c["pred"], "f1": 100 * f1}
    return {"false_positives": false_pos.most_common(top), "false_negatives": false_neg.most_common(top),
            "f1_by_length": length_f1}


def benchmark_level(tagger: Tagger, data: list[Sentence], batch_size: int, top: int) -> dict:
    started = time.perf_counter()
    predicted = [tags for tags, _ in tagger.tag([tokens for tokens, _ in data], batch_size=batch_size)]
    seconds = time.perf_counter() - started
    scores = entity_scores([tags for _, tags in data], predicted)
    tokens = sum(len(tokens) for tokens, _ in data)
    scores.update({"seconds": seconds, "sentences_per_s": len(data) / seconds, "tokens_per_s": tokens / seconds,
                   "errors": error_analysis(data, predicted, top)})
    return scores


def gold_documents(name: str, split: str, data_dir: str | None) -> list[Document]:
    """The PubTator documents of a split with their gold mentions, typed as in the IOB benchmark."""
    c = corpus(name)
    path = pubtator_path(name, split, data_dir)
    label = {"ncbi": "Disease"}.get(name)
    documents = []
    with open(path, "rb") as stream:
        for item in pubtator.read(stream, str(path), keep_annotations=True):
            if isinstance(item, ReadError):
                raise MambanerError(str(item))
            for passage in item.passages:
                passage.annotations = [Span(s.start, s.end, s.text, label or s.label) for s in passage.annotations
                                       if s.label in c.entity_types]
            documents.append(item)
    return documents


def match_scores(gold: list[set], predicted: list[set], overlap: bool) -> dict:
    tp_pred = tp_gold = n_pred = n_gold = 0
    for g, p in zip(gold, predicted):
        n_gold, n_pred = n_gold + len(g), n_pred + len(p)
        if not overlap:
            tp_pred += len(g & p)
            tp_gold += len(g & p)
            continue
        tp_pred += sum(any(a[2] == b[2] and a[0] < b[1] and b[0] < a[1] for b in g) for a in p)
        tp_gold += sum(any(a[2] == b[2] and a[0] < b[1] and b[0] < a[1] for b in p) for a in g)
    precision = tp_pred / n_pred if n_pred else 0.0
    recall = tp_gold / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1, "gold": n_gold,
            "predicted": n_pred}


def document_level(tagger: Tagger, name: str, split: str, data_dir: str | None, batch_size: int) -> dict:
    documents = gold_documents(name, split, data_dir)
    gold = [{(s.start, s.end, s.label) for s in doc.annotations} for doc in documents]
    started = time.perf_counter()
    for first in range(0, len(documents), 64):
        tag_chunk(documents[first:first + 64], tagger, batch_size)
    seconds = time.perf_counter() - started
    predicted = [{(s.start, s.end, s.label) for s in doc.annotations} for doc in documents]
    sentences = sum(len(doc.sentences) for doc in documents)
    return {"documents": len(documents), "sentences": sentences, "seconds": seconds,
            "documents_per_s": len(documents) / seconds, "sentences_per_s": sentences / seconds,
            "exact": match_scores(gold, predicted, overlap=False),
            "overlap": match_scores(gold, predicted, overlap=True)}


def evaluate(args: EvalArgs) -> dict:
    started = time.perf_counter()
    tagger = Tagger.load(args.model, device=args.device)
    if args.conll:
        data, source = read_conll(args.conll), args.conll
    else:
        if args.dataset not in CORPORA:
            raise MambanerError(f"Unknown dataset {args.dataset!r}; choose from {', '.join(CORPORA)}.")
        path = iob_path(args.dataset, args.split, args.data_dir)
        data, source = read_conll(path), str(path)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = {"model": tagger.name, "dataset": args.dataset if not args.conll else None, "split": args.split,
              "gold": source, "benchmark": benchmark_level(tagger, data, args.batch_size, args.top_errors)}
    if args.document_level and not args.conll:
        result["document"] = document_level(tagger, args.dataset, args.split, args.data_dir, args.batch_size)
    trainable = sum(p.numel() for p in tagger.model.parameters() if p.requires_grad)
    result["efficiency"] = {"parameters": tagger.num_parameters, "trainable_parameters": trainable,
                            "peak_rss_mb": peak_rss_mb(), "wall_seconds": time.perf_counter() - started,
                            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20
                            if torch.cuda.is_available() else None,
                            "machine": machine()}
    return result


def markdown_report(result: dict, command: str) -> str:
    b, e = result["benchmark"], result["efficiency"]
    name = result["dataset"] or result["gold"]
    lines = [f"# mambaner evaluate: {name} ({result['split']})", "", f"Command: `{command}`", "",
             "## Comparison with the paper's Table 1", "",
             "| model | NCBI-disease F1 | BC5-disease F1 | parameters | RAM (GB) | source |",
             "| --- | --- | --- | --- | --- | --- |"]
    for model, ncbi, bc5, params, ram in PAPER_TABLE_1:
        lines.append(f"| {model} | {ncbi:.2f} | {bc5:.2f} | {params} | {ram or '–'} | published (paper) |")
    ours = {"ncbi": "–", "bc5cdr-disease": "–"}
    if result["dataset"] in ours:
        ours[result["dataset"]] = f"{b['f1']:.2f}"
    lines.append(f"| mambaner `{result['model']}` | {ours['ncbi']} | {ours['bc5cdr-disease']} | "
                 f"{e['parameters']:,} | {e['peak_rss_mb'] / 1024:.2f} (peak RSS) | measured here |")
    lines += ["", "## Benchmark level (gold tokens, strict entity-level, seqeval)", "",
              "| type | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for label, m in sorted(b["per_type"].items()):
        lines.append(f"| {label} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | {m['support']} |")
    lines.append(f"| **micro** | {b['precision']:.2f} | {b['recall']:.2f} | {b['f1']:.2f} | |")
    if "document" in result:
        d = result["document"]
        lines += ["", "## Document level (full pipeline on the PubTator documents, character offsets)", "",
                  "| match | precision | recall | F1 | gold | predicted |", "| --- | --- | --- | --- | --- | --- |"]
        for kind in ("exact", "overlap"):
            m = d[kind]
            lines.append(f"| {kind} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} | {m['gold']} | "
                         f"{m['predicted']} |")
    machine_info = e["machine"]
    lines += ["", "## Efficiency", "",
              f"- parameters: {e['parameters']:,} (trainable {e['trainable_parameters']:,})",
              f"- peak RSS: {e['peak_rss_mb']:.0f} MB" + (f"; peak GPU memory {e['peak_gpu_mb']:.0f} MB"
                                                          if e["peak_gpu_mb"] else ""),
              f"- benchmark level: {b['sentences_per_s']:.0f} sentences/s, {b['tokens_per_s']:.0f} tokens/s",
              f"- wall time of the whole evaluation: {e['wall_seconds']:.1f} s",
              (f"- machine: {machine_info['cpu']}, {machine_info['cores']} cores, torch "
              f"{machine_info['torch']} ({machine_info['torch_threads']} threads), GPU: {machine_info['gpu'] or 'none'}")]
    if "document" in result:
        lines.append(f"- document level (reading, splitting, tagging): {result['document']['documents_per_s']:.1f} "
                     f"documents/s, {result['document']['sentences_per_s']:.0f} sentences/s")
    errors = b["errors"]
    lines += ["", "## Error analysis (benchmark level)", "", "F1 by mention length (tokens):", "",
              "| length | gold | predicted | F1 |", "| --- | --- | --- | --- |"]
    for bucket, m in errors["f1_by_length"].items():
        lines.append(f"| {bucket} | {m['gold']} | {m['predicted']} | {m['f1']:.2f} |")
    for title, key in (("Most frequent false positives", "false_positives"),
                       ("Most frequent false negatives", "false_negatives")):
        lines += ["", f"{title}:", "", "| mention | count |", "| --- | --- |"]
        lines += ["| " + text.replace("|", "\\|") + f" | {count} |" for text, count in errors[key]]
    return "\n".join(lines) + "\n"


def write_json(path: str, result: dict) -> None:
    Path(path).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
