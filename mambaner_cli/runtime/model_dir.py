"""Model directories: the one owner of their format, written and read here for every recipe.

A model directory is self-contained. Every recipe writes::

    config.json         {"format": "mambaner-tagger", "version": 1, "recipe": "scratch" | "finetune",
                         "name", "window", ...the recipe's fields}
    README.md           model card (command, data, seed, devel/test F1)
    metrics.json        devel/test scores of the training run
    training_args.json  every argument of the training run

``scratch`` (the small tagger, models/tagger.py) adds::

    config.json         + "tagger": TaggerConfig fields, "default_convention" (with conventions)
    vocab.json          {"words": [...], "chars": [...]}   (index = id; 0 is padding, 1 unknown)
    model.safetensors   the weights (MambaTagger's state dict)
    lexicon.txt.gz      the disease lexicon, one normalized entry a line (with lexicon_dim > 0)
    lexicon-TYPE.txt.gz the lexicon of each other type in the config's lexicon_types (e.g. lexicon-gene.txt.gz)

``pretrain`` (a bidirectional language model, models/language_model.py: an encoder that
``train scratch --init-from`` starts from; not a tagger) adds::

    config.json         + "tagger": TaggerConfig of its encoder, "prediction_vocabulary_size"
    vocab.json          {"words": [...], "chars": [...], "predicted": [...]}   (predicted: the head's words)
    model.safetensors   the weights (encoder and heads; a packed encoder has no heads and no "predicted")

Any weights file may hold float16 tensors (``mambaner train pack``: the shipped models are stored so, half
the size); they are read back as float32, so the network computes in float32 either way.

``finetune`` (a pretrained Mamba with a token head, models/pretrained.py) adds::

    config.json         + "base_model", "base_model_path", "labels", "max_length", "bidirectional",
                          "label_subword", "weights": "lora" | "full" | "merged", "lora"
    tokenizer/          the base model's tokenizer (save_pretrained)
    adapter/            the LoRA adapter (peft save_pretrained)                   weights == "lora"
    backbone/           the whole fine-tuned backbone, a Hugging Face checkpoint   weights == "full" | "merged"
    head.safetensors    the classification head

With LoRA weights the base model is read from ``base_model_path`` (the absolute path it had at training
time) when that exists, else from ``base_model`` as given (a path or a Hugging Face hub id).

Loading goes in one order: read the files, check them against each other (a vocabulary from another
model, weights of another shape), fold the chosen annotation convention, build the network. The shipped
models live in the package (``mambaner_cli/shipped_models/NAME``) and are chosen by name.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mambaner_cli.errors import MambanerError, MambanerUsageError

if TYPE_CHECKING:  # torch and the model code load only when a model does
    import torch

    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.features import Vocabulary
    from mambaner_cli.model.lexicon import LexiconMatcher, Lexicons
    from mambaner_cli.model.models.pretrained import PretrainedTagger
    from mambaner_cli.model.models.tagger import MambaTagger
    from mambaner_cli.model.modules.block import MambaStack

FORMAT = "mambaner-tagger"
VERSION = 1
RECIPES = ("scratch", "finetune", "pretrain")  # pretrain: an encoder to start taggers from, not a tagger
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
ARGS_FILE = "training_args.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.safetensors"
LEXICON_FILE = "lexicon.txt.gz"  # the disease lexicon's: see lexicon_file
TOKENIZER_DIR = "tokenizer"
ADAPTER_DIR = "adapter"
BACKBONE_DIR = "backbone"
HEAD_FILE = "head.safetensors"
FINETUNE_WEIGHTS = ("lora", "full", "merged")
LABEL_SUBWORDS = ("first", "last")  # which subword of a word carries its label (finetune's label_subword)
SCRATCH_WINDOW = 256  # tokens per tagging window of the scratch tagger (longer sentences are windowed)
FINETUNE_WINDOW = 512  # subwords per tagging window; only bounds memory (the backbone saw long contexts)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped_models"
DEFAULT_MODEL = "default"


# ------------------------------------------------------------------------------------ finding a model

def _shipped(encoders: bool) -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CONFIG_FILE).is_file()
                  and (read_json(p / CONFIG_FILE).get("recipe") == "pretrain") == encoders)


def shipped_models() -> list[str]:
    """The short names of the taggers inside the package."""
    return _shipped(encoders=False)


def shipped_encoders() -> list[str]:
    """The short names of the pretrained encoders inside the package (for ``train scratch --init-from``)."""
    return _shipped(encoders=True)


def resolve_encoder(name_or_path: str | Path) -> Path:
    """A shipped encoder's short name (``encoder``) or a path to an encoder directory."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if "/" not in str(name_or_path) and str(name_or_path) in shipped_encoders():
        return SHIPPED_DIR / str(name_or_path)
    raise MambanerUsageError(f"No encoder {str(name_or_path)!r}: give an encoder directory (`mambaner train "
                             f"pretrain` writes one) or a shipped encoder ({', '.join(shipped_encoders()) or 'none'}).")


