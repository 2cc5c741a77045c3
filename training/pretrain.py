"""The `pretrain` recipe: a bidirectional language model on unlabeled text, the encoder that
`train scratch --init-from` starts from (models/language_model.py).

Phases: the sentences (one tokenized sentence a line; every ``heldout_every``-th held out to measure
perplexity), the vocabularies (the words the encoder knows, the words its heads predict), the network, the
epochs (training/loop.py, the same loop as every recipe), the encoder directory (runtime/model_dir.py).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from mambaner_cli.training.args import PretrainArgs
from mambaner_cli.training.loop import (
    Optimisation,
    RunState,
    peak_rss_mb,
    remove_checkpoint,
    run_epochs,
    seed_everything,
    warmup_then_decay_to_tenth,
)

from mambaner_cli.corpora import UNLABELED_FILE, resolve_data_dir
from mambaner_cli.errors import MambanerError
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.features import Vocabulary, encode_batch, normalize_word
from mambaner_cli.model.models.language_model import BiLanguageModel
from mambaner_cli.runtime.device import set_threads
from mambaner_cli.runtime.model_dir import write_encoder, write_run_files
from mambaner_cli.text.ascii import ascii_form

__all__ = ["PretrainArgs", "train_pretrain"]

Tokens = list[str]


def read_sentences(paths: list[Path], max_length: int, limit: int = 0) -> Iterator[Tokens]:
    """Tokenized sentences, one a line (tokens separated by whitespace); longer ones cut into pieces of at
    most ``max_length`` tokens; empty lines skipped; at most ``limit`` (0: all)."""
    count = 0
    for path in paths:
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
        except OSError as error:
            raise MambanerError(f"Cannot read {path}: {error.strerror or error}") from None
        with handle:
            for line in handle:
                tokens = line.split()
                for start in range(0, len(tokens), max_length):
                    yield tokens[start:start + max_length]
                    count += 1
                    if limit and count >= limit:
                        return


def text_files(args: PretrainArgs) -> list[Path]:
    if args.text_files:
        return [Path(f) for f in args.text_files]
    path = resolve_data_dir(args.data_dir) / UNLABELED_FILE
    if not path.is_file():
        raise MambanerError(f"{path} is missing: give --text FILE (tokenized sentences, one a line).")
    return [path]


@dataclass
class PretrainingData:
    train: list[Tokens]
    heldout: list[Tokens]
    words: Vocabulary
    chars: Vocabulary
    predicted: list[str]  # the heads' words; index + 1 is the class id, 0 every other word
    predicted_ids: dict[str, int]

    def targets(self, sentences: list[Tokens], length: int) -> torch.Tensor:
        """[b, l] class ids of each token's normalised word (0: not a predicted word; padding 0, masked)."""
        rows = [[self.predicted_ids.get(normalize_word(t), 0) for t in s] + [0] * (length - len(s))
                for s in sentences]
        return torch.tensor(rows, dtype=torch.long)


