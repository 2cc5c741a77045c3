"""The training loop every recipe runs: shuffled length-bucketed batches, optimiser and schedule steps,
gradient clipping, an optional EMA of the weights, per-epoch devel scoring with early stopping, and a
checkpoint after every epoch that ``--resume`` continues from.

A recipe (training/scratch.py, training/finetune.py) prepares its data and network, says how to compute
a batch's loss and what to do at the end of an epoch (score devel, save the best model), and calls
:func:`run_epochs`.

Checkpoints are ``checkpoint.safetensors`` (every tensor: weights, EMA, optimiser moments, torch's random
state) and ``checkpoint.json`` (everything else: schedule, Python's random state, the epochs so far). Both
are data only: unlike a pickled ``torch.load`` checkpoint, a crafted one cannot run code.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mambaner_cli.training.args import RunArgs
from safetensors.torch import load_file, save_file

from mambaner_cli.errors import MambanerError
from mambaner_cli.metrics import entity_scores, only_types
from mambaner_cli.runtime.sentence_tagger import SentenceTagger

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"

Sentence = tuple[list[str], list[str]]  # tokens, IOB2 tags


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def batches(data: Sequence[Any], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches (of example indices) of similar length: less padding, same gradient noise.
    An example is a sequence whose first item's length is the example's length."""
    order = sorted(range(len(data)), key=lambda i: (len(data[i][0]), rng.random()))
    groups = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    return groups


def warmup_then_decay_to_tenth(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of the scratch and pretrain recipes: linear warm-up over ``warmup_steps``,
    then linear decay to 10% of the rate at ``total_steps`` (a small model keeps learning at the end; the
    finetune recipe decays to 0, as the paper does)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.1, 1 - 0.9 * (step - warmup_steps) / max(1, total_steps - warmup_steps))

    return factor


# ----------------------------------------------------------------------------------------- devel scoring

def predict(tagger: SentenceTagger, data: Sequence[Sentence], batch_size: int = 64,
            conventions: list[int] | None = None) -> list[list[str]]:
    """Predicted tags of each sentence; ``conventions``: each sentence's annotation convention (an index),
    for a scratch network that has them and is not folded (``Tagger.convention_id``)."""
    sentences = [tokens for tokens, _ in data]
    if conventions is None:
        return [tags for tags, _ in tagger.tag(sentences, batch_size=batch_size)]
    predicted: list[list[str]] = [[] for _ in data]
    for convention in sorted(set(conventions)):
        chosen = [i for i, c in enumerate(conventions) if c == convention]
        tagger.convention_id = convention  # type: ignore[attr-defined]  (the scratch Tagger)
        for i, (tags, _) in zip(chosen, tagger.tag([sentences[i] for i in chosen], batch_size=batch_size)):
            predicted[i] = tags
    return predicted


def evaluate(tagger: SentenceTagger, data: Sequence[Sentence], batch_size: int = 64,
             conventions: list[int] | None = None) -> dict:
    """Strict seqeval scores of the tagger on gold-tokenized sentences."""
    return entity_scores([tags for _, tags in data], predict(tagger, data, batch_size, conventions))


@dataclass
class RunState:
    """How far a run is: the epochs so far and the best devel F1 (restored by ``--resume``)."""

    history: list[dict] = field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = 0
    epoch: int = 0  # the last finished epoch

    @property
    def seconds(self) -> float:
        return sum(record["seconds"] for record in self.history)


