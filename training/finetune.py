"""The `finetune` recipe: the paper's setup, a pretrained Mamba language model tuned for NER with LoRA.

Defaults follow the paper: PEFT LoRA on the projections of every Mamba block (r 8, alpha 16, dropout
0.1), a linear classification head, AdamW at 1e-4 with linear warm-up over the first 10% of steps and
linear decay to zero, batch 4, at most 176 subword tokens per sequence, 10 epochs; the checkpoint
kept is the one with the best devel F1 (strict seqeval). ``--full`` tunes every weight instead of
LoRA. The documented base model is ``state-spaces/mamba-130m-hf`` (needs the Hugging Face hub and,
realistically, a GPU); any directory written by transformers' ``save_pretrained`` works.

The model directory references the base weights (recorded path or hub id) and holds the adapter, the
head and the tokenizer; ``--merge`` also writes the merged backbone so that it stands alone.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from mambaner_cli.training.datasets import labels_of
from mambaner_cli.training.train import (
    TrainingArgs,
    batches,
    evaluate,
    load_data,
    peak_rss_mb,
    restore_run_state,
    run_state,
    score_epoch,
    seed_everything,
)
from safetensors.torch import save_file

from mambaner_cli.errors import MambanerError
from mambaner_cli.invocation import command_line
from mambaner_cli.model.models.pretrained import LORA_TARGETS, PretrainedTagger, add_lora
from mambaner_cli.runtime.device import pick_device
from mambaner_cli.runtime.model_dir import FORMAT, read_config, write_json
from mambaner_cli.runtime.subword import (
    DEFAULT_WINDOW,
    LABEL_SUBWORDS,
    SubwordTagger,
    WordPieces,
    base_model_source,
    load_backbone,
    load_tokenizer,
    no_progress_bars,
    pad_batch,
    training_examples,
)
from mambaner_cli.runtime.tagger import Tagger

DOCUMENTED_BASE = "state-spaces/mamba-130m-hf"


@dataclass
class FinetuneArgs(TrainingArgs):
    base_model: str = DOCUMENTED_BASE  # a save_pretrained directory or a hub id
    epochs: int = 10  # the paper's
    batch_size: int = 4  # the paper's
    lr: float = 1e-4  # the paper's
    weight_decay: float = 0.01  # AdamW's usual default
    warmup: float = 0.1  # fraction of steps of linear warm-up, then linear decay to 0 (the paper's)
    max_length: int = 176  # subword tokens per training sequence (the paper's); longer sentences are split
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    full: bool = False  # tune every weight instead of LoRA
    merge: bool = False  # also save the merged backbone: a standalone model directory
    bidirectional: bool = False  # also read each sequence right to left (the paper's model is causal)
    label_subword: str = "first"  # which subword of a word carries its label: first or last
    dropout: float = 0.1  # before the head
    patience: int = 3  # epochs without a better devel F1 before stopping
    device: str = "auto"
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_subword not in LABEL_SUBWORDS:
            raise MambanerError(f"--label-subword must be one of {', '.join(LABEL_SUBWORDS)}.")
        if self.full and self.merge:
            raise MambanerError("--merge merges a LoRA adapter; with --full the whole backbone is saved anyway.")


def base_model_record(base_model: str) -> dict:
    """The base model as given, and its absolute path when it is a local directory."""
    path = Path(base_model).expanduser()
    return {"base_model": base_model, "base_model_path": str(path.resolve()) if path.is_dir() else None}


def save_model(out: Path, model: PretrainedTagger, peft_model, args: FinetuneArgs) -> None:
    """Write config, head and adapter (LoRA) or backbone (--full) of the current weights."""
    out.mkdir(parents=True, exist_ok=True)
    head = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
    save_file(head, str(out / "head.safetensors"))
    if peft_model is not None:
        peft_model.save_pretrained(str(out / "adapter"))
    else:
        with no_progress_bars():
            model.backbone.save_pretrained(str(out / "backbone"))
    write_json(out / "config.json", {
        "format": FORMAT, "version": 1, "recipe": "finetune", "name": out.name,
        **base_model_record(args.base_model), "weights": "lora" if peft_model is not None else "full",
        "labels": model.labels, "max_length": args.max_length, "bidirectional": args.bidirectional,
        "label_subword": args.label_subword, "window": DEFAULT_WINDOW,
        "lora": None if peft_model is None else {"r": args.lora_r, "alpha": args.lora_alpha,
                                                 "dropout": args.lora_dropout, "targets": list(LORA_TARGETS)},
    })


def save_merged(out: Path) -> None:
    """Merge the saved adapter into the base weights, save them as ``backbone/`` and drop the adapter:
    the model directory then stands alone (``--merge``)."""
    from peft import PeftModel

    config = read_config(out)
    network = PretrainedTagger(load_backbone(base_model_source(config)), config["labels"],
                               bidirectional=config["bidirectional"])
    merged = PeftModel.from_pretrained(network, str(out / "adapter")).merge_and_unload()
    with no_progress_bars():
        merged.backbone.save_pretrained(str(out / "backbone"))
    config["weights"] = "merged"
    write_json(out / "config.json", config)
    shutil.rmtree(out / "adapter")


def model_card(args: FinetuneArgs, metrics: dict, command: str) -> str:
    data = ", ".join(args.datasets) if not args.train_files else ", ".join(args.train_files)
    method = ("full fine-tuning" if args.full else
              f"LoRA (r {args.lora_r}, alpha {args.lora_alpha}, dropout {args.lora_dropout}) on "
              f"{', '.join(LORA_TARGETS)}")
    direction = "bidirectional (the backbone also reads each sentence reversed)" if args.bidirectional \
        else "causal (left to right, as the paper's model)"
    lines = [
        f"# mambaner tagger: {Path(args.output).name}",
        "",
        (f"A pretrained Mamba (`{args.base_model}`) with a linear token-classification head, tuned by "
         f"mambaner's `finetune` recipe with {method}; {direction}. Each word is labelled on its "
         f"{args.label_subword} subword; decoding is IOB2-constrained Viterbi over words."),
        "",
        f"- Command: `{command}`",
        f"- Base model: `{args.base_model}` (weights {metrics['weights']}"
        + ("; the base weights are read from there at load time" if metrics["weights"] == "lora" else "") + ")",
        f"- Training data: {data} (IOB train split; checkpoint chosen on the devel split)",
        f"- Labels: {', '.join(metrics['labels'])}",
        f"- Parameters: {metrics['parameters']:,} in all, {metrics['trainable_parameters']:,} trained",
        (f"- Optimiser: AdamW lr {args.lr}, weight decay {args.weight_decay}, linear warm-up over "
         f"{args.warmup:.0%} of the steps then linear decay; batch {args.batch_size}; at most "
         f"{args.max_length} subwords per sequence; {args.epochs} epochs (patience {args.patience})"),
        (f"- Seed: {args.seed}; best epoch {metrics['best_epoch']} of {metrics['epochs_run']}; "
         f"training time {metrics['train_seconds'] / 60:.1f} min; peak RSS {metrics['peak_rss_mb']:.0f} MB"),
        "",
        "| split | precision | recall | F1 (strict, seqeval) |",
        "| --- | --- | --- | --- |",
    ]
    for split in ("devel", "test"):
        if split in metrics:
            m = metrics[split]
            lines.append(f"| {split} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} |")
    return "\n".join(lines) + "\n"


def linear_schedule(warmup_steps: int, total_steps: int):
    """Linear warm-up to the full rate over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def train_finetune(args: FinetuneArgs, log=print, progress=None) -> dict:
    """Fine-tune, keep the devel-best checkpoint, write the model directory; returns the metrics."""
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    device = pick_device(args.device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    train, dev, test = load_data(args)
    labels = labels_of(train + dev)
    tokenizer = load_tokenizer(args.base_model)
    pieces = WordPieces(tokenizer, args.label_subword)
    examples = training_examples(train, pieces, labels, args.max_length)
    model = PretrainedTagger(load_backbone(args.base_model), labels, bidirectional=args.bidirectional,
                             dropout=args.dropout)
    peft_model = None if args.full else add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout,
                                                 base_model=args.base_model)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    parameters = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in trainable)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    log(f"{len(train)} training sentences ({len(examples)} sequences of at most {args.max_length} subwords), "
        f"{len(dev)} devel; labels {labels}; {parameters:,} parameters, {trained:,} trained "
        f"({'full' if args.full else 'LoRA'}); {device}")
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = (len(examples) + args.batch_size - 1) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(max(1, int(args.warmup * total_steps)), total_steps))
    tagger = SubwordTagger(model, pieces, out.name, device)
    rng = random.Random(args.seed)
    history: list[dict] = []
    best_f1, best_epoch, start_epoch = -1.0, 0, 1
    checkpoint_path = out / "checkpoint.pt"
    if args.resume and checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, weights_only=False, map_location="cpu")
        missing = set(checkpoint["trainable"]) ^ {n for n, p in model.named_parameters() if p.requires_grad}
        if missing:
            raise MambanerError(f"{checkpoint_path} was written by a different run (other trained weights, "
                                f"e.g. {min(missing)}); start afresh without --resume.")
        model.load_state_dict(checkpoint["trainable"], strict=False)
        history, best_f1, best_epoch, start_epoch = restore_run_state(checkpoint, optimizer, scheduler, rng)
        log(f"resumed from {checkpoint_path} after epoch {checkpoint['epoch']}")
    started = time.perf_counter() - sum(h["seconds"] for h in history)
    for epoch in range(start_epoch, args.epochs + 1):
        if best_epoch and epoch - best_epoch > args.patience:
            log(f"early stop: no devel improvement for {args.patience} epochs")
            break
        model.train()
        epoch_start, total_loss = time.perf_counter(), 0.0
        groups = batches(examples, args.batch_size, rng)  # similar lengths together (little padding)
        task = progress.add_task(f"epoch {epoch}", total=len(groups), loss=0.0) if progress else None
        for n, group in enumerate(groups, 1):
            batch = pad_batch([examples[i] for i in group], pieces.pad_id)
            batch = {key: value.to(device) for key, value in batch.items()}
            loss = model.loss(**batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, args.clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
            if progress:
                progress.update(task, advance=1, loss=total_loss / n)
        if progress:
            progress.remove_task(task)
        best_f1, best_epoch = score_epoch(
            tagger, dev, args.eval_batch_size, epoch, total_loss / len(groups), time.perf_counter() - epoch_start,
            history, best_f1, best_epoch, lambda: save_model(out, model, peft_model, args), log)
        torch.save({"trainable": {n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
                    **run_state(optimizer, scheduler, rng, history, best_f1, best_epoch, epoch)}, checkpoint_path)
    train_seconds = time.perf_counter() - started
    if args.merge:
        save_merged(out)
    best = Tagger.load(out, device=args.device)
    metrics: dict = {"labels": labels, "best_epoch": best_epoch, "epochs_run": len(history),
                     "history": history, "train_seconds": train_seconds, "peak_rss_mb": peak_rss_mb(),
                     "parameters": parameters, "trainable_parameters": trained,
                     "weights": "merged" if args.merge else ("full" if args.full else "lora"),
                     "sequences": len(examples), "devel": evaluate(best, dev, args.eval_batch_size)}
    if test:
        metrics["test"] = evaluate(best, test, args.eval_batch_size)
        log(f"devel F1 {metrics['devel']['f1']:.2f}, test F1 {metrics['test']['f1']:.2f} (epoch {best_epoch})")
    command = command_line()
    write_json(out / "metrics.json", metrics)
    write_json(out / "training_args.json", asdict(args))
    (out / "README.md").write_text(model_card(args, metrics, command), encoding="utf-8")
    checkpoint_path.unlink(missing_ok=True)
    return metrics


def step_benchmark(fast_scan: bool = True, threads: int = 1, steps: int = 2, batch_size: int = 4,
                   length: int = 176, layers: int = 24, hidden: int = 768) -> dict:
    """Seconds per LoRA training step and peak RSS for a Mamba-130M-shaped model (random weights).

    ``fast_scan=False`` times transformers' own mixer (its sequential CPU scan) instead of ours; the
    adapters are then still attached but the one on dt_proj is ignored by that mixer (timing only).
    Run each setting in its own process: peak RSS is per process.
    """
    from transformers import MambaConfig, MambaModel
    from transformers.models.mamba.modeling_mamba import MambaMixer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = MambaConfig(vocab_size=50280, hidden_size=hidden, num_hidden_layers=layers, state_size=16)
    model = PretrainedTagger(MambaModel(config), ["O", "B-Disease", "I-Disease"])
    add_lora(model)
    if not fast_scan:
        for module in model.modules():
            if type(module).__name__ == "FastMambaMixer":
                module.__class__ = MambaMixer
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (batch_size, length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 3, ids.shape)}
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, lazy init)
        start = time.perf_counter()
        loss = model.loss(**batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {"fast_scan": fast_scan, "threads": threads, "batch": f"{batch_size}x{length}", "layers": layers,
            "hidden": hidden, "seconds_per_step": min(times[1:]), "steps": times,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":  # python -m mambaner_cli.training.finetune [--slow] [--threads N] [--steps N]: one step's cost
    import argparse
    import json

    parser = argparse.ArgumentParser(description=step_benchmark.__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="transformers' sequential mixer instead of ours")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    options = parser.parse_args()
    print(json.dumps(step_benchmark(not options.slow, options.threads, options.steps)))