def resolve_model(name_or_path: str | Path | None) -> Path:
    """A shipped model's short name (``default``, ``ncbi``…) or a path to a model directory."""
    name_or_path = str(name_or_path or DEFAULT_MODEL)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise MambanerError(f"{path} is not a model directory (no {CONFIG_FILE}).")
        return path
    shipped = SHIPPED_DIR / name_or_path
    if "/" not in name_or_path and (shipped / CONFIG_FILE).is_file():
        return shipped
    choices = ", ".join(shipped_models()) or "none installed"
    raise MambanerUsageError(f"No model {name_or_path!r}: give a model directory or one of the shipped models "
                        f"({choices}).")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MambanerError(f"{path} is missing: the model directory is incomplete.") from None
    except json.JSONDecodeError as error:
        raise MambanerError(f"{path}:{error.lineno}: not valid JSON ({error.msg}).") from None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json, checked to be a mambaner model of a recipe this version knows."""
    path = model_dir / CONFIG_FILE
    config = read_json(path)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise MambanerError(f"{path} is not a mambaner model (format {found!r}, expected {FORMAT!r}).")
    if config.get("version", VERSION) > VERSION:
        raise MambanerError(f"{path} has format version {config['version']}; this mambaner reads version "
                            f"{VERSION}: upgrade mambaner.")
    recipe = config.setdefault("recipe", "scratch")
    if recipe not in RECIPES:
        raise MambanerError(f"{path}: unknown recipe {recipe!r} (this mambaner knows {', '.join(RECIPES)}).")
    return config


def model_conventions(name_or_path: str | Path | None) -> list[str]:
    """The annotation conventions a model can tag by (empty for a model without them)."""
    config = read_config(resolve_model(name_or_path))
    return list(config.get("tagger", {}).get("conventions", []))


def write_run_files(out: Path, metrics: dict, training_args: dict, card: str) -> None:
    """metrics.json, training_args.json and the README.md model card, for every recipe."""
    write_json(out / METRICS_FILE, metrics)
    write_json(out / ARGS_FILE, training_args)
    (out / CARD_FILE).write_text(card, encoding="utf-8")


def read_metrics(model_dir: Path) -> dict[str, Any]:
    """metrics.json of a model directory (MambanerError when missing or not JSON)."""
    return read_json(model_dir / METRICS_FILE)


def _required(path: Path) -> Path:
    if not path.exists():
        raise MambanerError(f"{path} is missing: the model directory is incomplete.")
    return path


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, float16 ones as float32 (a packed model); an empty, truncated or
    corrupt file is a MambanerError naming it."""
    import torch
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(_required(path)))
        return {name: t.float() if t.dtype == torch.float16 else t for name, t in tensors.items()}
    except MambanerError:
        raise
    except Exception as error:  # noqa: BLE001 — safetensors' own error type is not importable as a base class
        raise MambanerError(f"{path} is not a readable safetensors file ({error}); the model directory is "
                            "damaged: copy or train it again.") from None