def score_epoch(tagger: SentenceTagger, dev: Sequence[Sentence], batch_size: int, epoch: int, loss: float,
                seconds: float, state: RunState, save: Callable[[], None], log: Callable[[str], None],
                conventions: list[int] | None = None,
                corpora: tuple[list[str], list[int]] | None = None,
                marks: list[tuple[str, ...]] | None = None) -> None:
    """End of an epoch: devel F1 into ``state.history`` and the log; ``save()`` when it is the best so far.
    ``conventions``: each devel sentence's annotation convention; ``corpora``: (names, each devel
    sentence's index into them) to log each corpus's F1 too; ``marks``: each devel sentence's entity
    types (its corpus's), predictions of other types not scored."""
    predicted = predict(tagger, dev, batch_size, conventions)
    if marks is not None:
        predicted = [only_types(tags, types) for tags, types in zip(predicted, marks)]
    f1 = entity_scores([tags for _, tags in dev], predicted)["f1"]
    record: dict[str, Any] = {"epoch": epoch, "loss": loss, "devel_f1": f1, "seconds": seconds}
    by_corpus = ""
    if corpora is not None:
        names, ids = corpora
        record["devel_f1_by_dataset"] = {
            name: entity_scores([dev[i][1] for i in range(len(dev)) if ids[i] == k],
                                [predicted[i] for i in range(len(dev)) if ids[i] == k])["f1"]
            for k, name in enumerate(names)}
        by_corpus = " (" + ", ".join(f"{n} {v:.2f}" for n, v in record["devel_f1_by_dataset"].items()) + ")"
    state.history.append(record)
    improved = f1 > state.best_f1
    if improved:
        state.best_f1, state.best_epoch = f1, epoch
        save()
    log(f"epoch {epoch}: loss {loss:.4f}, devel F1 {f1:.2f}{by_corpus}{' (best)' if improved else ''}, "
        f"{seconds:.0f} s, peak RSS {peak_rss_mb():.0f} MB")


# ---------------------------------------------------------------------------------------------- checkpoints

