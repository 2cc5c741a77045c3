"""Seconds per LoRA training step and peak RSS for a Mamba-130M-shaped model (random weights), on a CPU.

    python -m benchmarks.bench_lora_step [--reference] [--threads N] [--steps N]

Our Mamba stack (the chunked CPU scan with its hand-written backward) under the finetune recipe's LoRA
setup, or with ``--reference`` transformers' ``MambaModel`` and its own sequential CPU scan (adapters on
in_proj, x_proj and out_proj only: that mixer reads dt_proj's weight directly). Run each setting in its
own process: peak RSS is per process.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

import torch
from mambaner_cli.training.loop import peak_rss_mb
from torch import nn

from mambaner_cli.model.models.pretrained import PretrainedTagger, add_lora
from mambaner_cli.model.modules.block import BackboneConfig, MambaStack


class ReferenceTagger(nn.Module):
    """transformers' MambaModel with a linear head: the same loss as PretrainedTagger, the reference scan."""

    def __init__(self, hidden: int, layers: int, vocab: int) -> None:
        super().__init__()
        from transformers import MambaConfig, MambaModel

        self.backbone = MambaModel(MambaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                               state_size=16))
        self.head = nn.Linear(hidden, 3)

    def loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return nn.functional.cross_entropy(self.head(states).flatten(0, 1), labels.flatten())


def step_benchmark(reference: bool = False, threads: int = 1, steps: int = 2, batch_size: int = 4,
                   length: int = 176, layers: int = 24, hidden: int = 768, vocab: int = 50280) -> dict:
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if reference:
        model: nn.Module = ReferenceTagger(hidden, layers, vocab)
        get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["in_proj", "x_proj", "out_proj"]))
        model.head.requires_grad_(True)
    else:
        model = PretrainedTagger(MambaStack(BackboneConfig(hidden_size=hidden, num_layers=layers, vocab_size=vocab)),
                                 ["O", "B-Disease", "I-Disease"])
        add_lora(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, vocab, (batch_size, length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 3, ids.shape)}
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, lazy init)
        start = time.perf_counter()
        loss = model.loss(**batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {"model": "transformers reference" if reference else "mambaner stack", "threads": threads,
            "batch": f"{batch_size}x{length}", "layers": layers, "hidden": hidden,
            "seconds_per_step": min(times[1:]), "steps": times,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true", help="transformers' MambaModel instead of ours")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--layers", type=int, default=24)
    options = parser.parse_args(argv)
    print("command: python -m benchmarks.bench_lora_step " + shlex.join(sys.argv[1:] if argv is None else argv))
    print(json.dumps(step_benchmark(options.reference, options.threads, options.steps, layers=options.layers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
