"""Benchmark the selective scan and the tagger on this machine's CPU.

    python -m benchmarks.bench_scan [--threads N] [--batch 1 8] [--lengths 64 176 512] [--repeats 5]

Prints two tables:

1. ``selective_scan_ref`` (sequential, position by position) against ``selective_scan_chunked``, and
   transformers' own torch fallback (``mamba_selective_scan``), forward and forward+backward, at
   d=256 channels and n=16 states (the default tagger's mixer: hidden 128, expand 2).
2. The tagger (tiny and default configs): one training step (loss, backward, AdamW step) and tagging
   (decode under inference mode), in tokens per second, with its Mamba stacks as transformers'
   ``MambaModel`` (the reference: its sequential CPU path, the same weights) against our ``MambaStack``
   (``forward`` in training, ``infer`` in tagging), and the largest difference of their emissions.

Times are the best of ``--repeats`` runs after a warm-up: the machine may be shared, and the best run is
the one least disturbed by other processes.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import MambaConfig, MambaModel
from transformers.models.mamba import modeling_mamba

from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.model.modules.block import BackboneConfig, MambaStack
from mambaner_cli.model.ops.scan import scan_channels_last, selective_scan_chunked, selective_scan_ref


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def scan_arguments(batch: int, length: int, channels: int = 256, states: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(batch, channels, length, generator=g),
        "delta": torch.randn(batch, channels, length, generator=g) * 0.5,
        "A": -torch.exp(
            torch.rand(channels, states, generator=g) * 2.7
        ),  # like -exp(A_log), A_log ~ log(1..16)
        "B": torch.randn(batch, states, length, generator=g),
        "C": torch.randn(batch, states, length, generator=g),
        "D": torch.randn(channels, generator=g),
        "z": torch.randn(batch, channels, length, generator=g),
        "delta_bias": torch.randn(channels, generator=g) * 0.5,
        "delta_softplus": True,
    }


def transformers_scan(**kw) -> torch.Tensor:
    """transformers' torch fallback of the selective scan (what MambaMixer runs without mamba_ssm)."""
    scan = getattr(modeling_mamba.mamba_selective_scan, "__wrapped__", modeling_mamba.mamba_selective_scan)
    return scan(
        kw["u"],
        kw["delta"],
        kw["A"],
        kw["B"],
        kw["C"],
        D=kw["D"],
        z=kw["z"],
        delta_bias=kw["delta_bias"],
        delta_softplus=kw["delta_softplus"],
    )


def mixer_layout(arguments: dict) -> dict:
    """The same arguments in the [b, l, ·] layout the mixer has them in (converted outside the timing)."""
    converted = {
        k: v.transpose(1, 2).contiguous() for k, v in arguments.items() if k in ("u", "delta", "B", "C", "z")
    }
    return {**arguments, **converted}


def mixer_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    delta_bias: torch.Tensor,
    delta_softplus: bool,
) -> torch.Tensor:
    """The whole selective scan as the block's ``Mixer.forward`` computes it on a CPU around
    ``scan_channels_last`` ([b, l, ·])."""
    delta = F.softplus(delta + delta_bias) if delta_softplus else delta + delta_bias  # b l d
    y = scan_channels_last(u, delta, A, B, C)  # b l d
    return (y + u * D) * F.silu(z)  # b l d


def forward_backward(fn: Callable[..., torch.Tensor], arguments: dict) -> Callable[[], None]:
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")

    def run() -> None:
        leaves = {k: arguments[k].detach().requires_grad_() for k in names}
        out = fn(**{**arguments, **leaves})
        torch.autograd.grad(out.sum(), list(leaves.values()))

    return run


def cells(*values: object) -> str:
    return "| " + " | ".join(str(v) for v in values) + " |"


