"""Tagging on a GPU: are its tags the CPU's, how fast is the network there, and `mambaner tag` end to end.

    python -m benchmarks.bench_gpu                         # needs CUDA: default model, BC5CDR-disease devel
    python -m benchmarks.bench_gpu --runs cuda:1:512,cuda:4:512,cpu:16:32 --documents 5000 --json gpu.json
    python -m benchmarks.bench_gpu --device cpu --documents 200 --runs cpu:1:32   # a smoke run, no GPU

1. Same tags. The split's sentences (tokenised, as `mambaner tag` hands them to the model) are tagged on the
   CPU (the reference, one torch thread per physical core) and on ``--device`` at each ``--batch-sizes``:
   the number of tags that differ and the largest confidence difference. A GPU computes in another order
   (other kernels, other sums), so a confidence may move in its last digits; a tag should not.
2. Throughput of ``Tagger.tag`` on ``--device`` (best of ``--repeats`` after a warm-up; sentences/s,
   tokens/s), of the network alone on the same batches already encoded (``MambaTagger.decode``, the CUDA
   stream synchronised before the clock stops), and the device's peak memory. ``Tagger.tag``'s time beyond
   the network's is Python on the CPU: encoding tokens, lexicon matching, labels, the run-time rules.
3. End to end: ``--documents`` PubMed records made as ``benchmarks.bench_corpus`` makes them (BC5CDR and
   NCBI-disease abstracts as full records with fresh PMIDs, ``--files`` gzipped files, in a temporary
   folder deleted at the end). Each of ``--runs`` (DEVICE:WORKERS:BATCH) is ``mambaner tag FILES -o OUT/ -q
   --format parquet --device DEVICE --workers WORKERS --batch-size BATCH`` in a subprocess (model load,
   reading, splitting, tagging and writing inside the wall time), checked to hold every document once.

Without mamba-ssm (the ``cuda`` extra) the GPU runs the pure-PyTorch inference path; the header says which.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mambaner_cli.training.datasets import load_sentences

from benchmarks.bench_corpus import outputs_complete, write_pubmed_files
from benchmarks.bench_infer import encoded_batches
from benchmarks.benchmark import REPO, big_xml_sources, cpu_name, data_dir, load_average, table
from mambaner_cli.model.ops.scan import mamba_ssm_available
from mambaner_cli.runtime.device import physical_cores
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.tagger import Tagger


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(function, repeats: int, device: torch.device) -> float:
    """The best wall time of ``repeats`` calls after one warm-up call."""
    function()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def same_tags(reference: list, other: list) -> tuple[int, int, float]:
    """(tags compared, tags that differ, largest confidence difference) between two ``Tagger.tag`` results."""
    compared = differing = 0
    worst = 0.0
    for (tags_a, scores_a), (tags_b, scores_b) in zip(reference, other):
        compared += len(tags_a)
        differing += sum(a != b for a, b in zip(tags_a, tags_b))
        worst = max([worst, *(abs(a - b) for a, b in zip(scores_a, scores_b))])
    return compared, differing, worst


def network_seconds(model: Tagger, sentences: list[list[str]], batch_size: int, repeats: int) -> float:
    """The network alone (``decode``) on the split's batches, encoded and moved to the device beforehand."""
    batches = [{key: value.to(model.device) for key, value in batch.items()}
               for batch in encoded_batches(model, sentences, batch_size)]
    return best_of(lambda: [model.model.decode(**batch) for batch in batches], repeats, model.device)


