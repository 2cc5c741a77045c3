"""The benchmark behind `mambaner evaluate`, at two levels, with efficiency figures and error analysis.

* Benchmark level — the standard IOB split with its gold tokens, strict entity-level P/R/F1 from
  seqeval (micro and per type): comparable to published numbers. A corpus without an IOB split (the
  PubTator-only corpora of the registry) is split into sentences and tokens as `mambaner tag` splits it.
* Document level — the original PubTator documents through the full `mambaner tag` pipeline (our own
  sentence splitting and tokenization), mentions matched by exact character offsets, plus an overlap
  match: what a user actually gets.

Every corpus of :data:`~mambaner_cli.corpora.CORPORA` can be evaluated. Only the entity types the corpus
annotates are scored, at both levels: a gene corpus has no say on a predicted disease.
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
from typing import NamedTuple

import torch
from seqeval.scheme import IOB2, Entities

from mambaner_cli import corpora
from mambaner_cli.corpora import DEVEL_SHARE, Corpus, Sentence, corpus, covering_corpora, read_conll
from mambaner_cli.errors import MambanerError
from mambaner_cli.metrics import entity_scores, only_types
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import model_conventions, read_metrics, resolve_model
from mambaner_cli.runtime.pipeline import SentenceTagger, tag_chunk, tagger_types

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


class Published(NamedTuple):
    """A published strict entity-level F1 (%) on a corpus's standard test split."""

    system: str
    f1: float
    approximate: bool = False  # the source gives a rounded figure ("≈84")

    @property
    def shown(self) -> str:
        return f"≈{self.f1:g}" if self.approximate else f"{self.f1:.2f}"


# Published strict F1 on the test splits of the standard IOB benchmarks: the figures issue 16 lists, and
# only those (a figure we have not checked against its paper does not go in). A corpus not here has none.
PUBLISHED_F1: dict[str, tuple[Published, ...]] = {
    "ncbi": (Published("PubMedBERT", 87.82), Published("BioLinkBERT-base", 88.18),
             Published("BiLSTM-CNN-char (Spark NLP)", 89.13)),
    "bc5cdr-disease": (Published("PubMedBERT", 85.62), Published("BioLinkBERT-base", 86.10)),
    "bc5cdr-chem": (Published("BioBERT", 93.47), Published("PubMedBERT", 93.33)),
    "bc2gm": (Published("PubMedBERT", 84.52),),
    "bc5cdr": (Published("scispaCy (chemicals and diseases together)", 84, approximate=True),),
}
# Why figures on the multitype files are not comparable (see ../shared/data/README.md): they lost documents.
REMOVED_DOCUMENTS_NOTE = ("Documents that also occur in the NCBI-disease or BC5CDR test sets, or in another "
                          "held-out test set, were removed from this corpus's files, so published figures on it "
                          "are not directly comparable.")
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
    # For a model with annotation conventions: the one to tag by; None lets choose_convention pick (the
    # evaluated corpus's, else one on the same documents, else the model's default).
    convention: str | None = None
    rules: bool = True  # the run-time rules beside the network (runtime/tagger.py); False: --network-only


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


def benchmark_level(tagger: SentenceTagger, data: Sequence[Sentence], batch_size: int, top: int,
                    types: Sequence[str] | None = None) -> dict:
    """Strict seqeval scores of the tagger's predictions on gold-tokenized sentences, with throughput.
    ``types``: the entity types the gold marks; predictions of other types are not scored (None: all)."""
    started = time.perf_counter()
    predicted = [tags for tags, _ in tagger.tag([tokens for tokens, _ in data], batch_size=batch_size)]
    seconds = max(time.perf_counter() - started, 1e-9)
    for (tokens, _), tags in zip(data, predicted, strict=True):
        if len(tags) != len(tokens):
            raise MambanerError(f"the tagger returned {len(tags)} tags for a sentence of {len(tokens)} tokens")
    if types is not None:
        predicted = [only_types(tags, types) for tags in predicted]
    scores = entity_scores([tags for _, tags in data], predicted)
    tokens = sum(len(tokens) for tokens, _ in data)
    scores.update({"tokens": tokens,
                   "gold_mentions": sum(len(entities(tags)) for _, tags in data),
                   "predicted_mentions": sum(len(entities(tags)) for tags in predicted),
                   "seconds": seconds, "sentences_per_s": len(data) / seconds, "tokens_per_s": tokens / seconds,
                   "errors": error_analysis(data, predicted, top)})
    return scores


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