def scan_table(batches: list[int], lengths: list[int], repeats: int) -> None:
    print("\n## Selective scan, d=256, n=16: milliseconds, and speed-up (x) over the sequential reference\n")
    print(
        cells(
            "b",
            "l",
            "fwd ref",
            "fwd transformers",
            "fwd chunked",
            "x",
            "fwd chunked, mixer layout",
            "x",
            "fwd+bwd ref",
            "fwd+bwd chunked",
            "x",
            "fwd+bwd chunked, mixer layout",
            "x",
        )
    )
    print(cells(*["---"] * 13))
    for batch in batches:
        for length in lengths:
            args = scan_arguments(batch, length)
            channels_last = mixer_layout(args)
            with torch.no_grad():
                ref = best_time(lambda args=args: selective_scan_ref(**args), repeats)
                hf = best_time(lambda args=args: transformers_scan(**args), repeats)
                fast = best_time(lambda args=args: selective_scan_chunked(**args), repeats)
                core = best_time(lambda args=channels_last: mixer_scan(**args), repeats)
            ref_fb = best_time(forward_backward(selective_scan_ref, args), max(1, repeats // 2))
            fast_fb = best_time(forward_backward(selective_scan_chunked, args), repeats)
            core_fb = best_time(forward_backward(mixer_scan, channels_last), repeats)
            print(
                cells(
                    batch,
                    length,
                    f"{ref * 1e3:.1f}",
                    f"{hf * 1e3:.1f}",
                    f"{fast * 1e3:.1f}",
                    f"{ref / fast:.1f}",
                    f"{core * 1e3:.1f}",
                    f"{ref / core:.1f}",
                    f"{ref_fb * 1e3:.1f}",
                    f"{fast_fb * 1e3:.1f}",
                    f"{ref_fb / fast_fb:.1f}",
                    f"{core_fb * 1e3:.1f}",
                    f"{ref_fb / core_fb:.1f}",
                ),
                flush=True,
            )
    print(
        "\n'mixer layout': the same computation on [b, l, ·] tensors, as the block's Mixer runs it (the public\n"
        "[b, d, l] API pays for transposing u, delta and y)."
    )


def tagger_batch(config: TaggerConfig, batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
    lengths[0] = length
    mask = torch.arange(length)[None, :] < lengths[:, None]  # b l
    word_ids = torch.randint(2, config.word_vocab_size, (batch, length), generator=g) * mask  # b l
    char_ids = torch.randint(2, config.char_vocab_size, (batch, length, 8), generator=g)  # b l c
    char_ids = char_ids * mask[..., None]  # b l c
    case_ids = torch.randint(1, 7, (batch, length), generator=g) * mask  # b l
    tags = torch.randint(0, len(config.labels), (batch, length), generator=g) * mask  # b l
    return {"word_ids": word_ids, "char_ids": char_ids, "case_ids": case_ids, "mask": mask, "tags": tags}


def transformers_config(config: BackboneConfig) -> MambaConfig:
    """The transformers ``MambaConfig`` of a stack of this shape."""
    return MambaConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                       num_hidden_layers=config.num_layers, state_size=config.state_size, expand=config.expand,
                       conv_kernel=config.conv_kernel, time_step_rank=config.rank, use_bias=config.use_bias,
                       use_conv_bias=config.use_conv_bias, layer_norm_epsilon=config.layer_norm_epsilon,
                       residual_in_fp32=config.residual_in_fp32, use_cache=False)


class TransformersStack(nn.Module):
    """transformers' ``MambaModel`` with a stack's weights, behind ``MambaStack``'s interface (``forward``
    and ``infer`` on embeddings): the reference, its sequential CPU path."""

    def __init__(self, stack: MambaStack) -> None:
        super().__init__()
        self.model = MambaModel(transformers_config(stack.config))
        self.model.load_state_dict(stack.state_dict())  # strict: the same names and shapes

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(inputs_embeds=hidden_states, attention_mask=attention_mask,
                          use_cache=False).last_hidden_state

    @torch.no_grad()
    def infer(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(hidden_states, attention_mask)


def with_transformers_stacks(model: MambaTagger) -> MambaTagger:
    """A copy of the tagger whose Mamba stacks are transformers' ``MambaModel``s with the same weights."""
    slow = copy.deepcopy(model)
    slow.forward_mamba = TransformersStack(model.forward_mamba)
    if model.backward_mamba is not None:
        slow.backward_mamba = TransformersStack(model.backward_mamba)
    return slow


def tagger_table(repeats: int, batch: int, length: int) -> None:
    labels = ["O", "B-Disease", "I-Disease"]
    configs = {
        "tiny": TaggerConfig(
            labels=labels,
            word_vocab_size=2000,
            char_vocab_size=100,
            word_dim=50,
            hidden_size=64,
            num_layers=1,
            state_size=8,
        ),
        "default": TaggerConfig(labels=labels, word_vocab_size=20000, char_vocab_size=100),
    }
    print(f"\n## Tagger, batch of {batch} sentences of {length // 2}..{length} tokens: tokens per second\n")
    print(
        cells(
            "config",
            "parameters",
            "train step, transformers",
            "train step, ours",
            "x",
            "tagging, transformers",
            "tagging, ours",
            "x",
            "max emission difference",
        )
    )
    print(cells(*["---"] * 9))
    for name, config in configs.items():
        torch.manual_seed(0)
        fast = MambaTagger(config)
        slow = with_transformers_stacks(fast)
        data = tagger_batch(config, batch, length)
        tokens = int(data["mask"].sum())
        features = {k: v for k, v in data.items() if k != "tags"}
        with torch.inference_mode():  # the same network: the same emissions, up to float rounding
            slow.eval()
            fast.eval()
            difference = (slow(**features, infer=True) - fast(**features, infer=True)).abs()[data["mask"]].max()
        results = []
        for model in (slow, fast):
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def step(model=model, optimizer=optimizer, data=data) -> None:
                model.train()
                loss = model.loss(**data)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            def tag(model=model, features=features) -> None:
                model.eval()
                with torch.inference_mode():
                    model.decode(**features)

            results.append((tokens / best_time(step, repeats), tokens / best_time(tag, repeats)))
        (slow_train, slow_tag), (fast_train, fast_tag) = results
        parameters = sum(p.numel() for p in fast.parameters())
        print(
            cells(
                name,
                f"{parameters:,}",
                f"{slow_train:,.0f}",
                f"{fast_train:,.0f}",
                f"{fast_train / slow_train:.1f}",
                f"{slow_tag:,.0f}",
                f"{fast_tag:,.0f}",
                f"{fast_tag / slow_tag:.1f}",
                f"{float(difference):.1g}",
            ),
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="scan batch sizes")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 176, 512], help="scan lengths")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tagger-batch", type=int, default=32)
    parser.add_argument("--tagger-length", type=int, default=64, help="longest sentence in the tagger batch")
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-tagger", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shown = sys.argv[1:] if argv is None else argv
    print("command: " + " ".join(["python -m benchmarks.bench_scan", *shown]))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    if not args.skip_scan:
        scan_table(args.batch, args.lengths, args.repeats)
    if not args.skip_tagger:
        tagger_table(args.repeats, args.tagger_batch, args.tagger_length)


if __name__ == "__main__":
    main()