def model_section(args: argparse.Namespace) -> dict:
    sentences = [list(tokens) for tokens, _ in load_sentences([args.corpus], args.split, args.data_dir)]
    tokens = sum(len(s) for s in sentences)
    torch.set_num_threads(physical_cores())
    reference_model = load_tagger(args.model, device="cpu")
    reference = reference_model.tag(sentences, batch_size=32)
    model = load_tagger(args.model, device=args.device)
    if not isinstance(model, Tagger):
        raise SystemExit(f"{args.model} is not a scratch tagger (fine-tuned models are not covered)")
    device = model.device
    print(f"{args.model} on {args.corpus} {args.split}: {len(sentences)} sentences, {tokens} tokens; device "
          f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}); "
          f"mamba-ssm kernels: {'yes' if mamba_ssm_available() else 'no (pure PyTorch)'}; torch "
          f"{torch.__version__}; {torch.get_num_threads()} CPU threads; load {load_average()}", flush=True)
    rows, results = [], []
    for batch_size in args.batch_sizes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        tagged = model.tag(sentences, batch_size=batch_size)
        compared, differing, worst = same_tags(reference, tagged)
        seconds = best_of(lambda b=batch_size: model.tag(sentences, batch_size=b), args.repeats, device)
        network = network_seconds(model, sentences, batch_size, args.repeats)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        results.append({"batch_size": batch_size, "tags": compared, "differing_tags": differing,
                        "max_confidence_diff": worst, "tag_seconds": seconds,
                        "sentences_per_s": len(sentences) / seconds, "tokens_per_s": tokens / seconds,
                        "network_seconds": network, "network_sentences_per_s": len(sentences) / network,
                        "peak_device_mb": peak})
        rows.append((batch_size, f"{differing} of {compared}", f"{worst:.1e}", f"{len(sentences) / seconds:,.0f}",
                     f"{tokens / seconds:,.0f}", f"{len(sentences) / network:,.0f}",
                     f"{100 * network / seconds:.0f} %", "–" if peak is None else f"{peak:,.0f}"))
        print(f"  batch {batch_size}: {seconds:.3f} s", file=sys.stderr, flush=True)
    print(table(("batch", "tags differing from the CPU's", "max confidence diff", "Tagger.tag sentences/s",
                 "tokens/s", "network alone sentences/s", "network share", "peak device MB"), rows))
    return {"sentences": len(sentences), "tokens": tokens, "device": str(device),
            "mamba_ssm": mamba_ssm_available(), "torch": torch.__version__, "batches": results}


def end_to_end(args: argparse.Namespace) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="mambaner-bench-gpu-") as temporary:
        folder = Path(temporary)
        inputs = write_pubmed_files(folder, args.documents, args.files, big_xml_sources(data_dir(args.data_dir)))
        print(f"\n{args.documents} documents in {len(inputs)} files, "
              f"{sum(path.stat().st_size for path in inputs) / 2**20:.1f} MiB gzipped", flush=True)
        rows = []
        for run in args.runs:
            device, workers, batch_size = run.split(":")
            output = folder / f"out-{device}-{workers}-{batch_size}"
            command = [sys.executable, "-m", "mambaner_cli", "tag", *map(str, inputs), "-o", f"{output}/", "-q",
                       "--format", "parquet", "--device", device, "--workers", workers, "--batch-size", batch_size]
            if args.model:
                command += ["--model", args.model]
            started = time.perf_counter()
            completed = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            complete = completed.returncode == 0 and outputs_complete(output, args.documents)
            shown = shlex.join(["mambaner", "tag", "INPUTS", *command[4 + len(inputs):]])
            shown = shown.replace(str(folder), "$TMP").replace("INPUTS", "$TMP/pubmed-bench-*.xml.gz")
            results.append({"run": run, "seconds": seconds, "docs_per_s": args.documents / seconds,
                            "exit_status": completed.returncode, "complete": complete, "command": shown,
                            "stderr_tail": completed.stderr[-2000:]})
            rows.append((run, f"{seconds:.1f}", f"{args.documents / seconds:,.1f}",
                         "yes" if complete else f"NO (exit {completed.returncode})"))
            print(f"  {run}: {seconds:.1f} s, {args.documents / seconds:,.1f} docs/s, complete: {complete}",
                  file=sys.stderr, flush=True)
            if not complete:
                print(completed.stderr[-2000:], file=sys.stderr, flush=True)
        print(table(("DEVICE:WORKERS:BATCH", "wall s", "docs/s", "every document once"), rows))
        print("command: " + (results[0]["command"] if results else ""))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="shipped model name or model directory")
    p.add_argument("--device", default="cuda", help="the device compared with the CPU (cuda, or cpu to try the script)")
    p.add_argument("--corpus", default="bc5cdr-disease", help="corpus of training.datasets for sections 1-2")
    p.add_argument("--split", default="devel")
    p.add_argument("--data-dir", default=None, help="corpus folder (default: $MAMBANER_DATA or ../shared/data)")
    p.add_argument("--batch-sizes", default="32,128,512,2048", type=lambda s: [int(x) for x in s.split(",") if x])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--documents", type=int, default=5000, help="PubMed records for section 3 (0: skip it)")
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--runs", default="cuda:1:32,cuda:1:512,cuda:4:512,cpu:16:32",
                   type=lambda s: [x for x in s.split(",") if x], help="DEVICE:WORKERS:BATCH, comma-separated")
    p.add_argument("--json", help="also write every number to this JSON file")
    args = p.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = str(data_dir(None))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"bench_gpu {started}: {' '.join(sys.argv[1:]) or '(defaults)'}; {cpu_name()}, "
          f"{physical_cores()} physical cores", flush=True)
    report = {"started": started, "argv": sys.argv[1:], "cpu": cpu_name(), "cores": physical_cores(),
              "model": model_section(args)}
    if args.documents:
        report["end_to_end"] = end_to_end(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
