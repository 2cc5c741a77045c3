"""Load any model directory as a :class:`~mambaner_cli.runtime.sentence_tagger.SentenceTagger`: the recipe
named in its config.json picks the tagger class (runtime/model_dir.py owns the files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mambaner_cli.errors import MambanerUsageError
from mambaner_cli.runtime.model_dir import read_config, resolve_model
from mambaner_cli.runtime.sentence_tagger import SentenceTagger
from mambaner_cli.runtime.subword import SubwordTagger
from mambaner_cli.runtime.tagger import Tagger

# recipe → loader (model directory, its config, device, convention); model_dir.RECIPES lists the recipes
LOADERS: dict[str, Callable[..., SentenceTagger]] = {
    "scratch": Tagger.from_model_dir,
    "finetune": SubwordTagger.from_model_dir,
}


def load_tagger(model: str | Path | None = None, device: str = "auto", convention: str | None = None,
                rules: bool = True) -> SentenceTagger:
    """A shipped model's name or a model directory (None: the embedded default), ready to tag.
    ``convention``: for a model trained with annotation conventions, the corpus whose rules to tag by
    (default: the model's ``default_convention``). ``rules``: a scratch model applies its run-time rules
    beside the network (runtime/tagger.py: bracket cuts, variant patterns); False tags with the network alone."""
    model_dir = resolve_model(model)
    config = read_config(model_dir)
    if config["recipe"] not in LOADERS:  # a pretrained encoder: it has no tagging head
        raise MambanerUsageError(f"{model_dir} is a pretrained encoder, not a tagger: train a tagger from it "
                                 f"with `mambaner train scratch --init-from {model_dir}`.")
    # the run-time rules are the scratch recipe's (the fine-tuned recipe reproduces the paper's tagger as it is)
    options = {"rules": rules} if config["recipe"] == "scratch" else {}
    return LOADERS[config["recipe"]](model_dir, config, device=device, convention=convention, **options)
