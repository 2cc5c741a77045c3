"""`mambaner train scratch` end to end on tiny CoNLL files: the model directory it writes, the
devel-best checkpoint, --resume after an interruption, and its argument errors."""

from __future__ import annotations

import json
import random
import shlex
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mambaner_cli.training.scratch import ScratchArgs, train_scratch, with_devel_command

from mambaner_cli.cli import cli
from mambaner_cli.errors import MambanerError
from mambaner_cli.runtime.load import load_tagger

pytestmark = pytest.mark.usefixtures("one_thread")

# Our own sentences (never corpus text): a disease mention or none in each.
SENTENCES = [
    ("Patients with gout had fever .", "O O B-Disease O B-Disease O"),
    ("Chronic renal failure was rare .", "B-Disease I-Disease I-Disease O O O"),
    ("The drug was well tolerated .", "O O O O O O"),
    ("Two cases of breast cancer were seen .", "O O O B-Disease I-Disease O O O"),
    ("Asthma improved after treatment .", "B-Disease O O O O"),
    ("No hepatitis was found in the cohort .", "O B-Disease O O O O O O"),
]
TINY = ["--hidden-size", "16", "--num-layers", "1", "--state-size", "4", "--word-dim", "8",
        "--batch-size", "2", "--threads", "1"]


def write_conll(path: Path, copies: int) -> Path:
    lines = []
    for _ in range(copies):
        for text, tags in SENTENCES:
            lines.extend(f"{token}\t{tag}" for token, tag in zip(text.split(), tags.split(), strict=True))
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def conll(tmp_path) -> tuple[Path, Path]:
    return write_conll(tmp_path / "train.tsv", 3), write_conll(tmp_path / "dev.tsv", 1)


def test_train_scratch_writes_a_complete_model_directory(tmp_path, conll):
    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["train", "scratch", "--train", str(conll[0]), "--dev", str(conll[1]),
                                      "-o", str(out), "--epochs", "3", "-q", *TINY])
    assert result.exit_code == 0, result.output
    for name in ("model.safetensors", "config.json", "vocab.json", "training_args.json", "metrics.json",
                 "README.md"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.json").exists()  # removed once the run is complete
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    best = max(metrics["history"], key=lambda h: h["devel_f1"])  # the first best epoch wins ties
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["devel"]["f1"] == pytest.approx(best["devel_f1"])  # the saved weights are that epoch's
    assert json.loads((out / "config.json").read_text())["tagger"]["labels"] == ["O", "B-Disease", "I-Disease"]
    assert json.loads((out / "training_args.json").read_text())["epochs"] == 3
    card = (out / "README.md").read_text()
    assert f"- Training data: {conll[0]} (checkpoint chosen on {conll[1]})" in card
    assert f"best epoch {best['epoch']} of 3" in card
    tags, scores = load_tagger(out, device="cpu").tag([["Gout", "and", "fever", "."]])[0]
    assert len(tags) == len(scores) == 4


def test_resume_after_an_interruption_continues_the_same_run(tmp_path, conll):
    def args(out: Path, resume: bool = False) -> ScratchArgs:
        return ScratchArgs(output=str(out), datasets=[], train_files=[str(conll[0])], dev_files=[str(conll[1])],
                           epochs=3, batch_size=2, hidden_size=16, num_layers=1, state_size=4, word_dim=8,
                           threads=1, resume=resume)

    whole = train_scratch(args(tmp_path / "whole"), log=lambda message: None)

    class Interrupted(Exception):
        pass

    def stop_at_epoch_2(message: str) -> None:
        if message.startswith("epoch 2:"):
            raise Interrupted  # after epoch 1's checkpoint, before epoch 2's
    with pytest.raises(Interrupted):
        train_scratch(args(tmp_path / "cut"), log=stop_at_epoch_2)
    # The checkpoint is data only (safetensors + JSON): a crafted one cannot run code, unlike a pickle.
    assert sorted(p.name for p in (tmp_path / "cut").glob("checkpoint*")) == ["checkpoint.json",
                                                                              "checkpoint.safetensors"]
    messages: list[str] = []
    resumed = train_scratch(args(tmp_path / "cut", resume=True), log=messages.append)
    assert any(m.startswith("resumed from") and "after epoch 1" in m for m in messages)
    # Same optimiser, schedule and random streams: the resumed run retraces the uninterrupted one.
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in whole["history"]])
    assert resumed["best_epoch"] == whole["best_epoch"]