def pack(source: Path, out: Path) -> dict[str, int]:
    """Copy a scratch tagger or a pretrained encoder directory for shipping: floating-point weights stored
    as float16 (read back as float32: see the module docstring), and an encoder's language-model heads and
    their word list left out (``--init-from`` takes only the encoder). Returns the sizes in bytes of the
    weights before and after. The model card, metrics, training arguments and lexicon are copied as they
    are (not a run's resume checkpoint)."""
    import shutil
    import tempfile

    from safetensors.torch import save_file

    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.models.language_model import ENCODER_PREFIXES

    config = read_config(source)
    if config["recipe"] not in ("scratch", "pretrain"):
        raise MambanerUsageError(f"{source} is a {config['recipe']} model: only scratch taggers and pretrained "
                                 "encoders are packed.")
    if out.exists():  # the source itself included
        raise MambanerUsageError(f"{out} exists: pack writes a new directory.")
    state = read_safetensors(source / WEIGHTS_FILE)
    encoder = config["recipe"] == "pretrain"
    if encoder:
        state = {name: tensor for name, tensor in state.items() if name.startswith(ENCODER_PREFIXES)}
    vocab = read_json(source / VOCAB_FILE)
    if encoder:
        vocab.pop("predicted", None)
        config["prediction_vocabulary_size"] = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside its final name and renamed when complete: an interrupted pack leaves no half model
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        lexicons = [lexicon_file(name) for name in TaggerConfig.from_dict(
            _field(config, "tagger", source / CONFIG_FILE)).lexicon_types]
        for name in (CARD_FILE, METRICS_FILE, ARGS_FILE, *lexicons):  # not a run's resume checkpoint
            if (source / name).is_file():
                shutil.copy2(source / name, work / name)
        write_json(work / VOCAB_FILE, vocab)
        write_json(work / CONFIG_FILE, config)
        save_file({name: tensor.half().contiguous() if tensor.is_floating_point() else tensor.contiguous()
                   for name, tensor in state.items()}, str(work / WEIGHTS_FILE))
        work.chmod(0o755)  # mkdtemp makes it private
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"before": (source / WEIGHTS_FILE).stat().st_size, "after": (out / WEIGHTS_FILE).stat().st_size}


def _field(data: Any, key: str, path: Path) -> Any:
    """``data[key]`` of a JSON file, or a MambanerError that names the file and the missing key."""
    if not isinstance(data, dict) or key not in data:
        raise MambanerError(f"{path} has no {key!r} entry: the model directory is damaged or not a "
                            "mambaner model.")
    return data[key]


# ------------------------------------------------------------------------------------------- scratch

@dataclass
class ScratchModel:
    """A scratch model directory, read, checked and ready to tag with."""

    network: MambaTagger  # conventions folded: tagging runs a plain network
    words: Vocabulary
    chars: Vocabulary
    lexicon: Lexicons | None  # one lexicon per type of the config's lexicon_types (with lexicon_dim > 0)
    name: str
    window: int
    convention: str | None  # the convention folded in (None: the model has none)


def write_scratch(out: Path, network: MambaTagger, words: Vocabulary, chars: Vocabulary, name: str,
                  lexicon: Lexicons | LexiconMatcher | None = None) -> None:
    """The weights, config (the first convention as the default, if any), vocabularies and lexicons (a bare
    LexiconMatcher is the lexicon of a network with one lexicon type)."""
    from safetensors.torch import save_file

    from mambaner_cli.model.lexicon import LexiconMatcher, Lexicons

    out.mkdir(parents=True, exist_ok=True)
    if lexicon is not None:
        types = network.config.lexicon_types
        if isinstance(lexicon, LexiconMatcher):
            lexicon = Lexicons(dict(zip(types[:1], [lexicon])))
        if lexicon.types != types:
            raise ValueError(f"the lexicons are of types {lexicon.types}, the network reads {types}")
        for mention_type, matcher in lexicon.matchers.items():
            with gzip.open(out / lexicon_file(mention_type), "wt", encoding="utf-8", compresslevel=9) as handle:
                handle.writelines(line + "\n" for line in matcher.to_list())
    state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    config = {"format": FORMAT, "version": VERSION, "name": name, "recipe": "scratch", "window": SCRATCH_WINDOW,
              "tagger": network.config.to_dict()}
    if network.config.conventions:
        config["default_convention"] = network.config.conventions[0]
    write_json(out / CONFIG_FILE, config)
    write_json(out / VOCAB_FILE, {"words": words.to_list(), "chars": chars.to_list()})


