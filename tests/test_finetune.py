"""Tests for the finetune recipe: word↔subword alignment, the pretrained-Mamba tagger, LoRA training via
the CLI, loading and tagging with the model directory it writes.

The "pretrained" base is a tiny random MambaForCausalLM (hidden 32, 2 layers) saved with save_pretrained,
with a byte-level BPE tokenizer (GPT-NeoX style, like the state-spaces Mambas') trained here on the
invented sentences of the toy corpus.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mambaner_cli.cli import cli
from mambaner_cli.model.models.pretrained import IGNORE_INDEX, LORA_TARGETS, PretrainedTagger, add_lora
from mambaner_cli.model.modules.block import BackboneConfig, MambaStack, Mixer
from mambaner_cli.model.modules.crf import is_valid_iob2
from mambaner_cli.runtime.subword import WordPieces, chunk_words, pad_batch, training_examples

LABELS = ["O", "B-Disease", "I-Disease"]
DISEASES = ["arthritis", "colitis", "gastritis", "hepatitis", "nephritis", "dermatitis", "bronchitis"]
MODIFIERS = ["acute", "chronic"]  # always part of the mention: "chronic colitis" is B I
OTHERS = ["the", "patient", "had", "a", "history", "of", "kidney", "liver", "pain", "was", "treated",
          "with", "steroids", "and", "rest", "no", "sign", "seen", "in", "child", "mother", "his", "her"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: the CPU is shared with other test runs (see ``one_thread`` in tests/conftest.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """An invented sentence with 0-2 disease mentions (-itis words, optionally after a modifier)."""
    tokens: list[str] = []
    tags: list[str] = []
    for _ in range(rng.randint(1, 2)):
        filler = rng.sample(OTHERS, rng.randint(2, 5))
        tokens += filler
        tags += ["O"] * len(filler)
        if rng.random() < 0.85:
            if rng.random() < 0.35:
                tokens.append(rng.choice(MODIFIERS))
                tags.append("B-Disease")
                tokens.append(rng.choice(DISEASES))
                tags.append("I-Disease")
            else:
                tokens.append(rng.choice(DISEASES))
                tags.append("B-Disease")
    tokens.append(".")
    tags.append("O")
    return tokens, tags


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    path.write_text("".join("".join(f"{t}\t{g}\n" for t, g in zip(*s)) + "\n" for s in sentences),
                    encoding="utf-8")
    return path


def byte_level_tokenizer(texts: list[str], vocab_size: int = 300):
    """A GPT-NeoX-style byte-level BPE (spaces become part of the next token: "Ġcolitis").

    Its alphabet is the bytes of ``texts`` only (not all 256), so that a small vocabulary still learns
    merges; a character outside it encodes to nothing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|padding|>"])
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                                   pad_token="<|padding|>")