def test_train_scratch_argument_errors(tmp_path, conll):
    with pytest.raises(MambanerError, match="--train needs --dev"):
        ScratchArgs(output=str(tmp_path), datasets=[], train_files=[str(conll[0])])
    with pytest.raises(MambanerError, match="Give --dataset or --train"):
        ScratchArgs(output=str(tmp_path), datasets=[])
    with pytest.raises(MambanerError, match="--warmup is a fraction"):
        ScratchArgs(output=str(tmp_path), warmup=1.5)
    result = CliRunner().invoke(cli, ["train", "scratch", "--train", str(conll[0]), "-o", str(tmp_path / "m")])
    assert result.exit_code != 0 and "--train needs --dev" in result.output


def test_with_devel_trains_on_train_and_devel_and_keeps_the_chosen_epoch(tmp_path):
    folder = tmp_path / "data" / "iob" / "NCBI-disease-IOB"
    folder.mkdir(parents=True)
    write_conll(folder / "train.tsv", 2)
    write_conll(folder / "devel.tsv", 1)
    write_conll(folder / "test.tsv", 1)
    messages: list[str] = []
    args = ScratchArgs(output=str(tmp_path / "final"), datasets=["ncbi"], data_dir=str(tmp_path / "data"),
                       epochs=4, with_devel=2, batch_size=2, hidden_size=16, num_layers=1, state_size=4,
                       word_dim=8, threads=1)
    metrics = train_scratch(args, log=messages.append)
    assert any(m.startswith(f"{3 * len(SENTENCES)} training and {len(SENTENCES)} devel sentences") for m in messages)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]  # stops at the chosen epoch, schedule of 4
    assert all("devel_f1" not in h for h in metrics["history"]) and "devel" not in metrics
    assert metrics["trained_on_devel"] is True and metrics["best_epoch"] == 2 and "test" in metrics
    card = (tmp_path / "final" / "README.md").read_text()
    assert "train and devel splits together" in card and "weights after epoch 2" in card
    assert "| devel |" not in card and "| test |" in card
    with pytest.raises(MambanerError, match="--with-devel EPOCH must be between 1 and --epochs"):
        ScratchArgs(output=str(tmp_path), epochs=3, with_devel=4)
    with pytest.raises(MambanerError, match="use it with --dataset"):
        ScratchArgs(output=str(tmp_path), datasets=[], train_files=["a"], dev_files=["b"], with_devel=1)


@pytest.mark.parametrize("spelling", [["-o", "runs/x/"], ["--output", "runs/x"], ["--output=runs/x"], ["-oruns/x"]])
def test_with_devel_command_rewrites_every_spelling_of_the_options(spelling):
    for devel in (["--with-devel", "9"], ["--with-devel=9"]):
        command = shlex.join(["mambaner", "train", "scratch", *spelling, "--epochs", "9", *devel, "--keep-epochs",
                              "--seed", "4"])
        assert with_devel_command(command, 3) == (
            "mambaner train scratch -o runs/x/epoch-3 --epochs 9 --with-devel 3 --seed 4")