def load_scratch(model_dir: Path, config: dict[str, Any], convention: str | None = None) -> ScratchModel:
    """Read, check, fold ``convention`` (default: the model's own), build: a network ready to tag."""
    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.conventions import fold_convention
    from mambaner_cli.model.features import Vocabulary
    from mambaner_cli.model.models.tagger import MambaTagger

    # 1. read
    config_path, vocab_path = model_dir / CONFIG_FILE, model_dir / VOCAB_FILE
    vocab = read_json(vocab_path)
    state = read_safetensors(model_dir / WEIGHTS_FILE)
    try:
        tagger_config = TaggerConfig.from_dict(_field(config, "tagger", config_path))
    except (TypeError, ValueError) as error:
        raise MambanerError(f"{config_path}: {error}") from None
    try:
        words = Vocabulary.from_list(_field(vocab, "words", vocab_path))
        chars = Vocabulary.from_list(_field(vocab, "chars", vocab_path))
    except (TypeError, ValueError) as error:
        raise MambanerError(f"{vocab_path}: {error}") from None
    lexicon = read_lexicons(model_dir, tagger_config.lexicon_types) if tagger_config.lexicon_dim else None
    # 2. check the parts against each other
    check_scratch(model_dir, tagger_config, words, chars, state)
    # 3. fold the convention
    chosen = None
    if tagger_config.conventions:
        chosen = convention or config.get("default_convention") or tagger_config.conventions[0]
        if chosen not in tagger_config.conventions:
            raise MambanerUsageError(f"model {model_dir} has no convention {chosen!r}; it has "
                                f"{', '.join(tagger_config.conventions)}.")
        tagger_config, state = fold_convention(tagger_config, state, chosen)
    elif convention:
        raise MambanerUsageError(f"model {model_dir} has no annotation conventions (--convention {convention}).")
    # 4. build
    network = MambaTagger(tagger_config)
    network.load_state_dict(state)
    return ScratchModel(network.eval(), words, chars, lexicon, config.get("name", model_dir.name),
                        config.get("window", SCRATCH_WINDOW), chosen)


def check_scratch(model_dir: Path, config: TaggerConfig, words: Vocabulary, chars: Vocabulary,
                  state: dict[str, torch.Tensor]) -> None:
    """The vocabularies, the config and the weights describe one network, or a MambanerError says where
    they disagree. A vocab.json from another model would otherwise tag with wrong ids and exit 0 (same
    size), or crash mid-run on an id beyond the embedding (more entries)."""
    import torch

    from mambaner_cli.model.models.tagger import MambaTagger

    check_vocabularies(model_dir, config, words, chars, state)
    # A throwaway CPU build (some MB, 0.03 s) with the caller's random state put back afterwards, not a
    # meta-device one: `with torch.device("meta")` imports torch._dynamo, 1.3 s of every tagging run's start.
    with torch.random.fork_rng(devices=[]):
        expected = {k: tuple(v.shape) for k, v in MambaTagger(config).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra or wrong:
        details = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(extra[:3])}" if extra else "",
            ", ".join(f"{k} is {list(found[k])}, the config says {list(expected[k])}" for k in wrong[:3]))
            if part)
        raise MambanerError(f"{model_dir / WEIGHTS_FILE} does not match {CONFIG_FILE}: {details}.")


def check_vocabularies(model_dir: Path, config: TaggerConfig, words: Vocabulary, chars: Vocabulary,
                       state: dict[str, torch.Tensor]) -> None:
    """The word and character tables, the config and the embedding weights agree in size, or a
    MambanerError says that the files come from different models (tagger and encoder directories alike)."""
    for table, size, key, file in ((words, config.word_vocab_size, "features.words.weight", "words"),
                                   (chars, config.char_vocab_size, "features.chars.weight", "chars")):
        rows = state[key].shape[0] if key in state else None
        if len(table) != size or rows != size:
            raise MambanerError(f"{model_dir}: the {file} vocabulary ({VOCAB_FILE}) has {len(table):,} entries, "
                                f"the config {size:,} and the weights {rows if rows is not None else 'none'}: the "
                                "files come from different models.")


def lexicon_file(mention_type: str) -> str:
    """The file name of a type's lexicon in a model directory: the disease lexicon keeps the name it had
    before lexicons had types."""
    return LEXICON_FILE if mention_type == "Disease" else f"lexicon-{mention_type.lower()}.txt.gz"


def read_lexicons(model_dir: Path, types: list[str]) -> Lexicons:
    """The lexicon of each type, in the config's order."""
    from mambaner_cli.model.lexicon import Lexicons

    return Lexicons({mention_type: _read_lexicon(model_dir / lexicon_file(mention_type)) for mention_type in types})


def _read_lexicon(path: Path) -> LexiconMatcher:
    import zlib

    from mambaner_cli.model.lexicon import LexiconMatcher

    problem = "it holds no entry"  # a network with a lexicon feature was trained with a non-empty lexicon
    try:
        with gzip.open(_required(path), "rt", encoding="utf-8") as handle:
            matcher = LexiconMatcher.from_list(handle.read().splitlines())  # 4x faster than line by line
        if len(matcher):
            return matcher
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:  # BadGzipFile is an OSError
        problem = str(error) or type(error).__name__
    raise MambanerError(f"{path} is not a readable gzip text file ({problem}); the model directory is damaged: "
                        "copy or train it again.")


# ------------------------------------------------------------------------------------------ finetune

