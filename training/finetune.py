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

from dataclasses import asdict
from pathlib import Path

import torch
from mambaner_cli.training.args import FinetuneArgs
from mambaner_cli.training.datasets import labels_of, load_splits
from mambaner_cli.training.loop import (
    Optimisation,
    RunState,
    evaluate,
    peak_rss_mb,
    remove_checkpoint,
    run_epochs,
    score_epoch,
    seed_everything,
)

from mambaner_cli.model.models.pretrained import LORA_TARGETS, PretrainedTagger, add_lora
from mambaner_cli.runtime.device import pick_device, set_threads
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import (
    load_backbone,
    load_tokenizer,
    merge_adapter,
    write_finetune,
    write_run_files,
    write_tokenizer,
)
from mambaner_cli.runtime.subword import SubwordTagger, WordPieces, pad_batch, training_examples

__all__ = ["FinetuneArgs", "train_finetune"]


def model_card(args: FinetuneArgs, metrics: dict, command: str | None) -> str:
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
        f"- Command: `{command}`" if command else "- Command: not recorded (trained from Python)",
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


def train_finetune(args: FinetuneArgs, command: str | None = None, log=print, progress=None) -> dict:
    """Fine-tune, keep the devel-best checkpoint, write the model directory; returns the metrics.
    ``command``: the command line to record in the model card (the CLI passes it)."""
    set_threads(args.threads)
    seed_everything(args.seed)
    device = pick_device(args.device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    train, dev, test, _ = load_splits(args)
    labels = labels_of(train + dev)
    tokenizer = load_tokenizer(args.base_model)
    pieces = WordPieces(tokenizer, args.label_subword)
    examples = training_examples(train, pieces, labels, args.max_length)
    base = load_backbone(args.base_model)
    model = PretrainedTagger(base.stack, labels, bidirectional=args.bidirectional, dropout=args.dropout)
    peft_model = None if args.full else add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout,
                                                 base_model=args.base_model)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    parameters = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in trainable)
    write_tokenizer(out, tokenizer)
    log(f"{len(train)} training sentences ({len(examples)} sequences of at most {args.max_length} subwords), "
        f"{len(dev)} devel; labels {labels}; {parameters:,} parameters, {trained:,} trained "
        f"({'full' if args.full else 'LoRA'}); {device}")
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = (len(examples) + args.batch_size - 1) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(max(1, int(args.warmup * total_steps)), total_steps))

    def trained_weights() -> dict[str, torch.Tensor]:  # a checkpoint keeps only what training changes
        return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    steps = Optimisation(model, trainable, optimizer, scheduler, checkpoint_weights=trained_weights,
                         restore_weights=lambda weights: model.load_state_dict(weights, strict=False))
    tagger = SubwordTagger(model, pieces, out.name, device)
    settings = {"base_model": args.base_model, "max_length": args.max_length, "bidirectional": args.bidirectional,
                "label_subword": args.label_subword,
                "lora": None if peft_model is None else {"r": args.lora_r, "alpha": args.lora_alpha,
                                                         "dropout": args.lora_dropout, "targets": list(LORA_TARGETS)}}

    def batch_loss(indices: list[int]) -> torch.Tensor:
        batch = pad_batch([examples[i] for i in indices], pieces.pad_id)
        return model.loss(**{key: value.to(device) for key, value in batch.items()})

    def end_epoch(epoch: int, loss: float, seconds: float, state: RunState) -> None:
        score_epoch(tagger, dev, args.eval_batch_size, epoch, loss, seconds, state,
                    lambda: write_finetune(out, model, peft_model, base.hf_config, settings), log)

    state = run_epochs(args, steps, examples, batch_loss, end_epoch, log, progress)
    if args.merge:
        merge_adapter(out)
    best = load_tagger(out, device=args.device)
    metrics: dict = {"labels": labels, "best_epoch": state.best_epoch, "epochs_run": len(state.history),
                     "history": state.history, "train_seconds": state.seconds, "peak_rss_mb": peak_rss_mb(),
                     "parameters": parameters, "trainable_parameters": trained,
                     "weights": "merged" if args.merge else ("full" if args.full else "lora"),
                     "sequences": len(examples), "devel": evaluate(best, dev, args.eval_batch_size)}
    if test:
        metrics["test"] = evaluate(best, test, args.eval_batch_size)
        log(f"devel F1 {metrics['devel']['f1']:.2f}, test F1 {metrics['test']['f1']:.2f} (epoch {state.best_epoch})")
    write_run_files(out, metrics, asdict(args), model_card(args, metrics, command))
    remove_checkpoint(out)
    return metrics
