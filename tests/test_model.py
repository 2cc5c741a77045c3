"""Tests for mambaner_cli.model: scan, mixer, CRF, features, config, embeddings, tagger."""

from __future__ import annotations

import copy
import itertools
import time

import pytest
import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaModel

from mambaner_cli.model.ops.scan import (
    scan_channels_last,
    scan_time_major,
    selective_scan,
    selective_scan_chunked,
    selective_scan_ref,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, torch's OpenMP threads wait on each other whenever
    another process holds a core, which made these tests up to 50x slower. Results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scan_inputs(
    b: int, d: int, l: int, n: int, *, dtype=torch.float32, max_delta=None, max_decay_rate=2.0, seed=0
) -> dict:
    """Random selective-scan arguments; max_delta switches to raw (no softplus) Δ in [0, max_delta]."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    if max_delta is None:
        delta, softplus, bias = randn(b, d, l) * 0.5, True, randn(d) * 0.5
    else:
        delta, softplus, bias = torch.rand(b, d, l, generator=g, dtype=dtype) * max_delta, False, None
    A = -(torch.rand(d, n, generator=g, dtype=dtype) * (max_decay_rate - 0.05) + 0.05)
    return {
        "u": randn(b, d, l),
        "delta": delta,
        "A": A,
        "B": randn(b, n, l),
        "C": randn(b, n, l),
        "D": randn(d),
        "z": randn(b, d, l),
        "delta_bias": bias,
        "delta_softplus": softplus,
    }


# ---------------------------------------------------------------------------------------------- scan


@pytest.mark.parametrize(
    "b,d,l,n,chunk",
    [(2, 8, 37, 4, 5), (3, 16, 64, 8, 0), (1, 4, 1, 3, 4), (2, 6, 33, 5, 1), (2, 8, 50, 4, 64)],
)
def test_chunked_scan_matches_reference(b, d, l, n, chunk):
    args = scan_inputs(b, d, l, n)
    expected = selective_scan_ref(**args)
    got = selective_scan_chunked(**args, chunk_size=chunk)
    assert got.shape == (b, d, l)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_chunked_scan_optional_arguments():
    args = scan_inputs(2, 8, 19, 4)
    for drop in itertools.product([False, True], repeat=3):
        partial = dict(args)
        for key, off in zip(("D", "z", "delta_bias"), drop):
            if off:
                partial[key] = None
        torch.testing.assert_close(
            selective_scan_chunked(**partial, chunk_size=4),
            selective_scan_ref(**partial),
            rtol=1e-5,
            atol=1e-5,
        )


def test_chunked_scan_is_stable_for_large_decays():
    # Δ up to 5 and A down to -16: single-step decays down to exp(-80), cumulative far below float range.
    args = scan_inputs(2, 8, 512, 4, max_delta=5.0, max_decay_rate=16.0, seed=1)
    expected = selective_scan_ref(**args)
    got = selective_scan_chunked(**args, chunk_size=16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # Far beyond float range per step (exp(-800)): the state simply resets, nothing overflows.
    args["delta"] = args["delta"] * 10
    got = selective_scan_chunked(**args, chunk_size=16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, selective_scan_ref(**args), rtol=1e-5, atol=1e-5)
    assert_gradients_match(args, chunk_size=16)


def assert_gradients_match(args: dict, chunk_size: int) -> None:
    """Gradients of a random projection of the output, chunked vs reference, for every tensor argument."""
    names = [k for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias") if args[k] is not None]
    weights = torch.randn(args["u"].shape, generator=torch.Generator().manual_seed(3))

    def grads(fn, **extra):
        leaves = {k: args[k].clone().requires_grad_() for k in names}
        out = fn(**{**args, **leaves}, **extra)
        return torch.autograd.grad((out * weights).sum(), [leaves[k] for k in names])

    for name, got, expected in zip(
        names, grads(selective_scan_chunked, chunk_size=chunk_size), grads(selective_scan_ref)
    ):
        assert torch.isfinite(got).all(), name
        assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max()), name


def test_chunked_scan_gradients_match_reference():
    assert_gradients_match(scan_inputs(2, 8, 29, 4, seed=2), chunk_size=6)


def test_chunked_scan_gradcheck_float64():
    args = scan_inputs(2, 3, 9, 2, dtype=torch.float64, seed=4)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    leaves = [args[k].clone().requires_grad_() for k in names]
    assert torch.autograd.gradcheck(
        lambda *xs: selective_scan_chunked(**dict(zip(names, xs)), delta_softplus=True, chunk_size=4), leaves
    )


def test_channels_last_core_equals_public_layout():
    args = scan_inputs(2, 8, 21, 4, seed=5)
    delta = F.softplus(args["delta"] + args["delta_bias"][:, None])
    expected = selective_scan_chunked(args["u"], delta, args["A"], args["B"], args["C"], chunk_size=5)
    got = scan_channels_last(
        args["u"].transpose(1, 2),
        delta.transpose(1, 2),
        args["A"],
        args["B"].transpose(1, 2),
        args["C"].transpose(1, 2),
        chunk_size=7,
    )
    torch.testing.assert_close(got.transpose(1, 2), expected, rtol=1e-5, atol=1e-5)


def test_dispatch_on_cpu_is_the_chunked_path():
    args = scan_inputs(2, 8, 17, 4, seed=6)
    torch.testing.assert_close(selective_scan(**args), selective_scan_chunked(**args), rtol=0, atol=0)


@pytest.mark.parametrize("b,d,l,n,chunk", [(2, 8, 37, 4, 5), (3, 16, 20, 8, 0), (1, 4, 1, 3, 4), (2, 6, 9, 5, 1),
                                         (2, 8, 12, 4, 64)])
def test_time_major_scan_equals_the_chunked_core(b, d, l, n, chunk):
    """The inference scan runs the chunked core's operations in the same order: equal bit for bit, and
    within float tolerance of the sequential reference. B and C come as strided views, as from x_proj."""
    args = scan_inputs(b, d, l, n, seed=9)
    delta = F.softplus(args["delta"] + args["delta_bias"][:, None])  # b d l
    u, B, C = args["u"], args["B"], args["C"]
    expected = scan_channels_last(u.transpose(1, 2), delta.transpose(1, 2), args["A"], B.transpose(1, 2),
                                  C.transpose(1, 2), chunk_size=chunk)  # b l d
    projected = torch.cat([torch.randn(l, b, 3), B.permute(2, 0, 1), C.permute(2, 0, 1)], dim=-1)  # l b 3+2n
    _, B_view, C_view = torch.split(projected, [3, n, n], dim=-1)  # l b n, l b n    (not contiguous)
    with torch.inference_mode():
        got = scan_time_major(u.permute(2, 0, 1).contiguous(), delta.permute(2, 0, 1).contiguous(), args["A"],
                              B_view, C_view, chunk_size=chunk)  # l b d
    assert got.shape == (l, b, d)
    torch.testing.assert_close(got.transpose(0, 1), expected, rtol=0, atol=0)
    reference = selective_scan_ref(u, delta, args["A"], B, C)  # b d l
    torch.testing.assert_close(got.permute(1, 2, 0), reference, rtol=1e-5, atol=1e-5)


def test_time_major_scan_keeps_float64():
    args = scan_inputs(2, 4, 7, 3, dtype=torch.float64, max_delta=1.5, seed=10)
    u, delta, B, C = (args[k].permute(2, 0, 1).contiguous() for k in ("u", "delta", "B", "C"))
    got = scan_time_major(u, delta, args["A"], B, C, chunk_size=3)
    assert got.dtype == torch.float64
    expected = scan_channels_last(*(args[k].transpose(1, 2) for k in ("u", "delta")), args["A"],
                                  *(args[k].transpose(1, 2) for k in ("B", "C")), chunk_size=3)  # float64 too
    torch.testing.assert_close(got.transpose(0, 1), expected, rtol=0, atol=0)


@pytest.mark.parametrize("length,kernel,bias", [(9, 4, True), (2, 4, True), (3, 4, False), (5, 1, True),
                                                (6, 3, True), (1, 2, False)])
def test_time_major_conv_equals_the_batch_major_conv(length, kernel, bias):
    from mambaner_cli.model.ops.conv import causal_depthwise_conv, causal_depthwise_conv_time_major

    g = torch.Generator().manual_seed(length * 10 + kernel)
    x = torch.randn(3, length, 2 * 5, generator=g)[:, :, :5]  # b l d    a strided view, like chunk()
    weight, b = torch.randn(5, 1, kernel, generator=g), torch.randn(5, generator=g) if bias else None
    expected = causal_depthwise_conv(x, weight, b)  # b l d
    got = causal_depthwise_conv_time_major(x.transpose(0, 1), weight, b)  # l b d
    torch.testing.assert_close(got.transpose(0, 1), expected, rtol=0, atol=0)
    padded = F.conv1d(x.transpose(1, 2), weight, b, padding=kernel - 1, groups=5)[..., :length]  # b d l
    torch.testing.assert_close(got.permute(1, 2, 0), padded, rtol=1e-6, atol=1e-6)


def test_chunked_scan_is_faster_than_reference():
    """A loose guard (the benchmark script has the real numbers): 176 positions, b=4, d=256, n=16."""
    args = scan_inputs(4, 256, 176, 16, seed=7)

    def best(fn, repeats=3):
        fn(**args)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(**args)
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.no_grad():
        assert best(selective_scan_chunked) * 1.5 < best(selective_scan_ref)


# --------------------------------------------------------------------------------------------- mixer


def tiny_mamba(seed: int = 0) -> MambaModel:
    torch.manual_seed(seed)
    config = MambaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, state_size=8, use_cache=False)
    return MambaModel(config)


def test_use_fast_scan_swaps_mixers_and_keeps_parameters():
    from mambaner_cli.model.mixer import FastMambaMixer, use_fast_scan

    model = tiny_mamba()
    names = list(model.state_dict())
    fast = use_fast_scan(copy.deepcopy(model))
    assert all(type(layer.mixer) is FastMambaMixer for layer in fast.layers)
    assert list(fast.state_dict()) == names
    assert use_fast_scan(fast) is fast  # idempotent


@pytest.mark.parametrize("masked", [False, True])
def test_fast_mixer_matches_transformers_forward_and_gradients(masked):
    from mambaner_cli.model.mixer import use_fast_scan

    model = tiny_mamba()
    fast = use_fast_scan(copy.deepcopy(model))
    ids = torch.randint(0, 99, (3, 13), generator=torch.Generator().manual_seed(0))
    mask = None
    if masked:
        mask = torch.ones(3, 13, dtype=torch.long)
        mask[1, 9:] = 0
        mask[2, 4:] = 0
    with torch.no_grad():
        model.eval()
        fast.eval()
        torch.testing.assert_close(
            fast(ids, attention_mask=mask).last_hidden_state,
            model(ids, attention_mask=mask).last_hidden_state,
            rtol=1e-5,
            atol=1e-5,
        )
    model.train()
    fast.train()
    expected = model(ids, attention_mask=mask).last_hidden_state
    got = fast(ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    expected_grads = torch.autograd.grad((expected * weights).sum(), list(model.parameters()))
    got_grads = torch.autograd.grad((got * weights).sum(), list(fast.parameters()))
    for (name, _), g, e in zip(model.named_parameters(), got_grads, expected_grads):
        assert (g - e).abs().max() <= 1e-5 * max(1.0, e.abs().max()), name


def test_channels_first_path_for_cuda_matches_transformers():
    """The [b, d, l] path used on CUDA (mamba_ssm's kernels there) is run here on the CPU, where its
    ``selective_scan`` falls back to the chunked scan: same result as transformers' mixer."""
    from transformers.models.mamba.modeling_mamba import MambaMixer

    from mambaner_cli.model.mixer import use_fast_scan

    mixer = use_fast_scan(tiny_mamba()).layers[0].mixer.eval()
    hidden = torch.randn(3, 9, 32, generator=torch.Generator().manual_seed(5))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[2, 5:] = 0
    with torch.no_grad():
        expected = MambaMixer.forward(mixer, hidden, attention_mask=mask)
        torch.testing.assert_close(mixer._cuda_forward(hidden, mask), expected, rtol=1e-5, atol=1e-5)


def test_fast_mixer_with_cache_defers_to_transformers():
    from mambaner_cli.model.mixer import use_fast_scan

    model = tiny_mamba().eval()
    fast = use_fast_scan(copy.deepcopy(model))
    ids = torch.randint(0, 99, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(ids, use_cache=True)
        got = fast(ids, use_cache=True)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state)


def test_fast_mixer_under_peft_and_save_pretrained(tmp_path):
    peft = pytest.importorskip("peft")
    from mambaner_cli.model.mixer import FastMambaMixer, use_fast_scan

    model = tiny_mamba()
    model.save_pretrained(tmp_path)
    reloaded = use_fast_scan(MambaModel.from_pretrained(tmp_path)).eval()
    ids = torch.randint(0, 99, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(ids).last_hidden_state, model.eval()(ids).last_hidden_state, rtol=1e-5, atol=1e-5
        )
    lora = peft.LoraConfig(r=4, target_modules=["in_proj", "x_proj"], init_lora_weights=False)
    wrapped = peft.get_peft_model(tiny_mamba(), lora).eval()
    with torch.no_grad():
        expected = wrapped(input_ids=ids).last_hidden_state
        use_fast_scan(wrapped)
        assert any(type(m) is FastMambaMixer for m in wrapped.modules())
        got = wrapped(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fast_mixer_applies_a_lora_adapter_on_dt_proj():
    """transformers reads dt_proj.weight directly (skipping an adapter); ours calls the module, so the
    adapted model equals the merged one."""
    peft = pytest.importorskip("peft")
    from transformers.models.mamba.modeling_mamba import MambaMixer

    from mambaner_cli.model.mixer import FastMambaMixer, use_fast_scan

    lora = peft.LoraConfig(r=4, target_modules=["in_proj", "x_proj", "dt_proj"], init_lora_weights=False)
    wrapped = use_fast_scan(peft.get_peft_model(tiny_mamba(), lora)).eval()
    ids = torch.randint(0, 99, (2, 11), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = wrapped(input_ids=ids).last_hidden_state
        merged = wrapped.merge_and_unload()
        for module in merged.modules():
            if type(module) is FastMambaMixer:
                module.__class__ = MambaMixer
        expected = merged(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------- CRF

LABELS = ["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]


def valid(tag_ids: list[int], labels: list[str] = LABELS) -> bool:
    from mambaner_cli.model.modules.crf import is_valid_iob2

    return is_valid_iob2([labels[i] for i in tag_ids])


def brute_force_scores(crf, emissions: torch.Tensor, length: int, forbidden: float) -> dict[tuple, float]:
    """Score of every tag sequence of a sentence, computed term by term from the CRF's parameters."""
    from mambaner_cli.model.modules.crf import allowed_moves

    allowed, allowed_start = allowed_moves(crf.labels)
    transitions = crf.transitions.detach().masked_fill(~allowed, forbidden)
    start = crf.start_transitions.detach().masked_fill(~allowed_start, forbidden)
    scores = {}
    for seq in itertools.product(range(len(crf.labels)), repeat=length):
        score = start[seq[0]] + crf.end_transitions.detach()[seq[-1]]
        score = score + sum(emissions[i, tag] for i, tag in enumerate(seq))
        score = score + sum(transitions[a, b] for a, b in itertools.pairwise(seq))
        scores[seq] = float(score)
    return scores


def random_crf(seed: int):
    from mambaner_cli.model.modules.crf import CRF

    torch.manual_seed(seed)
    crf = CRF(LABELS)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_(0, 1.0)
    return crf


def test_allowed_moves_follow_iob2():
    from mambaner_cli.model.modules.crf import allowed_moves, is_valid_iob2

    transitions, start = allowed_moves(LABELS)
    index = {label: i for i, label in enumerate(LABELS)}
    assert transitions[index["B-Disease"], index["I-Disease"]]
    assert transitions[index["I-Disease"], index["I-Disease"]]
    assert not transitions[index["O"], index["I-Disease"]]
    assert not transitions[index["B-Chemical"], index["I-Disease"]]
    assert transitions[index["I-Chemical"], index["B-Disease"]] and transitions[index["O"], index["O"]]
    assert start.tolist() == [True, True, False, True, False]
    assert is_valid_iob2(["O", "B-Disease", "I-Disease", "B-Disease"]) and not is_valid_iob2(["I-Disease"])


def test_crf_likelihood_viterbi_marginals_match_brute_force():
    crf = random_crf(0)
    lengths = [4, 2, 1, 3]
    emissions = torch.randn(4, 4, len(LABELS), generator=torch.Generator().manual_seed(1)) * 2
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    tags = torch.tensor([[1, 2, 0, 3], [3, 4, 0, 0], [0, 0, 0, 0], [2, 2, 1, 0]])  # last one starts invalid
    nll = crf.neg_log_likelihood(emissions, tags, mask)
    paths = crf.viterbi(emissions, mask)
    marginals = crf.marginals(emissions, mask)
    expected_nll = 0.0
    for k, n in enumerate(lengths):
        soft = brute_force_scores(crf, emissions[k], n, -1e4)
        log_z = torch.logsumexp(torch.tensor(list(soft.values()), dtype=torch.float64), 0).item()
        expected_nll += log_z - soft[tuple(tags[k, :n].tolist())]
        hard = {seq: s for seq, s in soft.items() if valid(list(seq))}
        assert tuple(paths[k]) == max(hard, key=hard.get)
        for i in range(n):
            for tag in range(len(LABELS)):
                p = sum(
                    torch.exp(torch.tensor(s - log_z, dtype=torch.float64)).item()
                    for seq, s in soft.items()
                    if seq[i] == tag
                )
                assert abs(marginals[k, i, tag].item() - p) < 1e-5
        assert marginals[k, n:].abs().sum() == 0
    assert abs(nll.item() - expected_nll / 4) < 1e-3 * max(1.0, abs(expected_nll))
    # a mislabelled (invalid) gold sequence costs a lot but stays finite, and so do the gradients
    nll.backward()
    assert nll.item() > 1e3 and all(torch.isfinite(p.grad).all() for p in crf.parameters())


def test_crf_never_decodes_an_invalid_sequence():
    from mambaner_cli.model.modules.crf import constrained_viterbi

    for seed in range(30):
        crf = random_crf(seed)
        with torch.no_grad():
            crf.transitions.mul_(20)
        g = torch.Generator().manual_seed(seed)
        emissions = torch.randn(8, 12, len(LABELS), generator=g) * 30
        emissions[:, :, 2] += 40  # push hard towards I-Disease everywhere
        mask = torch.arange(12)[None, :] < torch.randint(1, 13, (8, 1), generator=g)
        for paths in (
            crf.viterbi(emissions, mask),
            constrained_viterbi(emissions.log_softmax(-1), mask, LABELS),
        ):
            assert [len(p) for p in paths] == mask.sum(1).tolist()
            assert all(valid(p) for p in paths)


def test_constrained_viterbi_is_best_valid_sequence():
    from mambaner_cli.model.modules.crf import constrained_viterbi

    log_probs = torch.randn(3, 4, len(LABELS), generator=torch.Generator().manual_seed(5)).log_softmax(-1)
    lengths = [4, 3, 1]
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    paths = constrained_viterbi(log_probs, mask, LABELS)
    for k, n in enumerate(lengths):
        best = max(
            (seq for seq in itertools.product(range(len(LABELS)), repeat=n) if valid(list(seq))),
            key=lambda seq: sum(log_probs[k, i, t].item() for i, t in enumerate(seq)),
        )
        assert tuple(paths[k]) == best


def reference_viterbi(emissions: torch.Tensor, transitions: torch.Tensor, start: torch.Tensor,
                      end: torch.Tensor) -> list[int]:
    """One sentence, position by position, the textbook way: emissions [n, t]."""
    if emissions.shape[0] == 0:
        return []
    score, pointers = start + emissions[0], []
    for i in range(1, emissions.shape[0]):
        best, pointer = (score[:, None] + transitions).max(dim=0)
        pointers.append(pointer)
        score = best + emissions[i]
    path = [int((score + end).argmax())]
    for pointer in reversed(pointers):
        path.append(int(pointer[path[-1]]))
    return path[::-1]


def test_viterbi_equals_a_per_sentence_reference_on_long_batches():
    for seed in range(5):
        crf = random_crf(seed)
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(0, 40, (9,), generator=g)
        lengths[0] = 40
        emissions = torch.randn(9, 40, len(LABELS), generator=g) * 3
        mask = torch.arange(40)[None, :] < lengths[:, None]
        transitions, start, end = crf._scores(float("-inf"))
        with torch.inference_mode():
            paths = crf.viterbi(emissions, mask)
        for k, n in enumerate(lengths.tolist()):
            assert paths[k] == reference_viterbi(emissions[k, :n], transitions, start, end)
            assert valid(paths[k])


def test_crf_handles_empty_sentences():
    crf = random_crf(3)
    emissions = torch.randn(2, 3, len(LABELS))
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert crf.viterbi(emissions, mask)[1] == []
    assert torch.isfinite(crf.neg_log_likelihood(emissions, torch.zeros(2, 3, dtype=torch.long), mask))
    assert crf.marginals(emissions, mask)[1].sum() == 0


# ------------------------------------------------------------------------------------------ features


def test_vocabulary_build_encode_and_round_trip():
    from collections import Counter

    from mambaner_cli.model.features import Vocabulary

    vocab = Vocabulary.build(Counter({"cancer": 3, "tumour": 1, "aids": 3, "of": 2}), min_count=2)
    assert vocab.to_list() == ["<pad>", "<unk>", "aids", "cancer", "of"]  # by count, ties alphabetically
    assert len(vocab) == 5 and vocab.encode("cancer") == 3 and vocab.encode("tumour") == Vocabulary.UNK
    assert Vocabulary.build(["b", "a", "b"]).to_list() == ["<pad>", "<unk>", "b", "a"]
    again = Vocabulary.from_list(vocab.to_list())
    assert again.to_list() == vocab.to_list() and again.encode("of") == 4
    with pytest.raises(ValueError, match="start with"):
        Vocabulary.from_list(["cancer", "<pad>"])
    with pytest.raises(ValueError, match="repeats"):
        Vocabulary.from_list(["<pad>", "<unk>", "a", "a"])


def test_normalize_word_and_case_id():
    from mambaner_cli.model import features as f

    assert f.normalize_word("IL-6") == "il-0" and f.normalize_word("COVID19") == "covid00"
    cases = {
        "cancer": f.CASE_LOWER,
        "DNA": f.CASE_UPPER,
        "Crohn": f.CASE_TITLE,
        "mRNA": f.CASE_MIXED,
        "BRCA1": f.CASE_DIGIT,
        "1998": f.CASE_DIGIT,
        "(": f.CASE_PUNCT,
        "--": f.CASE_PUNCT,
        "+": f.CASE_PUNCT,
        "T-cell": f.CASE_TITLE,
        "α": f.CASE_LOWER,
        "": f.CASE_OTHER,
        "\u00b2\u00b3": f.CASE_DIGIT,
    }
    assert {word: f.case_id(word) for word in cases} == cases
    assert all(0 < f.case_id(w) < f.NUM_CASE_IDS for w in ["x", "X", "Xx", "x1", ".", "™", "\u0301"])


def test_encode_batch_pads_right_and_keeps_suffixes():
    from mambaner_cli.model.features import CASE_TITLE, Vocabulary, clip_word, encode_batch

    words = Vocabulary.build(["the", "il-0", "hepatitis"])
    chars = Vocabulary.build("abcdefghijklmnopqrstuvwxyz")
    batch = encode_batch(
        [["The", "IL-6", "hepatitis"], [], ["glomerulonephritis"]], words, chars, max_word_len=10
    )
    assert batch["word_ids"].shape == (3, 3) and batch["char_ids"].shape == (3, 3, 10)
    assert batch["mask"].tolist() == [[True, True, True], [False] * 3, [True, False, False]]
    assert batch["word_ids"][0].tolist() == [
        words.encode("the"),
        words.encode("il-0"),
        words.encode("hepatitis"),
    ]
    assert batch["word_ids"][2, 0] == Vocabulary.UNK and batch["case_ids"][0, 0] == CASE_TITLE
    assert batch["case_ids"][1].tolist() == [0, 0, 0] and batch["char_ids"][1].sum() == 0
    assert clip_word("glomerulonephritis", 10) == "glomeritis"
    assert batch["char_ids"][2, 0].tolist() == [chars.encode(c) for c in "glomeritis"]
    assert batch["char_ids"][0, 0, 0] == Vocabulary.UNK  # "T": characters keep their case
    empty = encode_batch([], words, chars, 20)
    assert empty["word_ids"].shape == (0, 1) and empty["char_ids"].shape == (0, 1, 1)


def test_encode_batch_memo_is_per_vocabulary_and_length():
    """Token encodings are memoised; a memo must never answer for other vocabularies or clip lengths."""
    from mambaner_cli.model import features as f

    words = f.Vocabulary.build(["cancer", "the"])
    lower, upper = f.Vocabulary.build("abcdefghijklmnopqrstuvwxyz"), f.Vocabulary.build("ZYXCANER")
    sentences = [["The", "cancer", "Cancer"], ["cancer"]]
    first = f.encode_batch(sentences, words, lower, 20)
    again = f.encode_batch(sentences, words, lower, 20)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert first["char_ids"][0, 1].tolist() == [lower.encode(c) for c in "cancer"]
    assert f.encode_batch(sentences, words, upper, 20)["char_ids"][0, 2].tolist() == \
        [upper.encode(c) for c in "Cancer"]
    assert f.encode_batch(sentences, words, lower, 3)["char_ids"][0, 1].tolist() == \
        [lower.encode(c) for c in "car"]
    other_words = f.Vocabulary.build(["the", "cancer"])
    assert f.encode_batch(sentences, other_words, lower, 20)["word_ids"][0].tolist() == \
        [other_words.encode("the"), other_words.encode("cancer")] * 1 + [other_words.encode("cancer")]
    f._token_memo(words, lower, 20).update({str(i): (1, 1, bytes(80), 0) for i in range(f._MEMO_SIZE + 1)})
    f.encode_batch([["cancer"]], words, lower, 20)
    assert len(f._token_memo(words, lower, 20)) == 1  # an outgrown memo starts afresh


# -------------------------------------------------------------------------------------------- config


def test_config_round_trip_and_validation():
    from mambaner_cli.model.config import TaggerConfig

    config = TaggerConfig(labels=["O", "B-Disease", "I-Disease"], word_vocab_size=100, char_vocab_size=50)
    assert config.num_tags == 3 and config.hidden_size == 128 and config.use_crf and config.bidirectional
    assert TaggerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="colour, shape"):
        TaggerConfig.from_dict({**config.to_dict(), "shape": 1, "colour": 2})
    for labels in (["B-Disease", "O"], ["O", "Disease"], ["O", "I-Disease"], ["O", "B-X", "B-X"], []):
        with pytest.raises(ValueError, match="labels"):
            TaggerConfig(labels=labels, word_vocab_size=100, char_vocab_size=50)
    with pytest.raises(ValueError, match="dropout"):
        TaggerConfig(labels=["O"], word_vocab_size=100, char_vocab_size=50, dropout=1.0)
    with pytest.raises(ValueError, match="hidden_size"):
        TaggerConfig(labels=["O"], word_vocab_size=100, char_vocab_size=50, hidden_size=0)


# ---------------------------------------------------------------------------------------- embeddings


def tiny_config(**overrides):
    from mambaner_cli.model.config import TaggerConfig

    values = {
        "labels": ["O", "B-Disease", "I-Disease"],
        "word_vocab_size": 60,
        "char_vocab_size": 40,
        "word_dim": 16,
        "char_dim": 8,
        "char_channels": 12,
        "case_dim": 4,
        "hidden_size": 24,
        "num_layers": 2,
        "state_size": 4,
        "dropout": 0.1,
    }
    values.update(overrides)
    return TaggerConfig(**values)


def test_token_features_ignore_character_padding():
    from mambaner_cli.model.modules.embeddings import TokenFeatures

    torch.manual_seed(0)
    features = TokenFeatures(tiny_config()).eval()
    word_ids, case_ids = torch.tensor([[5, 6]]), torch.tensor([[1, 3]])
    narrow = torch.tensor([[[3, 4, 5], [7, 0, 0]]])
    wide = torch.cat([narrow, torch.zeros(1, 2, 6, dtype=torch.long)], dim=2)
    out = features(word_ids, narrow, case_ids)
    assert out.shape == (1, 2, 24)
    torch.testing.assert_close(features(word_ids, wide, case_ids), out)
    empty = features(word_ids, torch.zeros(1, 2, 3, dtype=torch.long), case_ids)
    assert torch.isfinite(empty).all()


@pytest.mark.parametrize("kernel,bias", [(3, True), (2, True), (4, False), (5, True), (1, True)])
def test_character_lookup_equals_the_convolution(kernel, bias):
    """Tagging computes the character CNN by table look-ups at real characters; training convolves."""
    from mambaner_cli.model.modules.embeddings import TokenFeatures

    torch.manual_seed(kernel)
    features = TokenFeatures(tiny_config(char_kernel=kernel)).eval()
    if not bias:
        features.char_cnn.bias = None
    with torch.no_grad():
        features.chars.weight.normal_()  # the padding row too: real characters next to padding read it
    g = torch.Generator().manual_seed(kernel)
    char_ids = torch.randint(1, 40, (3, 5, 7), generator=g)  # b l c
    lengths = torch.randint(0, 8, (3, 5), generator=g)  # characters per word, some words empty
    char_ids = char_ids.masked_fill(torch.arange(7)[None, None, :] >= lengths[:, :, None], 0)
    char_ids[0, 0, 3] = 0  # a hole inside a word: the convolution reads it as padding, so must the lookup
    convolved = features.char_vectors(char_ids)  # autograd on: the convolution
    with torch.inference_mode():
        looked_up = features.char_vectors(char_ids)
        empty = features.char_vectors(torch.zeros(2, 3, 4, dtype=torch.long))
    assert looked_up.shape == convolved.shape == (3, 5, features.char_cnn.out_channels)
    torch.testing.assert_close(looked_up, convolved.detach(), rtol=1e-5, atol=1e-5)
    assert (looked_up[lengths == 0] == 0).all() and (empty == 0).all()


# -------------------------------------------------------------------------------------------- tagger

VOCAB_WORDS = [
    "the",
    "a",
    "patient",
    "patients",
    "with",
    "had",
    "severe",
    "acute",
    "chronic",
    "and",
    "of",
    "in",
    "was",
    "were",
    "treated",
    "for",
    "developed",
    "history",
    "lung",
    "skin",
    "liver",
    "no",
    "signs",
    "hepatitis",
    "arthritis",
    "dermatitis",
    "nephritis",
    "colitis",
    "melanoma",
    "carcinoma",
    "lymphoma",
    "glioma",
    "myeloma",
    "sarcoma",
    "biopsy",
    "showed",
    "after",
    "surgery",
    "improved",
]


def tagger_inputs(sentences, config):
    from mambaner_cli.model.features import Vocabulary, encode_batch

    words = Vocabulary.build(VOCAB_WORDS)
    chars = Vocabulary.build("abcdefghijklmnopqrstuvwxyz")
    assert len(words) <= config.word_vocab_size and len(chars) <= config.char_vocab_size
    return encode_batch(sentences, words, chars, config.max_word_len)


def test_tagger_shapes_loss_and_decode():
    from mambaner_cli.model.models.tagger import MambaTagger

    for use_crf in (True, False):
        torch.manual_seed(0)
        config = tiny_config(use_crf=use_crf)
        model = MambaTagger(config)
        batch = tagger_inputs([["the", "patient", "had", "hepatitis"], ["melanoma"]], config)
        emissions = model(**batch)
        assert emissions.shape == (2, 4, 3)
        loss = model.loss(**batch, tags=torch.tensor([[0, 0, 0, 1], [1, 0, 0, 0]]))
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert model.forward_mamba.layers[0].mixer.A_log.grad is not None
        model.eval()
        tags, confidences = model.decode(**batch)
        assert [len(t) for t in tags] == [4, 1] and [len(c) for c in confidences] == [4, 1]
        assert all(valid(t, config.labels) for t in tags)
        assert all(0.0 < c <= 1.0 for row in confidences for c in row)
    assert "forward_mamba.layers.1.mixer.A_log" in model.state_dict()
    assert not any(key.startswith("crf.allowed") for key in MambaTagger(tiny_config()).state_dict())


def test_tagger_state_dict_round_trip():
    from mambaner_cli.model.models.tagger import MambaTagger

    config = tiny_config()
    torch.manual_seed(3)
    trained = MambaTagger(config).eval()
    torch.manual_seed(4)
    fresh = MambaTagger(type(config).from_dict(config.to_dict())).eval()
    fresh.load_state_dict(trained.state_dict())  # strict: same keys, no derived buffers
    batch = tagger_inputs([["the", "patient", "had", "hepatitis"]], config)
    assert fresh.decode(**batch) == trained.decode(**batch)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_tagger_is_padding_invariant(bidirectional):
    from mambaner_cli.model.models.tagger import MambaTagger

    torch.manual_seed(1)
    config = tiny_config(bidirectional=bidirectional)
    model = MambaTagger(config).eval()
    short = ["the", "patient", "had", "hepatitis"]
    long = [
        "patients",
        "with",
        "chronic",
        "arthritis",
        "and",
        "skin",
        "melanoma",
        "were",
        "treated",
        "for",
        "colitis",
        "after",
        "surgery",
    ]
    alone = tagger_inputs([short], config)
    batched = tagger_inputs([long, short, ["no"]], config)
    with torch.no_grad():
        torch.testing.assert_close(model(**batched)[1, :4], model(**alone)[0], rtol=1e-5, atol=1e-5)
    tags_alone, conf_alone = model.decode(**alone)
    tags_batched, conf_batched = model.decode(**batched)
    assert tags_batched[1] == tags_alone[0]
    assert conf_batched[1] == pytest.approx(conf_alone[0], abs=1e-5)


def test_backward_direction_sees_right_context():
    from mambaner_cli.model.models.tagger import MambaTagger

    sentence = ["the", "patient", "had", "severe", "acute", "hepatitis", "and", "lung", "carcinoma"]
    changed = list(sentence)
    changed[6] = "with"
    for bidirectional in (True, False):
        torch.manual_seed(2)
        config = tiny_config(bidirectional=bidirectional)
        model = MambaTagger(config).eval()
        with torch.no_grad():
            before = model(**tagger_inputs([sentence], config))[0]
            after = model(**tagger_inputs([changed], config))[0]
        earlier_changed = (after[:6] - before[:6]).abs().max() > 1e-4
        assert bool(earlier_changed) == bidirectional
        assert (after[6] - before[6]).abs().max() > 1e-4


TRAIN_SENTENCES = [
    ("the patient had hepatitis", "O O O B"),
    ("patients with chronic arthritis were treated", "O O B I O O"),
    ("a history of melanoma", "O O O B"),
    ("lung carcinoma was treated with surgery", "B I O O O O"),
    ("no signs of dermatitis", "O O O B"),
    ("the biopsy showed lymphoma", "O O O B"),
    ("acute nephritis developed after surgery", "B I O O O"),
    ("patients with glioma improved", "O O B O"),
    ("skin melanoma and colitis", "B I O B"),
    ("the patient was treated for myeloma", "O O O O O B"),
    ("severe colitis improved after surgery", "O B O O O"),
    ("a patient with sarcoma of the liver", "O O O B O O O"),
    ("chronic hepatitis and liver carcinoma", "B I O B I"),
    ("the patients developed arthritis", "O O O B"),
    ("history of acute dermatitis", "O O B I"),
    ("no history of lymphoma or glioma", "O O O B O B"),
    ("the biopsy showed carcinoma in the lung", "O O O B O O O"),
    ("patients were treated for nephritis", "O O O O B"),
    ("liver sarcoma was treated", "B I O O"),
    ("the patient improved", "O O O"),
]


def test_tagger_overfits_a_toy_disease_corpus():
    from mambaner_cli.model.models.tagger import MambaTagger

    started = time.perf_counter()
    torch.manual_seed(0)
    config = tiny_config(hidden_size=32, num_layers=1, dropout=0.0, word_vocab_size=len(VOCAB_WORDS) + 2)
    model = MambaTagger(config)
    names = {"O": "O", "B": "B-Disease", "I": "I-Disease"}
    sentences = [text.split() for text, _ in TRAIN_SENTENCES]
    gold = [[config.labels.index(names[t]) for t in tags.split()] for _, tags in TRAIN_SENTENCES]
    assert all(len(s) == len(g) for s, g in zip(sentences, gold))
    batch = tagger_inputs(sentences, config)
    tags = torch.zeros_like(batch["word_ids"])
    for i, row in enumerate(gold):
        tags[i, : len(row)] = torch.tensor(row)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.02)
    for _ in range(40):  # 40 full-batch steps: the 20 sentences seen 40 times
        model.train()
        loss = model.loss(**batch, tags=tags)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    predicted, _ = model.decode(**batch)

    def spans(rows):
        return {(i, j, k) for i, row in enumerate(rows) for j, k in _entity_spans(row)}

    flat_gold = [t for row in gold for t in row]
    flat_pred = [t for row in predicted for t in row]
    accuracy = sum(a == b for a, b in zip(flat_gold, flat_pred)) / len(flat_gold)
    true, found = spans(gold), spans(predicted)
    f1 = 2 * len(true & found) / (len(true) + len(found))
    assert accuracy >= 0.9 and f1 >= 0.9, (accuracy, f1)
    assert time.perf_counter() - started < 20


def _entity_spans(tag_ids: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each B-Disease I-Disease* run (tag ids of tiny_config's labels)."""
    spans, start = [], None
    for i, tag in enumerate([*tag_ids, 0]):
        if start is not None and tag != 2:
            spans.append((start, i))
            start = None
        if tag == 1:
            start = i
    return spans