@dataclass
class FinetuneModel:
    """A finetune model directory, read, checked and ready to tag with."""

    network: PretrainedTagger
    tokenizer: Any  # a transformers tokenizer
    label_subword: str
    name: str
    window: int


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Silence transformers' "Loading weights"/"Writing model shards" bars, which would cut through our
    own progress display and log."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@dataclass
class PretrainedBackbone:
    """A Hugging Face Mamba checkpoint as our block: the stack and the checkpoint's config (to write back)."""

    stack: MambaStack
    hf_config: dict[str, Any]


def load_backbone(source: str | Path) -> PretrainedBackbone:
    """A Hugging Face Mamba checkpoint (a save_pretrained directory or a hub id; ``MambaModel`` or
    ``MambaForCausalLM``) as a :class:`MambaStack`, in float32 (our CPU scan computes in float32; some
    checkpoints are stored in half). transformers reads the checkpoint (shards, prefixes, dtypes); the
    weights then load into our block by name."""
    import pickle

    import torch
    from transformers import MambaModel

    from mambaner_cli.model.modules.block import BackboneConfig, MambaStack

    try:
        with no_progress_bars():
            hf_model = MambaModel.from_pretrained(str(source))
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        # pickle: a .bin checkpoint that torch's weights-only loader refuses (it may hold code)
        raise MambanerError(f"Could not load the Mamba model {str(source)!r}: {error}. Give a local directory "
                            "written by save_pretrained, or a hub id such as state-spaces/mamba-130m-hf "
                            "(needs the Hugging Face hub or its cache).") from None
    with torch.device("meta"):  # no initialisation to overwrite: no compute, no random draws
        stack = MambaStack(BackboneConfig.from_mamba_config(hf_model.config))
    stack.load_state_dict({k: v.float() for k, v in hf_model.state_dict().items()}, assign=True)
    return PretrainedBackbone(stack, hf_model.config.to_dict())


def save_backbone(backbone: MambaStack, hf_config: dict[str, Any], folder: Path) -> None:
    """Our stack as a Hugging Face Mamba checkpoint that ``MambaModel.from_pretrained`` reads back."""
    from transformers import MambaConfig, MambaModel

    with no_progress_bars():
        hf_model = MambaModel(MambaConfig.from_dict(hf_config))
        hf_model.load_state_dict(backbone.state_dict())
        hf_model.save_pretrained(str(folder))


