"""The `pretrain` recipe (a bidirectional language model on unlabeled text) and `train scratch --init-from`:
the encoder learns the text, is written as an encoder directory, and a tagger starts from its weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mambaner_cli.training.args import PretrainArgs, ScratchArgs
from mambaner_cli.training.pretrain import train_pretrain
from mambaner_cli.training.scratch import train_scratch

from mambaner_cli.cli import cli
from mambaner_cli.errors import MambanerError
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.models.language_model import BiLanguageModel, init_from_encoder
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import read_encoder
from tests.test_train import write_conll

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"hidden_size": 16, "num_layers": 1, "state_size": 4, "word_dim": 8, "threads": 1}


def write_text(path: Path, sentences: int = 400, seed: int = 3) -> Path:
    """Made-up sentences with a strong left-to-right and right-to-left structure to learn."""
    rng = random.Random(seed)
    subjects, verbs, objects = ["the patient", "a child", "his mother"], ["had", "developed"], ["gout", "colitis",
                                                                                              "renal failure"]
    lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} acute {rng.choice(objects)} ." for _ in range(sentences)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrain")
    text = write_text(folder / "text.txt")
    out = folder / "encoder"
    result = CliRunner().invoke(cli, ["train", "pretrain", "--text", str(text), "-o", str(out), "--epochs", "2",
                                      "--lr", "0.01", "--batch-size", "16", "--hidden-size", "16", "--num-layers", "1",
                                      "--state-size", "4", "--word-dim", "8", "--threads", "1", "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_pretraining_learns_the_text_and_writes_an_encoder(encoder_dir):
    metrics = json.loads((encoder_dir / "metrics.json").read_text())
    classes = json.loads((encoder_dir / "config.json").read_text())["prediction_vocabulary_size"] + 1
    first, last = (metrics["history"][k]["heldout_perplexity"] for k in (0, -1))
    # the made-up grammar leaves 2-3 choices a position: far below a uniform guess over the classes
    assert last["forward"] < first["forward"] and last["forward"] < classes / 2
    assert last["backward"] < classes / 2
    assert metrics["sentences"] == {"train": 396, "heldout": 4}  # every 100th sentence held out
    card = (encoder_dir / "README.md").read_text()
    assert "- Command: `" in card and f"(over {classes:,} classes)" in card
    assert not (encoder_dir / "checkpoint.json").exists()
    encoder = read_encoder(encoder_dir)
    assert "colitis" in encoder.words and encoder.state["forward_head.weight"].shape[0] == classes


def test_an_encoder_is_not_a_tagger(encoder_dir):
    with pytest.raises(MambanerError, match="pretrained encoder, not a tagger.*--init-from"):
        load_tagger(encoder_dir, device="cpu")


def test_a_tagger_starts_from_the_encoder(encoder_dir, tmp_path):
    train, dev = write_conll(tmp_path / "train.tsv", 3), write_conll(tmp_path / "dev.tsv", 1)
    encoder = read_encoder(encoder_dir)
    messages: list[str] = []
    args = ScratchArgs(output=str(tmp_path / "tagger"), train_files=[str(train)], dev_files=[str(dev)], epochs=1,
                       batch_size=2, lexicon_dim=0, init_from=str(encoder_dir), seed=1, threads=1, hidden_size=64)
    train_scratch(args, log=messages.append)
    assert any(m.startswith(f"started from the encoder {encoder_dir}") for m in messages)
    tagger = load_tagger(tmp_path / "tagger", device="cpu")
    assert tagger.words.to_list() == encoder.words.to_list()  # the encoder's vocabulary
    assert tagger.model.config.hidden_size == 16  # the encoder's shape, not --hidden-size
    assert json.loads((tmp_path / "tagger" / "training_args.json").read_text())["hidden_size"] == 16
    with pytest.raises(MambanerError, match="drop --glove-top"):
        ScratchArgs(output=str(tmp_path / "x"), init_from=str(encoder_dir), glove_top=10)


def test_init_from_encoder_copies_the_encoder_and_widens_the_projection():
    torch.manual_seed(0)
    config = TaggerConfig(labels=["O"], word_vocab_size=20, char_vocab_size=10, word_dim=8, char_dim=4,
                          char_channels=4, case_dim=2, hidden_size=8, num_layers=1, state_size=2, use_crf=False)
    language_model = BiLanguageModel(config, 5)
    tagger_config = TaggerConfig.from_dict({**config.to_dict(), "labels": ["O", "B-Disease", "I-Disease"],
                                            "lexicon_dim": 3, "pattern_dim": 2, "use_crf": True})
    tagger = MambaTagger(tagger_config)
    fresh = {k: v.clone() for k, v in tagger.state_dict().items()}
    copied = init_from_encoder(tagger, language_model.state_dict())
    state, encoder = tagger.state_dict(), language_model.state_dict()
    assert copied and all(k.startswith(("features.", "forward_mamba.", "backward_mamba.")) for k in copied)
    for name in copied:
        if name != "features.projection.weight":
            assert torch.equal(state[name], encoder[name]), name
    width = encoder["features.projection.weight"].shape[1]
    assert torch.equal(state["features.projection.weight"][:, :width], encoder["features.projection.weight"])
    assert torch.equal(state["features.projection.weight"][:, width:], fresh["features.projection.weight"][:, width:])
    assert torch.equal(state["emissions.weight"], fresh["emissions.weight"])  # the head is the tagger's own
    assert "features.lexicon.weight" not in copied and "features.patterns.weight" not in copied


def test_pretrain_refuses_too_little_text(tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("just one sentence\n")
    with pytest.raises(MambanerError, match="Too little text"):
        train_pretrain(PretrainArgs(output=str(tmp_path / "out"), text_files=[str(text)], **TINY),
                       log=lambda message: None)


def test_a_batch_of_one_word_sentences_has_a_zero_loss_not_nan():
    from mambaner_cli.model.features import Vocabulary, encode_batch

    config = TaggerConfig(labels=["O"], word_vocab_size=5, char_vocab_size=5, word_dim=4, char_dim=2,
                          char_channels=2, case_dim=2, hidden_size=8, num_layers=1, state_size=2, use_crf=False)
    network = BiLanguageModel(config, 3)
    words = Vocabulary(["a", "b", "c"])
    features = encode_batch([["a"], ["b"]], words, words, config.max_word_len)
    loss = network.loss(**features, targets=torch.tensor([[1], [2]]))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


def test_a_packed_encoder_has_no_heads_and_starts_the_same_tagger(encoder_dir, tmp_path):
    packed = tmp_path / "packed"
    result = CliRunner().invoke(cli, ["train", "pack", str(encoder_dir), str(packed)])
    assert result.exit_code == 0, result.output
    full, small = read_encoder(encoder_dir), read_encoder(packed)
    assert not any(name.startswith(("forward_head", "backward_head")) for name in small.state)
    assert "predicted" not in json.loads((packed / "vocab.json").read_text())
    for name, tensor in small.state.items():  # float16 on disk, float32 in memory, within half precision
        assert tensor.dtype == torch.float32
        assert torch.allclose(tensor, full.state[name], rtol=1e-3, atol=1e-4), name
    again = CliRunner().invoke(cli, ["train", "pack", str(encoder_dir), str(packed)])
    assert again.exit_code == 2 and "exists" in again.output  # never written over


def test_a_packed_tagger_tags_as_the_full_one(tiny_model_dir, tmp_path):
    packed = tmp_path / "packed"
    assert CliRunner().invoke(cli, ["train", "pack", str(tiny_model_dir), str(packed)]).exit_code == 0
    assert (packed / "model.safetensors").stat().st_size < 0.6 * (tiny_model_dir / "model.safetensors").stat().st_size
    sentences = [["The", "disease", "was", "cancer", "."], ["the", "the", "disease"]]
    full, small = (load_tagger(folder, device="cpu") for folder in (tiny_model_dir, packed))
    assert [tags for tags, _ in full.tag(sentences)] == [tags for tags, _ in small.tag(sentences)]


def test_init_from_names_a_shipped_encoder_or_a_directory(encoder_dir):
    from mambaner_cli.errors import MambanerUsageError
    from mambaner_cli.runtime.model_dir import resolve_encoder, shipped_encoders, shipped_models

    assert resolve_encoder(str(encoder_dir)) == encoder_dir
    assert not set(shipped_encoders()) & set(shipped_models())  # an encoder is never offered as a tagger
    for name in shipped_encoders():
        assert read_encoder(resolve_encoder(name)).config.hidden_size > 0
    with pytest.raises(MambanerUsageError, match="No encoder 'nonesuch'"):
        resolve_encoder("nonesuch")