def _to_json(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` as JSON, its tensors moved to ``tensors`` under their path (dict keys that are not
    strings, e.g. an optimiser's parameter ids, and tuples keep their type)."""
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().clone().contiguous()
        return {"__tensor__": path}
    if isinstance(value, dict):
        items = [[key, _to_json(item, f"{path}.{key}", tensors)] for key, item in value.items()]
        if all(isinstance(key, str) for key in value):
            return {"__dict__": items} if "__tensor__" in value or "__dict__" in value else dict(items)
        return {"__dict__": items}
    if isinstance(value, (list, tuple)):
        items = [_to_json(item, f"{path}.{k}", tensors) for k, item in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint cannot hold {type(value).__name__} (at {path})")


def _from_json(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_from_json(item, tensors) for item in value]
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(item, tensors) for item in value["__tuple__"])
        if set(value) == {"__dict__"}:
            return {key: _from_json(item, tensors) for key, item in value["__dict__"]}
        return {key: _from_json(item, tensors) for key, item in value.items()}
    return value


def save_checkpoint(out: Path, content: dict[str, Any]) -> None:
    """Write ``content`` (nested dicts, lists, tuples, numbers, strings and tensors) as the checkpoint,
    each file replaced atomically (the JSON last: it names the tensors)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _to_json(content, "", tensors)
    partial = out / (CHECKPOINT_TENSORS + ".part")
    save_file(tensors, str(partial))
    partial.replace(out / CHECKPOINT_TENSORS)
    partial = out / (CHECKPOINT_STATE + ".part")
    partial.write_text(json.dumps(skeleton), encoding="utf-8")
    partial.replace(out / CHECKPOINT_STATE)


def load_checkpoint(out: Path) -> dict[str, Any] | None:
    """The content :func:`save_checkpoint` wrote, or None when there is no checkpoint."""
    state_path, tensor_path = out / CHECKPOINT_STATE, out / CHECKPOINT_TENSORS
    if not state_path.is_file():
        return None
    try:
        skeleton = json.loads(state_path.read_text(encoding="utf-8"))
        return _from_json(skeleton, load_file(str(tensor_path)))
    except (OSError, ValueError, KeyError) as error:
        raise MambanerError(f"{state_path}: cannot resume from this checkpoint ({error}); start afresh "
                            "without --resume.") from None


def remove_checkpoint(out: Path) -> None:
    for name in (CHECKPOINT_TENSORS, CHECKPOINT_STATE):
        (out / name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- the loop

@dataclass
class Optimisation:
    """What the loop updates: the module in training mode, the parameters it clips, the optimiser and its
    schedule, an EMA of the weights (or None), and which weights a checkpoint keeps."""

    model: torch.nn.Module
    parameters: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: torch.optim.swa_utils.AveragedModel | None = None
    # the model weights a checkpoint keeps (default: the whole state dict) and how they are put back
    checkpoint_weights: Callable[[], dict[str, torch.Tensor]] | None = None
    restore_weights: Callable[[dict[str, torch.Tensor]], None] | None = None

    def weights(self) -> dict[str, torch.Tensor]:
        return self.checkpoint_weights() if self.checkpoint_weights else self.model.state_dict()

    def restore(self, weights: dict[str, torch.Tensor]) -> None:
        if self.restore_weights:
            self.restore_weights(weights)
        else:
            self.model.load_state_dict(weights)


def run_epochs(args: RunArgs, optimisation: Optimisation, examples: Sequence[Any],
               batch_loss: Callable[[list[int]], torch.Tensor],
               end_epoch: Callable[[int, float, float, RunState], None], log: Callable[[str], None],
               progress: Any = None, last_epoch: int | None = None, early_stopping: bool = True,
               initial_state: RunState | None = None) -> RunState:
    """Train epochs ``1..last_epoch`` (default ``args.epochs``) over ``examples`` and return the run state.

    ``batch_loss(indices)`` is a batch's loss; ``end_epoch(epoch, mean loss, seconds, state)`` scores and
    saves (it updates ``state.best_f1``/``best_epoch``/``history``; ``best_f1`` is whatever score the recipe
    maximises, from ``initial_state``'s). With ``early_stopping`` the run stops
    after ``args.patience`` epochs without a better devel F1. After every epoch a checkpoint is written
    to ``args.output``; with ``args.resume`` a run continues from it, with the same random streams.
    """
    out = Path(args.output)
    rng = random.Random(args.seed)
    state = initial_state or RunState()
    checkpoint = load_checkpoint(out) if args.resume else None
    if checkpoint is not None:
        _restore(checkpoint, optimisation, rng, state, out)
        log(f"resumed from {out / CHECKPOINT_STATE} after epoch {state.epoch}")
    model = optimisation.model
    for epoch in range(state.epoch + 1, (last_epoch or args.epochs) + 1):
        if early_stopping and state.best_epoch and epoch - state.best_epoch > args.patience:
            log(f"early stop: no devel improvement for {args.patience} epochs")
            break
        model.train()
        started, total_loss = time.perf_counter(), 0.0
        groups = batches(examples, args.batch_size, rng)
        task = progress.add_task(f"epoch {epoch}", total=len(groups), loss=0.0) if progress else None
        for n, indices in enumerate(groups, 1):
            loss = batch_loss(indices)
            optimisation.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(optimisation.parameters, args.clip)
            optimisation.optimizer.step()
            optimisation.scheduler.step()
            if optimisation.ema is not None:
                optimisation.ema.update_parameters(model)
            total_loss += loss.item()
            if progress:
                progress.update(task, advance=1, loss=total_loss / n)
        if progress:
            progress.remove_task(task)
        model.eval()  # devel scoring and saving without dropout
        if optimisation.ema is not None:
            optimisation.ema.eval()
        end_epoch(epoch, total_loss / len(groups), time.perf_counter() - started, state)
        state.epoch = epoch
        _checkpoint(out, optimisation, rng, state)
    return state


def _checkpoint(out: Path, optimisation: Optimisation, rng: random.Random, state: RunState) -> None:
    save_checkpoint(out, {
        "weights": optimisation.weights(),
        "ema": optimisation.ema.state_dict() if optimisation.ema is not None else None,
        "optimizer": optimisation.optimizer.state_dict(), "scheduler": optimisation.scheduler.state_dict(),
        "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
        # dropout on a GPU draws from the CUDA generators: without them a resumed run draws other masks
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "history": state.history, "best_f1": state.best_f1, "best_epoch": state.best_epoch, "epoch": state.epoch,
    })


def _restore(checkpoint: dict[str, Any], optimisation: Optimisation, rng: random.Random, state: RunState,
             out: Path) -> None:
    expected = set(optimisation.weights())
    if set(checkpoint["weights"]) != expected:
        different = sorted(set(checkpoint["weights"]) ^ expected)
        raise MambanerError(f"{out / CHECKPOINT_STATE} was written by a different run (other weights, e.g. "
                            f"{different[0]}); start afresh without --resume.")
    optimisation.restore(checkpoint["weights"])
    if optimisation.ema is not None:
        optimisation.ema.load_state_dict(checkpoint["ema"])
    optimisation.optimizer.load_state_dict(checkpoint["optimizer"])
    optimisation.scheduler.load_state_dict(checkpoint["scheduler"])
    version, internal, gauss = checkpoint["rng"]
    rng.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(checkpoint["torch_rng"])
    if checkpoint.get("cuda_rng") is not None and torch.cuda.is_available():  # absent in older checkpoints
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    state.history, state.best_f1 = checkpoint["history"], checkpoint["best_f1"]
    state.best_epoch, state.epoch = checkpoint["best_epoch"], checkpoint["epoch"]