def test_keep_epochs_writes_what_with_devel_k_writes(tmp_path):
    folder = tmp_path / "data" / "iob" / "NCBI-disease-IOB"
    folder.mkdir(parents=True)
    write_conll(folder / "train.tsv", 2)
    write_conll(folder / "devel.tsv", 1)
    write_conll(folder / "test.tsv", 1)

    def args(out: str, with_devel: int, keep: bool = False) -> ScratchArgs:
        return ScratchArgs(output=str(tmp_path / out), datasets=["ncbi"], data_dir=str(tmp_path / "data"), epochs=4,
                           with_devel=with_devel, keep_epochs=keep, batch_size=2, hidden_size=16, num_layers=1,
                           state_size=4, word_dim=8, threads=1)

    command = f"mambaner train scratch -o {tmp_path / 'all'} --epochs 4 --with-devel 3 --keep-epochs"
    train_scratch(args("all", 3, keep=True), command=command, log=lambda message: None)
    train_scratch(args("two", 2), log=lambda message: None)
    kept = tmp_path / "all" / "epoch-2"
    assert sorted(p.name for p in (tmp_path / "all").glob("epoch-*")) == ["epoch-1", "epoch-2", "epoch-3"]
    from safetensors.torch import load_file

    got, want = load_file(str(kept / "model.safetensors")), load_file(str(tmp_path / "two" / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert (kept / "vocab.json").read_text() == (tmp_path / "two" / "vocab.json").read_text()
    assert json.loads((kept / "training_args.json").read_text())["with_devel"] == 2
    card = (kept / "README.md").read_text()
    assert "weights after epoch 2" in card
    assert f"- Command: `mambaner train scratch -o {tmp_path / 'all'}/epoch-2 --epochs 4 --with-devel 2`" in card
    load_tagger(kept, device="cpu")  # a complete model directory
    with pytest.raises(MambanerError, match="--keep-epochs keeps the epochs of a --with-devel run"):
        ScratchArgs(output=str(tmp_path), keep_epochs=True)


def test_checkpoint_state_round_trips_tensors_int_keys_and_tuples(tmp_path):
    from mambaner_cli.training.loop import load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    rng = random.Random(5)
    content = {"optimizer": optimizer.state_dict(), "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
               "weights": model.state_dict(), "best_f1": -1.0, "ema": None}
    save_checkpoint(tmp_path, content)
    loaded = load_checkpoint(tmp_path)
    assert set(loaded["optimizer"]["state"]) == {0, 1}  # parameter ids stay ints: load_state_dict matches them
    assert loaded["optimizer"]["param_groups"][0]["betas"] == optimizer.param_groups[0]["betas"]
    assert all(torch.equal(loaded["optimizer"]["state"][i]["exp_avg"], optimizer.state_dict()["state"][i]["exp_avg"])
               for i in (0, 1))
    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    restored.load_state_dict(loaded["optimizer"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg_sq"], optimizer.state_dict()["state"][0]["exp_avg_sq"])
    version, internal, gauss = loaded["rng"]
    assert (version, tuple(internal), gauss) == rng.getstate()
    assert torch.equal(loaded["torch_rng"], content["torch_rng"]) and loaded["ema"] is None
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(MambanerError, match="cannot resume from this checkpoint"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_keeps_the_cuda_generators_when_cuda_is_in_use(tmp_path, monkeypatch):
    """Dropout on a GPU draws from the CUDA generators: a checkpoint keeps their states and a resumed run puts
    them back (seen on a GPU: without them a resumed LoRA run's third-epoch loss was 0.103 against 0.112). CUDA's
    calls are stood in for here (no GPU on CI); tests/test_finetune.py's resume test checks it on a GPU."""
    from mambaner_cli.training.loop import Optimisation, RunState, _checkpoint, _restore, load_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    optimisation = Optimisation(model, list(model.parameters()), optimizer,
                                torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]  # two GPUs
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    _checkpoint(tmp_path, optimisation, random.Random(3), RunState())
    put_back = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", put_back.append)
    _restore(load_checkpoint(tmp_path), optimisation, random.Random(0), RunState(), tmp_path)
    assert len(put_back) == 1 and [s.tolist() for s in put_back[0]] == [s.tolist() for s in states]

    # without CUDA in use, nothing is kept, and a checkpoint without the key (older ones) restores as before
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    _checkpoint(tmp_path, optimisation, random.Random(3), RunState())
    assert load_checkpoint(tmp_path)["cuda_rng"] is None
    put_back.clear()
    _restore(load_checkpoint(tmp_path), optimisation, random.Random(0), RunState(), tmp_path)
    assert put_back == []


def test_pattern_dim_trains_a_network_that_reads_the_variant_patterns(tmp_path, conll):
    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["train", "scratch", "--train", str(conll[0]), "--dev", str(conll[1]),
                                      "-o", str(out), "--epochs", "1", "--pattern-dim", "3", "-q", *TINY])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["tagger"]["pattern_dim"] == 3
    assert "- Variant-pattern feature (3-d)" in (out / "README.md").read_text()
    tagger = load_tagger(out, device="cpu", rules=False)
    assert tagger.model.features.patterns.weight.shape == (4, 3)
    assert tagger.input_codes([["Gout", "and", "c.", "671G", ">", "A"]])[1] == [[0, 0, 1, 2, 2, 2]]
