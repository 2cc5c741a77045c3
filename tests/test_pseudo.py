"""Pseudo-labels for distillation: the ensemble's sure sentences, and a student that trains on them."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner
from mambaner_cli.training.args import ScratchArgs
from mambaner_cli.training.pseudo import (
    conll_text,
    ensemble_marginals,
    marginals,
    posterior_tags,
    pseudo_label,
    read_provenance,
    read_unlabeled,
)
from mambaner_cli.training.scratch import prepare_data

from mambaner_cli.cli import cli
from mambaner_cli.corpora import read_conll
from mambaner_cli.errors import MambanerError
from mambaner_cli.runtime.load import load_tagger
from tests.test_multitype import data  # noqa: F401 (a fixture: NCBI IOB files and a Species-800 PubTator corpus)
from tests.tiny_models import write_tiny_model

SENTENCES = [["Patients", "with", "gout", "and", "BRCA1", "carriers", "were", "seen", "."],
             ["Mice", "lacking", "Apc", "develop", "tumours", "early", "."],
             ["No", "mention", "here", "at", "all", "."]]


@pytest.fixture
def teachers(tmp_path):
    return [load_tagger(write_tiny_model(tmp_path / f"t{seed}", seed=seed), device="cpu", rules=False)
            for seed in (1, 2)]


def test_the_ensemble_averages_its_members_marginals(teachers):
    averaged = ensemble_marginals(teachers, SENTENCES)
    one, two = (marginals(t, SENTENCES) for t in teachers)
    for a, b, mean in zip(one, two, averaged, strict=True):
        np.testing.assert_allclose(mean, (a + b) / 2, rtol=1e-6)
        np.testing.assert_allclose(mean.sum(1), 1.0, rtol=1e-4)  # marginals: a distribution per token


def test_only_sentences_sure_in_every_token_are_kept_with_the_ensemble_tags(teachers):
    averaged = ensemble_marginals(teachers, SENTENCES)
    tags = posterior_tags(averaged, list(teachers[0].labels))
    labels = list(teachers[0].labels)
    sureness = [min(p[i, labels.index(tag)] for i, tag in enumerate(t)) for p, t in zip(averaged, tags)]
    threshold = float(np.median(sureness))  # some sentences above it, some below
    kept = pseudo_label(teachers, SENTENCES, threshold)
    assert kept == [(s, t) for s, t, sure in zip(SENTENCES, tags, sureness) if sure >= threshold]
    assert 0 < len(kept) < len(SENTENCES)
    assert pseudo_label(teachers, SENTENCES, 0.0) == list(zip(SENTENCES, tags))


def test_a_sure_silent_teacher_labels_everything_o(tmp_path):
    silent = load_tagger(write_tiny_model(tmp_path / "silent", silent=True), device="cpu", rules=False)
    assert pseudo_label([silent], SENTENCES, 0.9) == [(s, ["O"] * len(s)) for s in SENTENCES]


def test_teachers_must_share_their_labels(tmp_path, teachers):
    other = load_tagger(write_tiny_model(tmp_path / "other", labels=["O", "B-Disease", "I-Disease"]),
                        device="cpu", rules=False)
    with pytest.raises(MambanerError, match="same labels"):
        ensemble_marginals([teachers[0], other], SENTENCES)


def test_unlabeled_text_skips_headings_and_stops_at_the_limit(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("Figure 2\nOne two three four five\n" + "a " * 150 + "\nSix seven eight nine ten eleven\n"
                    "Twelve thirteen fourteen fifteen sixteen\n", encoding="utf-8")
    assert read_unlabeled([text], 2) == [["One", "two", "three", "four", "five"],
                                         ["Six", "seven", "eight", "nine", "ten", "eleven"]]
    with pytest.raises(MambanerError, match="Cannot read"):
        read_unlabeled([tmp_path / "missing.txt"], 5)


def test_pseudo_label_command_writes_what_training_reads(tmp_path, data):  # noqa: F811
    model = write_tiny_model(tmp_path / "teacher", silent=True)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(s) for s in SENTENCES) + "\n", encoding="utf-8")
    out = tmp_path / "pseudo.conll"
    result = CliRunner().invoke(cli, ["train", "pseudo-label", "--model", str(model), "--model", str(model),
                                      "--text", str(text), "--data-dir", str(data), "--threads", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert read_conll(out) == [(s, ["O"] * len(s)) for s in SENTENCES]
    assert "3 of 3 sentences kept" in " ".join(result.output.split())  # the console wraps lines
    # the file says how it was made, and which weights taught it; read_conll skips that line
    made = read_provenance(out)
    digest = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()[:16]
    assert made.startswith(f"`mambaner train pseudo-label --model={model} --model={model} --text={text} "
                           f"--data-dir={data} --max-sentences=20000 --min-confidence=0.9 --output={out}`: 3 of 3 sentences kept")
    assert made.endswith(f"teachers' weights (SHA-256): {model} {digest}; {model} {digest}")


def test_provenance_is_one_comment_line_that_read_conll_skips(tmp_path):
    sentences = [(["O"], ["O"]), (["B-Gene"], ["B-Gene"])]  # tokens that look like tags
    (tmp_path / "x.conll").write_text(conll_text(sentences, provenance="made by hand: O"), encoding="utf-8")
    assert read_conll(tmp_path / "x.conll") == sentences
    assert read_provenance(tmp_path / "x.conll") == "made by hand: O"
    (tmp_path / "plain.conll").write_text(conll_text(sentences), encoding="utf-8")
    assert read_provenance(tmp_path / "plain.conll") is None
    with pytest.raises(ValueError):
        conll_text(sentences, provenance="two\nlines")


def test_conll_text_round_trips(tmp_path):
    sentences = [(["BRCA1", "carriers", "#"], ["B-Gene", "O", "O"]), (["gout"], ["B-Disease"])]
    (tmp_path / "x.conll").write_text(conll_text(sentences), encoding="utf-8")
    assert read_conll(tmp_path / "x.conll") == sentences


def test_pseudo_labels_train_as_a_corpus_that_marks_every_type(tmp_path, data):  # noqa: F811
    pseudo = tmp_path / "pseudo.conll"
    pseudo.write_text(conll_text([(["BRCA1", "and", "gout", "in", "mice"],
                                   ["B-Gene", "O", "B-Disease", "O", "B-Species"])] * 4), encoding="utf-8")
    messages: list[str] = []
    args = ScratchArgs(output="unused", datasets=["ncbi", "species800"], data_dir=str(data), pseudo_files=[str(pseudo)])
    prepared = prepare_data(args, log=messages.append)
    plain = prepare_data(ScratchArgs(output="unused", datasets=["ncbi", "species800"], data_dir=str(data)),
                         log=lambda message: None)
    assert prepared.train == plain.train + [(["BRCA1", "and", "gout", "in", "mice"],
                                             ["B-Gene", "O", "B-Disease", "O", "B-Species"])] * 4
    assert prepared.corpus_ids["train"][-4:] == [2] * 4
    assert prepared.train_marks[-1] == ("Disease", "Gene", "Species")  # every type of the labels, in their order
    assert prepared.dev == plain.dev  # never devel
    assert "4 pseudo-labelled training sentences (--pseudo)" in messages
    with pytest.raises(MambanerError, match="not with --train or --conventions"):
        ScratchArgs(output="unused", datasets=["ncbi", "species800"], data_dir=str(data), conventions=True,
                    pseudo_files=[str(pseudo)])


def test_a_student_trains_on_gold_and_pseudo_labels(tmp_path, data):  # noqa: F811
    pseudo = tmp_path / "pseudo.conll"
    pseudo.write_text(conll_text([(["BRCA1", "and", "gout", "in", "mice"],
                                   ["B-Gene", "O", "B-Disease", "O", "B-Species"])] * 8,
                                 provenance="`mambaner train pseudo-label --model=t1`: 8 of 9 kept"), encoding="utf-8")
    args = ScratchArgs(output=str(tmp_path / "student"), datasets=["ncbi", "species800"], data_dir=str(data),
                       pseudo_files=[str(pseudo)], epochs=1, batch_size=4, hidden_size=16, num_layers=1,
                       state_size=4, word_dim=8, threads=1)
    from mambaner_cli.training.scratch import train_scratch

    metrics = train_scratch(args, log=lambda message: None)
    assert "B-Gene" in metrics["labels"]  # a type only the pseudo-labels have is learned
    card = (tmp_path / "student" / "README.md").read_text(encoding="utf-8")
    assert "Pseudo-labelled sentences" in card
    assert f"{pseudo} (made by `mambaner train pseudo-label --model=t1`: 8 of 9 kept)" in card


def test_devel_and_test_sentences_are_never_pseudo_labelled(tmp_path, data):  # noqa: F811
    from mambaner_cli.training.pseudo import held_out_keys, sentence_key

    from mambaner_cli.corpora import sentences

    keys = held_out_keys(data)
    devel = sentences("ncbi", "devel", data)[0][0]
    assert sentence_key(devel) in keys and len(devel) >= 5
    assert sentence_key(["One", "two", "three", "four", "five"]) not in keys
    text = tmp_path / "text.txt"  # the devel sentence, tokenized otherwise, between two others
    text.write_text("One two three four five\n" + "".join(devel[:2]) + " " + " ".join(devel[2:]) + "\n"
                    "Six seven eight nine ten\n", encoding="utf-8")
    assert len(read_unlabeled([text], 10)) == 3
    assert read_unlabeled([text], 10, exclude=keys) == [["One", "two", "three", "four", "five"],
                                                        ["Six", "seven", "eight", "nine", "ten"]]


def test_partial_pseudo_labels_list_every_tag_the_ensemble_finds_likely(teachers):
    from mambaner_cli.training.pseudo import partial_pseudo_label

    averaged = ensemble_marginals(teachers, SENTENCES)
    labels = list(teachers[0].labels)
    tags = posterior_tags(averaged, labels)
    labelled = partial_pseudo_label(teachers, SENTENCES, 0.0, 0.05)
    assert [(tokens, t) for tokens, t, _ in labelled] == pseudo_label(teachers, SENTENCES, 0.0)
    several = 0
    for (_, sentence_tags, choices), probabilities, expected in zip(labelled, averaged, tags, strict=True):
        assert sentence_tags == expected
        for j, (tag, options) in enumerate(zip(sentence_tags, choices, strict=True)):
            assert options[0] == tag  # its tag first, then the others at >= 0.05, most probable first
            others = {labels[k] for k in range(len(labels)) if probabilities[j, k] >= 0.05} - {tag}
            assert set(options[1:]) == others and len(options) == len(set(options))
            ranked = [probabilities[j, labels.index(o)] for o in options[1:]]
            assert ranked == sorted(ranked, reverse=True)
            several += len(options) > 1
    assert several > 0  # the tiny teachers are unsure somewhere: the test sees alternatives
    # a threshold of 1 leaves only the tag
    assert all(len(o) == 1 for _, _, c in partial_pseudo_label(teachers, SENTENCES, 0.0, 1.0) for o in c)


def test_a_partial_pseudo_label_file_reads_as_conll_and_gives_its_alternatives_back(tmp_path):
    from mambaner_cli.training.pseudo import read_alternatives

    sentences = [(["#", "BRCA1", "gout"], ["O", "B-Gene", "B-Disease"]), (["mice"], ["B-Species"])]
    choices = [[("O",), ("B-Gene", "O"), ("B-Disease", "B-Gene", "O")], [("B-Species",)]]
    path = tmp_path / "partial.conll"
    path.write_text(conll_text(sentences, provenance="made here", alternatives=choices), encoding="utf-8")
    assert "BRCA1\tB-Gene|O\tB-Gene\n" in path.read_text(encoding="utf-8")
    assert read_conll(path) == sentences  # CoNLL readers see token and tag (first and last columns)
    assert read_alternatives(path) == choices
    plain = tmp_path / "plain.conll"
    plain.write_text(conll_text(sentences), encoding="utf-8")
    assert read_alternatives(plain) is None


def test_a_student_may_learn_an_unsure_token_as_any_of_its_alternatives(tmp_path, data):  # noqa: F811
    import torch
    from mambaner_cli.training.scratch import batch_loss_function, build_network

    sentence = (["BRCA1", "and", "gout", "in", "mice"], ["B-Gene", "O", "B-Disease", "O", "B-Species"])
    choices = [("B-Gene", "B-Disease"), ("O",), ("B-Disease", "O"), ("O",), ("B-Species",)]
    partial, sure = tmp_path / "partial.conll", tmp_path / "sure.conll"
    partial.write_text(conll_text([sentence] * 4, alternatives=[choices] * 4), encoding="utf-8")
    sure.write_text(conll_text([sentence] * 4, alternatives=[[c[:1] for c in choices]] * 4), encoding="utf-8")

    def prepared(path):
        args = ScratchArgs(output="unused", datasets=["ncbi", "species800"], data_dir=str(data),
                           pseudo_files=[str(path)], hidden_size=16, num_layers=1, state_size=4, word_dim=8)
        return args, prepare_data(args, log=lambda message: None)

    args, data_partial = prepared(partial)
    gold = len(data_partial.train) - 4
    assert data_partial.train_alternatives[:gold] == [None] * gold and data_partial.train_alternatives[gold:] == [choices] * 4
    assert prepared(sure)[1].train_alternatives is None  # one tag a token: nothing partial
    network = build_network(args, data_partial, log=lambda message: None)
    seen = {}
    original = network.loss

    def loss(**kwargs):
        seen["allowed"] = kwargs["allowed"]
        return original(**kwargs)

    network.loss = loss
    torch.manual_seed(0)
    with_alternatives = batch_loss_function(args, data_partial, network)([gold, gold + 1])
    labels = data_partial.labels
    allowed = seen["allowed"][0]  # the first pseudo sentence
    assert {labels[k] for k in allowed[0].nonzero().flatten().tolist()} == {"B-Gene", "B-Disease"}
    assert {labels[k] for k in allowed[2].nonzero().flatten().tolist()} == {"B-Disease", "O"}
    assert allowed[1].sum() == 1 and allowed[4].sum() == 1
    # more paths allowed, a smaller loss than the same sentences read with their tags alone (same weights and
    # word dropout: the same seed)
    data_sure = prepare_data(replace_pseudo(args, sure), log=lambda message: None)
    torch.manual_seed(0)
    tags_only = batch_loss_function(args, data_sure, network)([gold, gold + 1])
    assert float(with_alternatives.detach()) < float(tags_only.detach())


def replace_pseudo(args, path):
    import dataclasses

    return dataclasses.replace(args, pseudo_files=[str(path)])
