"""runtime/model_dir.py: a broken model directory is one clear error naming the file, never a traceback,
a wrong result or a crash mid-run."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mambaner_cli.cli import cli
from mambaner_cli.errors import MambanerError
from mambaner_cli.runtime.load import load_tagger


@pytest.fixture
def model(tmp_path, tiny_model_dir) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def lexicon_model(tmp_path, tiny_model_dir) -> Path:
    """The tiny model with a lexicon feature (so that lexicon.txt.gz is read)."""
    from mambaner_cli.model.config import TaggerConfig
    from mambaner_cli.model.features import Vocabulary
    from mambaner_cli.model.lexicon import LexiconMatcher
    from mambaner_cli.model.models.tagger import MambaTagger
    from mambaner_cli.runtime.model_dir import write_scratch

    vocab = json.loads((tiny_model_dir / "vocab.json").read_text())
    config = json.loads((tiny_model_dir / "config.json").read_text())["tagger"]
    network = MambaTagger(TaggerConfig.from_dict({**config, "lexicon_dim": 4}))
    out = tmp_path / "lexicon-model"
    write_scratch(out, network, Vocabulary.from_list(vocab["words"]), Vocabulary.from_list(vocab["chars"]), "lex",
                  LexiconMatcher(["gout"]))
    return out


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_weights_are_a_clear_error(model, damage):
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00" * 64}[damage])
    with pytest.raises(MambanerError, match=r"model.safetensors is not a readable safetensors file"):
        load_tagger(model, device="cpu")


def test_config_without_tagger_or_with_an_unknown_key(model):
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "tagger"}))
    with pytest.raises(MambanerError, match=r"config.json has no 'tagger' entry"):
        load_tagger(model, device="cpu")
    config["tagger"]["mystery"] = 1
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(MambanerError, match=r"config.json: unknown TaggerConfig keys: mystery"):
        load_tagger(model, device="cpu")
    (model / "config.json").write_text("{")
    with pytest.raises(MambanerError, match=r"config.json:1: not valid JSON"):
        load_tagger(model, device="cpu")


def test_vocabulary_without_words(model):
    vocab = json.loads((model / "vocab.json").read_text())
    (model / "vocab.json").write_text(json.dumps({"chars": vocab["chars"]}))
    with pytest.raises(MambanerError, match=r"vocab.json has no 'words' entry"):
        load_tagger(model, device="cpu")


@pytest.mark.parametrize("damage", [b"", b"not gzip at all", "truncated"])
def test_damaged_lexicon_is_a_clear_error(tmp_path, tiny_model_dir, damage):
    out = lexicon_model(tmp_path, tiny_model_dir)
    lexicon = out / "lexicon.txt.gz"
    if damage == "truncated":
        damage = gzip.compress(b"gout\nrenal failure\n" * 200)[:-30]
    lexicon.write_bytes(damage)
    with pytest.raises(MambanerError, match=r"lexicon.txt.gz is not a readable gzip text file"):
        load_tagger(out, device="cpu")


def test_the_cli_reports_a_damaged_model_in_one_line(model, tmp_path):
    (model / "model.safetensors").write_bytes(b"")
    text = tmp_path / "note.txt"
    text.write_text("The patient had gout.")
    result = CliRunner().invoke(cli, ["tag", str(text), "-o", str(tmp_path / "out.jsonl"), "--model", str(model)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "model.safetensors is not a readable safetensors file" in result.output
    assert not (tmp_path / "out.jsonl").exists()


def test_pickled_bin_weights_that_torch_refuses_are_a_clear_error(tmp_path):
    """A Hugging Face checkpoint in the .bin (pickle) format that holds more than tensors: torch's
    weights-only loader refuses it (it could run code); we say so in one line instead of a traceback."""
    import torch
    from transformers import MambaConfig

    from mambaner_cli.runtime.model_dir import load_backbone

    folder = tmp_path / "base"
    folder.mkdir()
    MambaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, state_size=2).save_pretrained(folder)
    torch.save({"embeddings.weight": torch.zeros(10, 8), "payload": print}, folder / "pytorch_model.bin")
    with pytest.raises(MambanerError, match=r"Could not load the Mamba model"):
        load_backbone(folder)