def load_tokenizer(source: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise MambanerError(f"Could not load a tokenizer from {str(source)!r}: {error}") from None


def base_model_record(base_model: str) -> dict[str, str | None]:
    """The base model as given, and its absolute path when it is a local directory."""
    path = Path(base_model).expanduser()
    return {"base_model": base_model, "base_model_path": str(path.resolve()) if path.is_dir() else None}


def base_model_source(config: dict[str, Any]) -> str:
    """Where the base weights of a LoRA model directory are: its recorded absolute path, else as given."""
    recorded = config.get("base_model_path")
    if recorded and Path(recorded).is_dir():
        return recorded
    return config["base_model"]


def write_finetune(out: Path, network: PretrainedTagger, peft_model: Any, hf_config: dict[str, Any],
                   settings: dict[str, Any]) -> None:
    """Config, head and adapter (LoRA: ``peft_model`` given) or backbone (full fine-tuning) of the current
    weights. ``settings``: base_model, max_length, bidirectional, label_subword and lora (or None)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    head = {k: v.detach().contiguous().cpu() for k, v in network.head.state_dict().items()}
    save_file(head, str(out / HEAD_FILE))
    if peft_model is not None:
        peft_model.save_pretrained(str(out / ADAPTER_DIR))
    else:
        save_backbone(network.backbone, hf_config, out / BACKBONE_DIR)
    write_json(out / CONFIG_FILE, {
        "format": FORMAT, "version": VERSION, "recipe": "finetune", "name": out.name,
        **base_model_record(settings["base_model"]), "weights": "lora" if peft_model is not None else "full",
        "labels": network.labels, "max_length": settings["max_length"], "bidirectional": settings["bidirectional"],
        "label_subword": settings["label_subword"], "window": FINETUNE_WINDOW, "lora": settings.get("lora"),
    })


def write_tokenizer(out: Path, tokenizer: Any) -> None:
    tokenizer.save_pretrained(str(out / TOKENIZER_DIR))


def merge_adapter(out: Path) -> None:
    """Merge the saved adapter into the base weights, save them as ``backbone/`` and drop the adapter:
    the model directory then stands alone (``--merge``)."""
    import shutil

    from peft import PeftModel

    from mambaner_cli.model.models.pretrained import PretrainedTagger

    config = read_config(out)
    base = load_backbone(base_model_source(config))
    network = PretrainedTagger(base.stack, config["labels"], bidirectional=config["bidirectional"])
    merged = PeftModel.from_pretrained(network, str(out / ADAPTER_DIR)).merge_and_unload()
    save_backbone(merged.backbone, base.hf_config, out / BACKBONE_DIR)
    config["weights"] = "merged"
    write_json(out / CONFIG_FILE, config)
    shutil.rmtree(out / ADAPTER_DIR)


def load_finetune(model_dir: Path, config: dict[str, Any], convention: str | None = None) -> FinetuneModel:
    """Read and check the config and files, then build the fine-tuned network (in eval mode)."""
    from mambaner_cli.model.models.pretrained import PretrainedTagger

    if convention:
        raise MambanerUsageError(f"model {model_dir} has no annotation conventions (--convention {convention}).")
    weights = config.get("weights", "lora")
    if weights not in FINETUNE_WEIGHTS:
        raise MambanerError(f"{model_dir / CONFIG_FILE}: unknown weights kind {weights!r}.")
    if weights != "lora":
        _required(model_dir / BACKBONE_DIR / CONFIG_FILE)
    else:
        _required(model_dir / ADAPTER_DIR / "adapter_config.json")
    head = read_safetensors(model_dir / HEAD_FILE)
    tokenizer = load_tokenizer(_required(model_dir / TOKENIZER_DIR))
    base = load_backbone(model_dir / BACKBONE_DIR if weights != "lora" else base_model_source(config))
    network = PretrainedTagger(base.stack, config["labels"], bidirectional=config.get("bidirectional", False))
    if weights == "lora":
        from peft import PeftModel

        PeftModel.from_pretrained(network, str(model_dir / ADAPTER_DIR))  # injects the adapter in place
    try:
        network.head.load_state_dict(head)
    except RuntimeError as error:  # missing keys or other shapes
        raise MambanerError(f"{model_dir / HEAD_FILE} does not match {CONFIG_FILE}'s labels or the base model "
                            f"({str(error).splitlines()[0]}).") from None
    return FinetuneModel(network.eval(), tokenizer, config.get("label_subword", "first"),
                         config.get("name", model_dir.name), config.get("window", FINETUNE_WINDOW))


# ------------------------------------------------------------------------------------------- pretrain

@dataclass
class Encoder:
    """A pretrained encoder directory, read and checked: what ``train scratch --init-from`` starts from."""

    config: TaggerConfig
    words: Vocabulary
    chars: Vocabulary
    state: dict[str, torch.Tensor]
    path: Path


def write_encoder(out: Path, network: torch.nn.Module, words: Vocabulary, chars: Vocabulary,
                  predicted: list[str], name: str) -> None:
    """A pretraining run's network (models/language_model.py), its vocabularies and the predicted words."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}, str(out / WEIGHTS_FILE))
    write_json(out / CONFIG_FILE, {"format": FORMAT, "version": VERSION, "name": name, "recipe": "pretrain",
                                   "tagger": network.config.to_dict(), "prediction_vocabulary_size": len(predicted)})
    write_json(out / VOCAB_FILE, {"words": words.to_list(), "chars": chars.to_list(), "predicted": predicted})


def read_encoder(model_dir: Path) -> Encoder:
    """A pretrained encoder directory (``recipe: pretrain``), its parts checked against each other."""
    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.features import Vocabulary

    config = read_config(model_dir)
    if config["recipe"] != "pretrain":
        raise MambanerUsageError(f"{model_dir} is a {config['recipe']} model, not a pretrained encoder "
                                 "(`mambaner train pretrain` writes one).")
    config_path, vocab_path = model_dir / CONFIG_FILE, model_dir / VOCAB_FILE
    vocab = read_json(vocab_path)
    state = read_safetensors(model_dir / WEIGHTS_FILE)
    try:
        tagger_config = TaggerConfig.from_dict(_field(config, "tagger", config_path))
        words = Vocabulary.from_list(_field(vocab, "words", vocab_path))
        chars = Vocabulary.from_list(_field(vocab, "chars", vocab_path))
    except (TypeError, ValueError) as error:
        raise MambanerError(f"{model_dir}: {error}") from None
    check_vocabularies(model_dir, tagger_config, words, chars, state)
    return Encoder(tagger_config, words, chars, state, model_dir)