def typed_match_scores(gold: Sequence[set], predicted: Sequence[set], overlap: bool) -> dict:
    """:func:`match_scores` over all mentions (micro), with the same for each type under ``per_type``."""
    scores = match_scores(gold, predicted, overlap)
    labels = sorted({mention[2] for mentions in (*gold, *predicted) for mention in mentions})
    scores["per_type"] = {label: match_scores([{m for m in g if m[2] == label} for g in gold],
                                              [{m for m in p if m[2] == label} for p in predicted], overlap)
                          for label in labels}
    return scores


def document_level(tagger: SentenceTagger, name: str, split: str, data_dir: str | None, batch_size: int,
                   types: Sequence[str] | None = None) -> dict:
    """The full pipeline on the corpus's PubTator documents; mentions of types outside ``types`` (the
    corpus's own, when given) are not scored."""
    documents = corpora.gold_documents(name, split, data_dir)
    gold = [{(s.start, s.end, s.label) for s in doc.annotations} for doc in documents]
    started = time.perf_counter()
    for first in range(0, len(documents), 64):
        tag_chunk(documents[first:first + 64], tagger, batch_size)
    seconds = max(time.perf_counter() - started, 1e-9)
    predicted = [{(s.start, s.end, s.label) for s in doc.annotations if types is None or s.label in types}
                 for doc in documents]
    sentences = sum(len(doc.sentences) for doc in documents)
    return {"documents": len(documents), "sentences": sentences, "seconds": seconds,
            "documents_per_s": len(documents) / seconds, "sentences_per_s": sentences / seconds,
            "exact": typed_match_scores(gold, predicted, overlap=False),
            "overlap": typed_match_scores(gold, predicted, overlap=True)}


def trained_parameters(model_dir: Path | None, parameters: int) -> int:
    """Parameters that training updated: a fine-tuned model directory's ``metrics.json`` says (frozen
    backbone, LoRA); else all ``parameters``."""
    if model_dir is not None:
        try:
            return int(read_metrics(model_dir)["trainable_parameters"])
        except (MambanerError, KeyError, TypeError, ValueError):
            pass
    return parameters


def choose_convention(dataset: str | None, conventions: Sequence[str], asked: str | None = None
                      ) -> tuple[str | None, str]:
    """The convention to tag ``dataset`` by, of a model that has ``conventions``, and why: the one asked
    for; else the dataset's own; else that of a corpus on the same documents that annotates all of the
    dataset's types (BC5CDR for BC5CDR-disease); else None, the model's default."""
    if asked:
        return asked, "asked for (--convention)"
    if not conventions:
        return None, "the model has no annotation conventions"
    if dataset in conventions:
        return dataset, "the evaluated corpus's own"
    for other in covering_corpora(dataset) if dataset else ():
        if other in conventions:
            return other, f"{other}'s: the same documents, annotating {dataset}'s types by the same rules"
    return None, f"the model's default: it has no convention for {dataset or 'a gold file'}"


def gold_source(c: Corpus, split: str, data_dir: str | None) -> str:
    """Where the benchmark level's gold comes from, for the report: the IOB file, or the PubTator file
    (and how a devel split was carved from it)."""
    if c.iob_folder:
        return str(corpora.iob_path(c.name, split, data_dir))
    path = str(corpora.pubtator_path(c.name, split, data_dir))
    if split != "test" and "devel" not in c.pubtator_files:
        path += f" ({split}: {'one' if split == 'devel' else 'the others'} of every {DEVEL_SHARE} documents, " \
                "by the SHA-256 of the document id)"
    return path