def wordpiece_tokenizer(texts: list[str]):
    """A BERT-style WordPiece: splits on whitespace, so a leading space changes nothing."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=120, special_tokens=["[UNK]", "[PAD]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    rng = random.Random(7)
    folder = tmp_path_factory.mktemp("toy")
    train = [toy_sentence(rng) for _ in range(48)]
    dev = [toy_sentence(rng) for _ in range(16)]
    return {"train": write_conll(folder / "train.conll", train), "dev": write_conll(folder / "dev.conll", dev),
            "folder": folder}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(11)
    return [" ".join(toy_sentence(rng)[0]) for _ in range(200)]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, texts) -> Path:
    """A tiny random "pretrained" MambaForCausalLM and its tokenizer, as a hub download would look."""
    from transformers import MambaConfig, MambaForCausalLM

    tokenizer = byte_level_tokenizer(texts)
    torch.manual_seed(0)
    config = MambaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, state_size=8,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("base") / "tiny-mamba"
    MambaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------------------------- alignment

def test_word_pieces_prefix_a_space_for_byte_level_bpe(texts):
    pieces = WordPieces(byte_level_tokenizer(texts))
    assert pieces.prefix_space
    tokenizer = pieces.tokenizer
    first, second = pieces.encode(["colitis", "colitis"])
    assert first == tokenizer("colitis", add_special_tokens=False)["input_ids"]
    assert second == tokenizer(" colitis", add_special_tokens=False)["input_ids"]
    assert first != second
    # the words concatenated are the sentence as running text
    words = ["the", "patient", "had", "chronic", "colitis", "."]
    flat = [i for word in pieces.encode(words) for i in word]
    assert flat == tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]


def test_word_pieces_whitespace_tokenizer_and_unknown_characters(texts):
    pieces = WordPieces(wordpiece_tokenizer(texts))
    encoded = pieces.encode(["colitis", "patient", "\u0394"])  # Δ is not in the vocabulary
    assert all(encoded)
    assert encoded[0] == pieces.tokenizer("colitis", add_special_tokens=False)["input_ids"]
    assert encoded[2] == [pieces.tokenizer.unk_token_id]
    assert pieces.pad_id == pieces.tokenizer.pad_token_id


def test_training_examples_label_first_subword_only(texts):
    pieces = WordPieces(byte_level_tokenizer(texts, vocab_size=60))  # small vocabulary: words split
    tokens, tags = ["the", "nephritis", "and", "dermatitis", "."], ["O", "B-Disease", "O", "B-Disease", "O"]
    encoded = pieces.encode(tokens)
    assert any(len(word) > 1 for word in encoded)
    [(ids, labels)] = training_examples([(tokens, tags)], pieces, LABELS, max_length=176)
    assert ids == [i for word in encoded for i in word]
    expected = []
    for word, tag in zip(encoded, tags):
        expected += [LABELS.index(tag)] + [IGNORE_INDEX] * (len(word) - 1)
    assert labels == expected
    pieces.label_subword = "last"
    [(_, labels)] = training_examples([(tokens, tags)], pieces, LABELS, max_length=176)
    assert labels == [label for word, tag in zip(encoded, tags)
                      for label in [IGNORE_INDEX] * (len(word) - 1) + [LABELS.index(tag)]]


def test_long_sentences_are_split_and_keep_every_label(texts):
    pieces = WordPieces(byte_level_tokenizer(texts, vocab_size=60))
    rng = random.Random(3)
    tokens, tags = [], []
    while len(tokens) < 120:
        sentence_tokens, sentence_tags = toy_sentence(rng)
        tokens += sentence_tokens
        tags += sentence_tags
    examples = training_examples([(tokens, tags)], pieces, LABELS, max_length=24)
    assert len(examples) > 3
    assert all(len(ids) <= 24 for ids, _ in examples)
    kept = [LABELS[label] for _, labels in examples for label in labels if label != IGNORE_INDEX]
    assert kept == tags
    # a single word longer than the limit is truncated, not dropped
    assert chunk_words([3, 30, 2], 8) == [(0, 1), (1, 2), (2, 3)]
    assert chunk_words([3, 4, 2, 5], 9) == [(0, 3), (3, 4)]
    [(ids, labels)] = training_examples([(["colitis" * 6], ["B-Disease"])], pieces, LABELS, max_length=5)
    assert len(ids) == 5 and labels == [1] + [IGNORE_INDEX] * 4


def test_pad_batch_shapes():
    batch = pad_batch([([5, 6, 7], [0, -100, 1]), ([8], [2])], pad_id=1)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[0, -100, 1], [2, -100, -100]]


# --------------------------------------------------------------------------------------------- network

def tiny_backbone(vocab: int = 50, seed: int = 0) -> MambaStack:
    torch.manual_seed(seed)
    return MambaStack(BackboneConfig(vocab_size=vocab, hidden_size=32, num_layers=2, state_size=8))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_decoding_is_valid_iob2_and_padding_invariant(bidirectional):
    model = PretrainedTagger(tiny_backbone(), LABELS, bidirectional=bidirectional).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 3.0)  # confident, often "invalid" token-wise argmaxes
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 12, [1] * 7 + [0] * 5, [1] * 3 + [0] * 9])
    positions = torch.tensor([list(range(0, 12, 2)), [0, 2, 4, 6, 0, 0], [0, 1, 2, 0, 0, 0]])
    word_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 3 + [False] * 3])
    paths, confidences = model.decode(ids, mask, positions, word_mask)
    assert [len(p) for p in paths] == [6, 4, 3] and [len(c) for c in confidences] == [6, 4, 3]
    assert all(is_valid_iob2([LABELS[i] for i in path]) for path in paths)
    assert all(0 < c <= 1 for conf in confidences for c in conf)
    # a sentence alone gives the same result as in a padded batch (both directions stay within length)
    alone, _ = model.decode(ids[1:2, :7], mask[1:2, :7], positions[1:2, :4], word_mask[1:2, :4])
    assert alone[0] == paths[1]
    loss = model.loss(ids, mask, torch.full((3, 12), IGNORE_INDEX).index_fill(1, torch.tensor([0]), 1))
    assert torch.isfinite(loss)


def test_lora_on_all_four_projections_takes_effect():
    """peft refuses out_proj on a bare transformers Mamba; on our block every adapter must change the
    output (the training and the tagging paths), and only the adapters and the head are trainable."""
    model = PretrainedTagger(tiny_backbone(), LABELS, dropout=0.0)
    wrapped = add_lora(model, r=4, alpha=8, dropout=0.0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if ".lora_" in n or n.startswith("head.")}
    expected = sum(4 * (module.in_features + module.out_features) for name, module in model.named_modules()
                   if name.rsplit(".", 1)[-1] in LORA_TARGETS and hasattr(module, "in_features"))
    expected += model.head.weight.numel() + model.head.bias.numel()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    ids, mask = torch.randint(0, 50, (2, 9)), torch.ones(2, 9, dtype=torch.long)
    model.eval()
    with torch.no_grad():
        before = model(ids, mask)
        for target in LORA_TARGETS:
            lora_b = [p for n, p in model.named_parameters() if f"{target}.lora_B" in n and "layers.0." in n]
            lora_b[0].normal_(0, 0.5)
            after = model(ids, mask)
            assert not torch.allclose(after, before, atol=1e-6), f"the adapter on {target} has no effect"
            torch.testing.assert_close(model(ids, mask, infer=True), after, rtol=1e-5, atol=1e-5)
            lora_b[0].zero_()
    assert wrapped.peft_config["default"].target_modules == set(LORA_TARGETS)


def test_lora_keeps_the_fused_cuda_kernel_off():
    """mamba-ssm's fused block kernel reads the projections' weights directly, which would skip the
    adapters: a mixer takes it only while its projections are plain nn.Linear, so not after add_lora."""
    model = PretrainedTagger(tiny_backbone(), LABELS)
    mixers = [module for module in model.modules() if isinstance(module, Mixer)]
    assert len(mixers) == 2 and all(mixer._plain_linears() for mixer in mixers)
    add_lora(model, r=4)
    assert not any(mixer._plain_linears() for mixer in mixers)


# ------------------------------------------------------------------------------- training, CLI, runtime

def train_cli(*args) -> str:
    result = CliRunner().invoke(cli, ["train", "finetune", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_dir, corpus) -> Path:
    """LoRA on the toy corpus with a high rate (the paper's 1e-4 is for a real pretrained model)."""
    out = tmp_path_factory.mktemp("finetuned") / "toy-lora"
    train_cli("--base-model", base_dir, "--train", corpus["train"], "--dev", corpus["dev"], "-o", out,
              "--epochs", 10, "--lr", 1e-2, "--patience", 10, "-q")
    return out


def test_finetune_writes_a_complete_model_directory(trained, base_dir):
    config = json.loads((trained / "config.json").read_text())
    assert config["format"] == "mambaner-tagger" and config["recipe"] == "finetune"
    assert config["base_model"] == str(base_dir) and config["base_model_path"] == str(base_dir.resolve())
    assert config["labels"] == LABELS and config["weights"] == "lora"
    assert config["max_length"] == 176 and config["bidirectional"] is False
    assert (trained / "adapter" / "adapter_config.json").is_file()
    assert (trained / "adapter" / "adapter_model.safetensors").is_file()
    assert (trained / "head.safetensors").is_file() and (trained / "tokenizer" / "tokenizer.json").is_file()
    assert not (trained / "checkpoint.json").exists() and not (trained / "backbone").exists()
    args = json.loads((trained / "training_args.json").read_text())
    assert args["lr"] == 1e-2 and args["batch_size"] == 4 and args["lora_r"] == 8
    metrics = json.loads((trained / "metrics.json").read_text())
    # only the LoRA matrices (r 8 on 4 projections × 2 layers) and the head were trained
    hidden, inner, rank, state = 32, 64, 2, 8  # inner = 2 × hidden; dt rank = ceil(32 / 16)
    lora = 8 * ((hidden + 2 * inner) + (inner + rank + 2 * state) + (rank + inner) + (inner + hidden))
    assert metrics["trainable_parameters"] == 2 * lora + (hidden + 1) * 3
    assert metrics["trainable_parameters"] < metrics["parameters"] / 2
    card = (trained / "README.md").read_text()
    assert "LoRA" in card and "Command: `" in card and "peak RSS" in card
    assert metrics["devel"]["f1"] >= 85, metrics["history"]  # learnt the toy corpus (untrained: < 40)


def test_model_dir_loads_and_tags_words(trained, corpus):
    from mambaner_cli.training.datasets import read_conll

    from mambaner_cli.runtime.load import load_tagger
    from mambaner_cli.runtime.subword import SubwordTagger

    tagger = load_tagger(trained, device="cpu")
    assert isinstance(tagger, SubwordTagger) and tagger.labels == LABELS
    dev = read_conll(corpus["dev"])
    results = tagger.tag([tokens for tokens, _ in dev] + [[]], batch_size=3)
    assert results[-1] == ([], [])
    for (tokens, _), (tags, scores) in zip(dev, results):
        assert len(tags) == len(scores) == len(tokens) and is_valid_iob2(tags)
    assert sum(tags == gold for (_, gold), (tags, _) in zip(dev, results)) >= 0.75 * len(dev)
    # long sentences are tagged in windows, every word once, and agree with one-pass tagging
    long_sentence = [token for tokens, _ in dev for token in tokens]
    [(one_pass, _)] = tagger.tag([long_sentence])
    tagger.window = 16
    [(windowed, _)] = tagger.tag([long_sentence])
    assert len(windowed) == len(long_sentence) and is_valid_iob2(windowed)
    assert sum(a == b for a, b in zip(windowed, one_pass)) >= 0.9 * len(long_sentence)


def test_mambaner_tag_with_a_finetuned_model(trained, tmp_path):
    text = tmp_path / "note.txt"
    text.write_text("The patient had chronic colitis. No sign of hepatitis was seen in the liver.\n",
                    encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["tag", str(text), "-o", str(out), "--model", str(trained), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["model"] == trained.name
    mentions = record["mentions"]
    assert mentions and all(record["text"][m["start"]:m["end"]] == m["text"] for m in mentions)
    assert {"chronic colitis", "hepatitis"} <= {m["text"] for m in mentions}


def test_merge_gives_a_standalone_equivalent_model(trained, tmp_path):
    import shutil

    from mambaner_cli.runtime.load import load_tagger
    from mambaner_cli.runtime.model_dir import merge_adapter

    merged_dir = tmp_path / "merged"
    shutil.copytree(trained, merged_dir)
    merge_adapter(merged_dir)
    config = json.loads((merged_dir / "config.json").read_text())
    assert config["weights"] == "merged" and not (merged_dir / "adapter").exists()
    config["base_model"], config["base_model_path"] = "/nonexistent/base", None  # no longer needed
    (merged_dir / "config.json").write_text(json.dumps(config))
    original, merged = load_tagger(trained, device="cpu"), load_tagger(merged_dir, device="cpu")
    ids, mask = torch.randint(0, 100, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(merged.model(ids, mask), original.model(ids, mask), rtol=1e-4, atol=1e-4)


def test_missing_base_model_is_a_clear_error(trained, tmp_path):
    import shutil

    from mambaner_cli.errors import MambanerError
    from mambaner_cli.runtime.load import load_tagger

    moved = tmp_path / "moved"
    shutil.copytree(trained, moved)
    config = json.loads((moved / "config.json").read_text())
    config["base_model"], config["base_model_path"] = str(tmp_path / "gone"), str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(MambanerError, match="Could not load the Mamba model"):
        load_tagger(moved, device="cpu")


def test_resume_continues_where_the_run_stopped(base_dir, corpus, tmp_path):
    from mambaner_cli.training.finetune import FinetuneArgs, train_finetune

    def args(out: Path, resume: bool = False) -> FinetuneArgs:
        return FinetuneArgs(output=str(out), base_model=str(base_dir), train_files=[str(corpus["train"])],
                            dev_files=[str(corpus["dev"])], epochs=3, lr=1e-2, patience=10, resume=resume)

    straight = train_finetune(args(tmp_path / "straight"), log=lambda message: None)

    def stop_after_epoch_2(message: str) -> None:
        if message.startswith("epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_finetune(args(tmp_path / "resumed"), log=stop_after_epoch_2)
    assert (tmp_path / "resumed" / "checkpoint.json").is_file()
    messages: list[str] = []
    resumed = train_finetune(args(tmp_path / "resumed", resume=True), log=messages.append)
    assert any(message.startswith("resumed from") for message in messages)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][2]["loss"] == pytest.approx(straight["history"][2]["loss"], rel=1e-4)
    assert resumed["devel"]["f1"] == pytest.approx(straight["devel"]["f1"])


def test_full_bidirectional_finetuning(base_dir, corpus, tmp_path):
    out = tmp_path / "full"
    train_cli("--base-model", base_dir, "--train", corpus["train"], "--dev", corpus["dev"], "-o", out,
              "--epochs", 2, "--lr", 3e-3, "--full", "--bidirectional", "--label-subword", "last", "-q")
    config = json.loads((out / "config.json").read_text())
    assert config["weights"] == "full" and config["bidirectional"] and config["label_subword"] == "last"
    assert (out / "backbone" / "config.json").is_file() and not (out / "adapter").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable_parameters"] == metrics["parameters"]
    from mambaner_cli.runtime.load import load_tagger

    [(tags, _)] = load_tagger(out, device="cpu").tag([["the", "patient", "had", "colitis", "."]])
    assert len(tags) == 5 and is_valid_iob2(tags)
