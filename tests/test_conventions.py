"""Annotation conventions: one network trained on several corpora, tagging by the rules of the one chosen.

The folded plain network must compute what the trained one computes for that convention; training with
``--conventions`` must learn two corpora that disagree on the same sentence; loading, tagging and
evaluating pick the convention asked for (evaluate: the evaluated corpus's own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mambaner_cli.training.scratch import ScratchArgs, train_scratch

from mambaner_cli.cli import cli
from mambaner_cli.errors import MambanerError
from mambaner_cli.evaluate import EvalArgs, evaluate
from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.conventions import fold_convention
from mambaner_cli.model.features import Vocabulary
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.runtime.load import load_tagger
from mambaner_cli.runtime.model_dir import model_conventions, write_scratch
from mambaner_cli.runtime.tagger import Tagger

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["O", "B-Disease", "I-Disease"]


def tiny_config(**overrides) -> TaggerConfig:
    return TaggerConfig(**{"labels": LABELS, "word_vocab_size": 30, "char_vocab_size": 12, "word_dim": 8,
                           "char_dim": 4, "char_channels": 6, "case_dim": 4, "hidden_size": 16, "num_layers": 1,
                           "state_size": 4, "lexicon_dim": 4, "conventions": ["ncbi", "bc5cdr-disease"],
                           **overrides})


def random_inputs(batch: int = 3, length: int = 7) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"word_ids": torch.randint(2, 30, (batch, length), generator=generator),
            "char_ids": torch.randint(2, 12, (batch, length, 5), generator=generator),
            "case_ids": torch.randint(1, 8, (batch, length), generator=generator),
            "mask": torch.arange(length)[None, :] < torch.tensor([length, 4, 1])[:, None],
            "lexicon_ids": torch.randint(1, 4, (batch, length), generator=generator)}


def network_with_distinct_conventions(config: TaggerConfig) -> MambaTagger:
    torch.manual_seed(0)
    network = MambaTagger(config).eval()
    with torch.no_grad():  # trained conventions differ; fresh ones are all zeros
        for parameter in (network.features.convention_vectors.weight, network.convention_emissions,
                          network.convention_emission_bias):
            parameter.normal_()
    return network


def test_folding_a_convention_gives_a_plain_network_with_the_same_emissions():
    config = tiny_config()
    network = network_with_distinct_conventions(config)
    inputs = random_inputs()
    mask = inputs["mask"]
    outputs = []
    for index, name in enumerate(config.conventions):
        with torch.no_grad():
            expected = network(**inputs, convention_ids=torch.full((3,), index))
        plain_config, state = fold_convention(config, network.state_dict(), name)
        assert plain_config.conventions == [] and not any("convention" in key for key in state)
        plain = MambaTagger(plain_config).eval()
        plain.load_state_dict(state)  # strict: exactly the plain network's parameters
        with torch.no_grad():
            folded = plain(**inputs)
        torch.testing.assert_close(folded[mask], expected[mask], atol=1e-5, rtol=1e-5)
        outputs.append(expected[mask])
    assert (outputs[0] - outputs[1]).abs().max() > 1e-2  # the conventions do differ, so the check can fail


def test_each_sentence_is_read_under_its_own_convention_within_a_batch():
    config = tiny_config()
    network = network_with_distinct_conventions(config)
    inputs = random_inputs()
    with torch.no_grad():
        mixed = network(**inputs, convention_ids=torch.tensor([0, 1, 0]))
        first = network(**inputs, convention_ids=torch.zeros(3, dtype=torch.long))
        second = network(**inputs, convention_ids=torch.ones(3, dtype=torch.long))
    torch.testing.assert_close(mixed[0], first[0])
    torch.testing.assert_close(mixed[1], second[1])
    with pytest.raises(ValueError, match="pass convention_ids"):
        network(**inputs)


def test_config_conventions_are_checked():
    with pytest.raises(ValueError, match="distinct names"):
        tiny_config(conventions=["ncbi", "ncbi"])
    with pytest.raises(ValueError, match="distinct names"):
        tiny_config(conventions=[""])
    with pytest.raises(ValueError, match="not one of this network's"):
        fold_convention(tiny_config(), {}, "bc5cdr-chem")
    assert TaggerConfig.from_dict(tiny_config().to_dict()).conventions == ["ncbi", "bc5cdr-disease"]


@pytest.fixture
def convention_model_dir(tmp_path) -> tuple[Path, MambaTagger]:
    words = Vocabulary.build({"gout": 2, "fever": 2, "and": 2, "breast": 2, "cancer": 2}, 1)
    chars = Vocabulary.build({c: 1 for c in "abcdefghijklmnopqrstuvwxyz."}, 1)
    config = tiny_config(word_vocab_size=len(words), char_vocab_size=len(chars), lexicon_dim=0)
    network = network_with_distinct_conventions(config)
    out = tmp_path / "conv-model"
    write_scratch(out, network, words, chars, "conv-model")
    return out, network


def test_loading_picks_the_default_or_the_asked_convention(convention_model_dir):
    out, network = convention_model_dir
    assert json.loads((out / "config.json").read_text())["default_convention"] == "ncbi"
    assert model_conventions(out) == ["ncbi", "bc5cdr-disease"]
    sentences = [["Breast", "cancer", "and", "gout", "."], ["Fever", "."]]
    # The trained network, told each convention, is the reference for what the loaded model must do.
    loaded_default = load_tagger(out, device="cpu")
    reference = Tagger(network, loaded_default.words, loaded_default.chars, "ref", torch.device("cpu"))
    with pytest.raises(ValueError, match="set Tagger.convention_id"):
        reference.tag(sentences)
    assert loaded_default.convention == "ncbi"
    for index, name in enumerate(["ncbi", "bc5cdr-disease"]):
        reference.convention_id = index
        expected = reference.tag(sentences)
        loaded = load_tagger(out, device="cpu", convention=name)
        assert loaded.convention == name and loaded.model.config.conventions == []
        got = loaded.tag(sentences)
        assert [tags for tags, _ in got] == [tags for tags, _ in expected]
        for (_, got_scores), (_, want_scores) in zip(got, expected):
            assert got_scores == pytest.approx(want_scores, abs=1e-5)
    assert loaded_default.tag(sentences) == load_tagger(out, device="cpu", convention="ncbi").tag(sentences)
    with pytest.raises(MambanerError, match="has no convention 'bc5cdr-chem'"):
        load_tagger(out, device="cpu", convention="bc5cdr-chem")


def test_a_model_without_conventions_refuses_one(tiny_model_dir, tmp_path):
    assert model_conventions(tiny_model_dir) == []
    with pytest.raises(MambanerError, match="has no annotation conventions"):
        load_tagger(tiny_model_dir, device="cpu", convention="ncbi")
    result = CliRunner().invoke(cli, ["tag", "-", "-o", str(tmp_path / "out.jsonl"), "--model", str(tiny_model_dir),
                                      "--convention", "ncbi", "-q"], input="Gout.\n")
    assert result.exit_code != 0 and "has no annotation conventions" in result.output


# Two made-up corpora (our own sentences) that disagree: "ncbi" tags "breast cancer" whole, "bc5cdr-disease"
# only "cancer". Every other sentence they tag alike.
AGREED = [
    ("Gout and fever were seen .", "B-Disease O B-Disease O O O"),
    ("The drug was well tolerated .", "O O O O O O"),
    ("Asthma improved after treatment .", "B-Disease O O O O"),
]
DISPUTED = "Breast cancer was treated ."
BY_CORPUS = {"ncbi": (("NCBI-disease-IOB"), "B-Disease I-Disease O O O"),
             "bc5cdr-disease": (("BC5CDR-disease-IOB"), "O B-Disease O O O")}


def write_corpora(root: Path) -> Path:
    for folder, disputed_tags in BY_CORPUS.values():
        path = root / "iob" / folder
        path.mkdir(parents=True)
        sentences = AGREED + [(DISPUTED, disputed_tags)] * 2
        text = "".join("\n".join(f"{token}\t{tag}" for token, tag in zip(words.split(), tags.split(), strict=True))
                       + "\n\n" for words, tags in sentences)  # a blank line after every sentence
        for split, copies in (("train", 6), ("devel", 1), ("test", 1)):
            (path / f"{split}.tsv").write_text(text * copies, encoding="utf-8")
    return root


def test_training_with_conventions_learns_corpora_that_disagree(tmp_path):
    data = write_corpora(tmp_path / "data")
    args = ScratchArgs(output=str(tmp_path / "model"), datasets=["ncbi", "bc5cdr-disease"], data_dir=str(data),
                       epochs=25, patience=25, batch_size=4, hidden_size=16, num_layers=1, state_size=4, word_dim=8,
                       dropout=0.0, word_dropout=0.0, lr=1e-2, warmup=0.0, threads=1, conventions=True)
    metrics = train_scratch(args, log=lambda message: None)
    out = tmp_path / "model"
    assert TaggerConfig.from_dict(json.loads((out / "config.json").read_text())["tagger"]).conventions == [
        "ncbi", "bc5cdr-disease"]
    for name, (_, disputed_tags) in BY_CORPUS.items():
        tags, _ = load_tagger(out, device="cpu", convention=name).tag([DISPUTED.split()])[0]
        assert tags == disputed_tags.split(), name
        assert metrics["test_by_dataset"][name]["f1"] == pytest.approx(100.0)
    assert metrics["devel"]["f1"] == pytest.approx(100.0)
    assert "Annotation conventions: ncbi, bc5cdr-disease" in (out / "README.md").read_text()
    # evaluate scores each corpus under its own convention unless told otherwise
    result = evaluate(EvalArgs(dataset="bc5cdr-disease", model=str(out), data_dir=str(data), device="cpu",
                               document_level=False))
    assert result["convention"] == "bc5cdr-disease" and result["benchmark"]["f1"] == pytest.approx(100.0)
    crossed = evaluate(EvalArgs(dataset="bc5cdr-disease", model=str(out), data_dir=str(data), device="cpu",
                                document_level=False, convention="ncbi"))
    assert crossed["convention"] == "ncbi" and crossed["benchmark"]["f1"] < 100.0
    # and the CLI's --convention reaches the tagger
    outputs = {}
    for name in BY_CORPUS:
        target = tmp_path / f"{name}.jsonl"
        result = CliRunner().invoke(cli, ["tag", "-", "-o", str(target), "--model", str(out), "--convention", name,
                                          "-q"], input=DISPUTED + "\n")
        assert result.exit_code == 0, result.output
        document = json.loads(target.read_text())
        assert document["model"] == f"model ({name} convention)"
        outputs[name] = [m["text"] for m in document["mentions"]]
    assert outputs == {"ncbi": ["Breast cancer"], "bc5cdr-disease": ["cancer"]}


def test_a_shared_convention_is_learnt_beside_each_corpus_and_is_the_default(tmp_path):
    data = write_corpora(tmp_path / "data")
    args = ScratchArgs(output=str(tmp_path / "model"), datasets=["ncbi", "bc5cdr-disease"], data_dir=str(data),
                       epochs=25, patience=25, batch_size=4, hidden_size=16, num_layers=1, state_size=4, word_dim=8,
                       dropout=0.0, word_dropout=0.0, lr=1e-2, warmup=0.0, threads=1, conventions=True,
                       shared_convention=0.5)
    metrics = train_scratch(args, log=lambda message: None)
    out = tmp_path / "model"
    config = json.loads((out / "config.json").read_text())
    assert config["tagger"]["conventions"] == ["shared", "ncbi", "bc5cdr-disease"]
    assert config["default_convention"] == "shared"
    # `shared` was trained: its vector and emission correction left their zero start
    from safetensors.torch import load_file

    state = load_file(str(out / "model.safetensors"))
    assert state["features.convention_vectors.weight"][0].abs().sum() > 0
    assert state["convention_emission_bias"][0].abs().sum() > 0
    # each corpus keeps its own convention by name; the per-corpus scores use it
    for name, (_, disputed_tags) in BY_CORPUS.items():
        tags, _ = load_tagger(out, device="cpu", convention=name).tag([DISPUTED.split()])[0]
        assert tags == disputed_tags.split(), name
        assert metrics["test_by_dataset"][name]["f1"] == pytest.approx(100.0)
    # the default (`shared`) tags what both corpora agree on
    shared = load_tagger(out, device="cpu")
    for words, tags in AGREED:
        assert shared.tag([words.split()])[0][0] == tags.split(), words
    assert "Annotation conventions: shared (the default) and ncbi, bc5cdr-disease" in (out / "README.md").read_text()
    with pytest.raises(MambanerError, match="give --conventions too"):
        ScratchArgs(output=str(tmp_path), datasets=["ncbi", "bc5cdr-disease"], shared_convention=0.5)


def test_conventions_need_several_datasets(tmp_path):
    with pytest.raises(MambanerError, match="two or more --dataset"):
        ScratchArgs(output=str(tmp_path), datasets=["ncbi"], conventions=True)
    with pytest.raises(MambanerError, match="two or more --dataset"):
        ScratchArgs(output=str(tmp_path), datasets=[], train_files=["a"], dev_files=["b"], conventions=True)



def test_repeat_weights_a_corpus_up_after_cross_fitting(tmp_path):
    data = write_corpora(tmp_path / "data")
    per_corpus = 6 * (len(AGREED) + 2)  # training sentences of each made-up corpus
    messages: list[str] = []
    args = ScratchArgs(output=str(tmp_path / "model"), datasets=["ncbi", "bc5cdr-disease"], data_dir=str(data),
                       epochs=1, batch_size=4, hidden_size=16, num_layers=1, state_size=4, word_dim=8, threads=1,
                       conventions=True, repeats={"ncbi": 3})
    train_scratch(args, log=messages.append)
    assert any(m.startswith(f"{3 * per_corpus + per_corpus} training and") for m in messages), messages
    assert "repeated each epoch: ncbi ×3" in messages
    with pytest.raises(MambanerError, match="not trained on: bc5cdr-chem"):
        ScratchArgs(output=str(tmp_path), datasets=["ncbi", "bc5cdr-disease"], repeats={"bc5cdr-chem": 2})
    with pytest.raises(MambanerError, match="does not apply to --train files"):
        ScratchArgs(output=str(tmp_path), datasets=["ncbi"], train_files=["a"], dev_files=["b"], repeats={"ncbi": 2})
    with pytest.raises(MambanerError, match="at least 1"):
        ScratchArgs(output=str(tmp_path), datasets=["ncbi", "bc5cdr-disease"], repeats={"ncbi": 0})
    result = CliRunner().invoke(cli, ["train", "scratch", "--dataset", "ncbi", "--dataset", "bc5cdr-disease",
                                      "--repeat", "ncbi:2", "-o", str(tmp_path / "m")])
    assert result.exit_code == 2 and "'ncbi:2' is not NAME=K" in result.output