def evaluate(args: EvalArgs, tagger: SentenceTagger | None = None) -> dict:
    """Every number of one evaluation; ``tagger`` replaces the model named by ``args.model`` (tests)."""
    started = time.perf_counter()
    scored: tuple[str, ...] | None = None  # the entity types the gold marks (None: a gold file, all)
    document_level_ok = False
    skipped = None  # why the document level was asked for but cannot be done
    if args.conll:
        data, source, dataset, split = read_conll(args.conll), args.conll, None, None
    else:
        c = corpus(args.dataset or "")  # an unknown name fails here, before the model is loaded
        dataset, split, scored = c.name, args.split, c.annotates
        data, source = corpora.sentences(dataset, split, args.data_dir), gold_source(c, split, args.data_dir)
        # BC2GM has only its IOB files: no documents to run the pipeline on
        document_level_ok = args.document_level and bool(c.pubtator_files)
        if args.document_level and not c.pubtator_files:
            skipped = f"{c.title or dataset} has no PubTator documents, only its IOB split"
        if document_level_ok:  # fail now, not after the benchmark
            try:
                corpora.pubtator_path(dataset, split, args.data_dir)
            except MambanerError as error:
                raise MambanerError(f"{error} (The document level needs the original PubTator files; "
                                    "--no-documents skips it.)") from None
    model_dir = None if tagger is not None else resolve_model(args.model)
    if tagger is None:
        convention, convention_source = choose_convention(dataset, model_conventions(model_dir), args.convention)
        tagger = load_tagger(model_dir, device=args.device, convention=convention, rules=args.rules)
    else:
        convention_source = "the tagger given"
    # the GPU's peak only when the model runs there (with --device cpu on a machine with a GPU it is not used)
    on_gpu = getattr(getattr(tagger, "device", None), "type", None) == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(tagger.device)
    result = {"model": tagger.name, "convention": tagger.convention, "convention_source": convention_source,
              "network_only": not args.rules,
              "dataset": dataset, "split": split, "gold": source,
              "scored_types": list(scored) if scored is not None else None,
              "not_scored_types": [t for t in tagger_types(tagger) if scored is not None and t not in scored],
              "published": [p._asdict() for p in PUBLISHED_F1.get(dataset or "", ())],
              "benchmark": benchmark_level(tagger, data, args.batch_size, args.top_errors, scored)}
    if skipped:
        result["document_skipped"] = skipped
    if document_level_ok:
        result["document"] = document_level(tagger, dataset, split, args.data_dir, args.batch_size, scored)
    result["efficiency"] = {"parameters": tagger.num_parameters,
                            "trainable_parameters": trained_parameters(model_dir, tagger.num_parameters),
                            "peak_rss_mb": peak_rss_mb(), "wall_seconds": time.perf_counter() - started,
                            "peak_gpu_mb": torch.cuda.max_memory_allocated(tagger.device) / 2**20
                            if on_gpu else None,
                            "machine": machine()}
    return result


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    return (["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def scope_lines(result: dict) -> list[str]:
    """What was scored and how the model tagged: the convention and why, the types left unscored."""
    convention = f"`{result['convention']}`" if result.get("convention") else "none"
    lines = [f"Convention: {convention} ({result.get('convention_source', 'not recorded')})."]
    if result.get("network_only"):
        lines += ["", "Network only (`--network-only`): no variant patterns, no bracket cuts."]
    scored = result.get("scored_types")
    if scored is not None:
        line = f"Scored types: {', '.join(scored)} (what {result['dataset']} annotates)"
        if result.get("not_scored_types"):
            line += (f"; the model's predictions of {', '.join(result['not_scored_types'])} are not scored: "
                     "this corpus does not mark them, so it can neither confirm nor refute them")
        lines += ["", line + "."]
    return lines


def published_section(result: dict) -> list[str]:
    """Published strict F1 on the evaluated corpus beside this run's benchmark-level F1, or why there is none."""
    lines = ["## Published figures (strict entity-level F1, test split)", ""]
    dataset = result["dataset"]
    if dataset is None:
        return [*lines, "A gold file, not a registry corpus: no published figure listed."]
    c = corpus(dataset)
    published = PUBLISHED_F1.get(dataset, ())
    if not published:
        lines.append(f"No published figure listed for {c.title or dataset}.")
    else:
        e = result["efficiency"]
        convention = f" ({result['convention']} convention)" if result.get("convention") else ""
        rows = [[p.system, p.shown, "published"] for p in published]
        rows.append([f"mambaner `{result['model']}`{convention}", f"{result['benchmark']['f1']:.2f}",
                     f"measured here ({result['split']} split, {e['parameters']:,} parameters)"])
        lines += markdown_table(["system", "F1", "source"], rows)
        if result["split"] != "test":
            lines += ["", f"Ours is on the {result['split']} split; the published figures are on test: not comparable."]
    if c.pubtator_folder == "multitype":
        lines += ["", REMOVED_DOCUMENTS_NOTE]
    if not c.iob_folder:
        lines += ["", (f"{c.title or dataset} has no standard IOB split: the benchmark level reads its PubTator "
                       "documents, split into sentences and tokens by mambaner's own splitter.")]
    return lines


def markdown_report(result: dict, command: str) -> str:
    b, e = result["benchmark"], result["efficiency"]
    title = result["dataset"] or result["gold"]
    if result["split"]:
        title += f" ({result['split']})"
    lines = [f"# mambaner evaluate: {title}", "", f"Command: `{command}`", "", f"Gold: `{result['gold']}`", "",
             *scope_lines(result), "", *published_section(result), "",
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
        rows = []
        for kind in ("exact", "overlap"):  # each type, then the micro average over all of them
            for name, m in [*((f"{kind}: {label}", m) for label, m in sorted(d[kind].get("per_type", {}).items())),
                            (kind, d[kind])]:
                rows.append([name, f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}", m["gold"],
                             m["predicted"]])
        lines += markdown_table(["match", "precision", "recall", "F1", "gold", "predicted"], rows)
    elif result.get("document_skipped"):
        lines += ["", f"Document level: not run ({result['document_skipped']})."]
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