def prepare_data(args: PretrainArgs, log) -> PretrainingData:
    sentences = list(read_sentences(text_files(args), args.max_sentence_length, args.max_sentences))
    heldout = sentences[args.heldout_every - 1::args.heldout_every]
    train = [s for k, s in enumerate(sentences, 1) if k % args.heldout_every]
    if not train or not heldout:
        raise MambanerError(f"Too little text to pretrain on: {len(sentences)} sentences.")
    counts = Counter(normalize_word(token) for tokens in train for token in tokens)
    words = Vocabulary.build(counts, args.min_word_count)
    chars = Vocabulary.build(Counter(char for tokens in train for token in tokens for char in ascii_form(token)), 1)
    predicted = [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    predicted = predicted[: args.predicted_words]
    log(f"{len(train):,} training and {len(heldout):,} held-out sentences, "
        f"{sum(map(len, train)):,} tokens; {len(words):,} words, {len(chars):,} characters; "
        f"{len(predicted):,} predicted words")
    return PretrainingData(train, heldout, words, chars, predicted, {w: k + 1 for k, w in enumerate(predicted)})


def build_network(args: PretrainArgs, data: PretrainingData, log) -> BiLanguageModel:
    pretrained = None
    if args.glove_top:
        from mambaner_cli.training.word_vectors import glove_vocabulary

        data.words, pretrained = glove_vocabulary(data.words, args.glove_top, log)
        args.word_dim = pretrained.shape[1]
    config = TaggerConfig(labels=["O"], word_vocab_size=len(data.words), char_vocab_size=len(data.chars),
                          word_dim=args.word_dim, hidden_size=args.hidden_size, num_layers=args.num_layers,
                          state_size=args.state_size, dropout=args.dropout, use_crf=False)
    network = BiLanguageModel(config, len(data.predicted) + 1)
    if pretrained is not None:
        with torch.no_grad():
            network.features.words.weight.copy_(pretrained)
    return network


def batch_tensors(data: PretrainingData, sentences: list[Tokens], network: BiLanguageModel) -> dict:
    features = encode_batch(sentences, data.words, data.chars, network.config.max_word_len)
    features["targets"] = data.targets(sentences, features["word_ids"].shape[1])
    return features


@torch.no_grad()
def heldout_perplexity(network: BiLanguageModel, data: PretrainingData, batch_size: int = 64) -> dict:
    """Per-word perplexity of each direction on the held-out sentences (every word not predicted counts as
    its one class, so this is over a vocabulary of ``len(predicted) + 1`` classes)."""
    network.eval()
    totals = {"forward": 0.0, "backward": 0.0}
    words = 0
    order = sorted(range(len(data.heldout)), key=lambda i: len(data.heldout[i]))
    for first in range(0, len(order), batch_size):
        batch = [data.heldout[i] for i in order[first:first + batch_size]]
        predictions = sum(max(0, len(s) - 1) for s in batch)  # each direction predicts all but one word
        if not predictions:
            continue
        forward, backward = network.losses(**batch_tensors(data, batch, network))
        totals["forward"] += forward.item() * predictions
        totals["backward"] += backward.item() * predictions
        words += predictions
    return {direction: math.exp(total / max(1, words)) for direction, total in totals.items()}


def train_pretrain(args: PretrainArgs, command: str | None = None, log=print, progress=None) -> dict:
    """Pretrain, keep the epoch with the lowest held-out perplexity, write the encoder directory; returns
    the metrics. ``command``: the command line to record (the CLI passes it)."""
    set_threads(args.threads)
    seed_everything(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, log)
    network = build_network(args, data, log)
    parameters = sum(p.numel() for p in network.parameters())
    log(f"{parameters:,} parameters ({sum(p.numel() for p in network.forward_head.parameters()) * 2:,} in the "
        "prediction heads, dropped when a tagger starts from the encoder)")
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total_steps = (len(data.train) + args.batch_size - 1) // args.batch_size * args.epochs
    warmup_steps = max(1, int(args.warmup * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay_to_tenth(warmup_steps, total_steps))
    steps = Optimisation(network, list(network.parameters()), optimizer, scheduler)
    examples = [(tokens,) for tokens in data.train]  # the loop buckets examples by their first item's length

    def batch_loss(indices: list[int]) -> torch.Tensor:
        return network.loss(**batch_tensors(data, [data.train[i] for i in indices], network))

    def end_epoch(epoch: int, loss: float, seconds: float, state: RunState) -> None:
        perplexity = heldout_perplexity(network, data)
        mean = math.sqrt(perplexity["forward"] * perplexity["backward"])  # geometric mean of the two
        state.history.append({"epoch": epoch, "loss": loss, "heldout_perplexity": perplexity, "seconds": seconds})
        improved = -mean > state.best_f1  # the loop's "best score": here minus the perplexity
        if improved:
            state.best_f1, state.best_epoch = -mean, epoch
            write_encoder(out, network, data.words, data.chars, data.predicted, out.name)
        log(f"epoch {epoch}: loss {loss:.4f}, held-out perplexity forward {perplexity['forward']:.1f}, backward "
            f"{perplexity['backward']:.1f}{' (best)' if improved else ''}, {seconds:.0f} s, "
            f"peak RSS {peak_rss_mb():.0f} MB")

    started = time.perf_counter()
    state = RunState(best_f1=-math.inf)
    state = run_epochs(args, steps, examples, batch_loss, end_epoch, log, progress, initial_state=state)
    metrics = {"best_epoch": state.best_epoch, "epochs_run": len(state.history), "history": state.history,
               "train_seconds": state.seconds, "wall_seconds": time.perf_counter() - started,
               "peak_rss_mb": peak_rss_mb(), "parameters": parameters,
               "heldout_perplexity": next(h["heldout_perplexity"] for h in state.history
                                          if h["epoch"] == state.best_epoch),
               "sentences": {"train": len(data.train), "heldout": len(data.heldout)},
               "predicted_words": len(data.predicted),
               "tokens": sum(map(len, data.train))}
    write_run_files(out, metrics, asdict(args), model_card(args, metrics, command))
    remove_checkpoint(out)
    return metrics


def model_card(args: PretrainArgs, metrics: dict, command: str | None) -> str:
    files = ", ".join(args.text_files) or f"the data folder's {UNLABELED_FILE}"
    perplexity = metrics["heldout_perplexity"]
    return "\n".join([
        f"# mambaner encoder: {Path(args.output).name}",
        "",
        ("A bidirectional Mamba language model (token features → forward and backward Mamba stacks, each "
         "predicting the next or the previous word), pretrained by mambaner's `pretrain` recipe. Not a "
         "tagger: `mambaner train scratch --init-from DIR` starts a tagger from its encoder."),
        "",
        f"- Command: `{command}`" if command else "- Command: not recorded (trained from Python)",
        (f"- Text: {files} ({metrics['sentences']['train']:,} sentences, {metrics['tokens']:,} tokens; every "
         f"{args.heldout_every}th sentence held out: {metrics['sentences']['heldout']:,})"),
        f"- Predicted words: the {metrics['predicted_words']:,} most frequent (normalised), the rest one class",
        f"- Parameters: {metrics['parameters']:,}",
        (f"- Seed: {args.seed}; best epoch {metrics['best_epoch']} of {metrics['epochs_run']}; training time "
         f"{metrics['train_seconds'] / 60:.1f} min; peak RSS {metrics['peak_rss_mb']:.0f} MB"),
        (f"- Held-out perplexity: forward {perplexity['forward']:.1f}, backward {perplexity['backward']:.1f} "
         f"(over {metrics['predicted_words'] + 1:,} classes)"),
        "",
    ])
