"""Tests for mambaner_cli.model.modules.block: our Mamba block against transformers' MambaModel.

The reference is transformers' ``MambaModel`` on the CPU (its own sequential scan), with the weights copied
into our :class:`MambaStack`: same parameter names and shapes, same initial weights from a seed, same
outputs and gradients (``forward``), the same numbers again without autograd (``infer``). Then what is
built on the block: LoRA adapters, a Hugging Face checkpoint read into it, the scratch tagger loaded
from a model directory (without importing transformers). The ``gpu`` tests compare mamba-ssm's CUDA
kernels with the CPU paths; they run only where CUDA and mamba-ssm are both available.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import MambaConfig, MambaForCausalLM, MambaModel

from mambaner_cli.model.modules.block import BackboneConfig, MambaStack, Mixer
from mambaner_cli.model.ops.numba_infer import KERNELS_ENV, numba_available
from mambaner_cli.model.ops.scan import mamba_ssm_available, selective_scan, selective_scan_ref

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread on a shared CPU

REPO = Path(__file__).resolve().parent.parent
PROJECTIONS = ("in_proj", "x_proj", "dt_proj", "out_proj")
# Shapes off the defaults: odd widths, expand 3, kernel 3, an explicit Δ rank, biases on the projections
# and none on the convolution.
ODD = {"hidden_size": 20, "expand": 3, "conv_kernel": 3, "time_step_rank": 3, "use_bias": True}
SHAPES = {
    "default": {},
    "odd": ODD,
    "no-conv-bias": {"use_conv_bias": False, "num_hidden_layers": 1, "state_size": 8},
    "constant-dt-rescaled": {"time_step_init_scheme": "constant", "rescale_prenorm_residual": True,
                             "num_hidden_layers": 3, "time_step_scale": 0.5, "initializer_range": 0.02},
}


def mamba_config(**overrides: object) -> MambaConfig:
    settings = {"vocab_size": 50, "hidden_size": 24, "num_hidden_layers": 2, "state_size": 4, "expand": 2,
                "conv_kernel": 4, "use_cache": False, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}
    settings.update(overrides)
    return MambaConfig(**settings)


def seeded_pair(config: MambaConfig, seed: int = 0) -> tuple[MambaModel, MambaStack]:
    """transformers' model with seeded weights, and our stack with the same weights (in eval mode)."""
    torch.manual_seed(seed)
    reference = MambaModel(config)
    with torch.no_grad():  # make every parameter matter: D, biases and norms are 1/0 at initialisation
        for parameter in reference.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    stack = MambaStack(BackboneConfig.from_mamba_config(config))
    stack.load_state_dict(reference.state_dict())  # strict: same names, same shapes
    return reference.eval(), stack.eval()


def padded_batch(hidden: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three sentences of 9, 5 and 1 tokens, right-padded to 9: embeddings [3, 9, hidden], mask [3, 9]."""
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(3, 9, hidden, generator=generator)
    lengths = torch.tensor([9, 5, 1])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    return embeds, mask


def assert_gradients_close(got: list[torch.Tensor], expected: list[torch.Tensor], names: list[str],
                           tolerance: float = 1e-5) -> None:
    """Each gradient within ``tolerance`` of the reference, relative to the reference's largest entry."""
    assert len(got) == len(expected) == len(names)
    for name, g, e in zip(names, got, expected):
        assert g.shape == e.shape, name
        assert torch.isfinite(g).all(), name
        assert (g.cpu() - e.cpu()).abs().max() <= tolerance * max(1.0, float(e.abs().max())), name


# ------------------------------------------------------------------------------- shape and initialisation

@pytest.mark.parametrize("shape", ["default", "odd"])
def test_same_parameter_names_and_shapes_as_transformers(shape):
    config = mamba_config(**SHAPES[shape])
    reference = MambaModel(config)
    stack = MambaStack(BackboneConfig.from_mamba_config(config))
    assert [(k, v.shape) for k, v in stack.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]  # the same order too
    assert [k for k, _ in stack.named_parameters()] == [k for k, _ in reference.named_parameters()]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("seed", [0, 7])
def test_a_seed_gives_transformers_initial_weights_and_leaves_the_same_rng_state(shape, seed):
    config = mamba_config(**SHAPES[shape])
    torch.manual_seed(seed)
    reference = MambaModel(config)
    after_reference = torch.get_rng_state()
    torch.manual_seed(seed)
    stack = MambaStack(BackboneConfig.from_mamba_config(config))
    after_stack = torch.get_rng_state()
    expected, got = reference.state_dict(), stack.state_dict()
    assert list(got) == list(expected)
    for name in expected:
        assert got[name].dtype == expected[name].dtype, name
        assert torch.equal(got[name], expected[name]), name
    assert torch.equal(after_stack, after_reference)  # what is drawn next (a tagger's head) is the same too


def test_backbone_config_defaults_are_transformers_defaults():
    hf = MambaConfig(vocab_size=50, hidden_size=40, num_hidden_layers=3)
    config = BackboneConfig(hidden_size=40, num_layers=3, vocab_size=50)
    assert dataclasses.replace(BackboneConfig.from_mamba_config(hf), time_step_rank=0) == config
    assert config.rank == int(hf.time_step_rank) == 3  # "auto": ceil(40 / 16)
    assert config.intermediate_size == hf.intermediate_size == 80
    assert BackboneConfig.from_mamba_config(mamba_config(**ODD)).rank == 3


def test_from_mamba_config_refuses_other_activations():
    with pytest.raises(ValueError, match="silu"):
        BackboneConfig.from_mamba_config(mamba_config(hidden_act="gelu"))


# ---------------------------------------------------------------------------- the same as transformers

@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padded"])
def test_forward_equals_transformers_outputs_and_gradients(masked):
    config = mamba_config()
    reference, stack = seeded_pair(config)
    embeds, mask = padded_batch(config.hidden_size)
    mask = mask if masked else None
    with torch.no_grad():
        expected = reference(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        got = stack(embeds, mask)
    assert got.shape == expected.shape == (3, 9, config.hidden_size)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # training mode, gradients of a random projection of the output: every parameter and the inputs
    reference.train()
    stack.train()
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(2))
    leaves = {"reference": embeds.clone().requires_grad_(), "stack": embeds.clone().requires_grad_()}
    expected = reference(inputs_embeds=leaves["reference"], attention_mask=mask, use_cache=False).last_hidden_state
    got = stack(leaves["stack"], mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    names = [name for name, _ in reference.named_parameters() if name != "embeddings.weight"]  # unread
    expected_grads = torch.autograd.grad((expected * weights).sum(), [leaves["reference"],
                                                                       *map(reference.get_parameter, names)])
    got_grads = torch.autograd.grad((got * weights).sum(), [leaves["stack"], *map(stack.get_parameter, names)])
    assert_gradients_close(got_grads, expected_grads, ["inputs_embeds", *names])


def test_padding_does_not_leak_into_the_tokens():
    """A short sentence alone gives the states it has in a padded batch, on both paths."""
    config = mamba_config()
    _, stack = seeded_pair(config)
    embeds, mask = padded_batch(config.hidden_size)
    with torch.no_grad():
        batched = stack(embeds, mask)
        alone = stack(embeds[1:2, :5], mask[1:2, :5])
    torch.testing.assert_close(alone[0], batched[1, :5], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stack.infer(embeds[1:2, :5], mask[1:2, :5])[0], stack.infer(embeds, mask)[1, :5],
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stack.infer(embeds[2:3, :1])[0], batched[2, :1], rtol=1e-5, atol=1e-5)


def test_forward_equals_transformers_from_input_ids_and_odd_shapes():
    config = mamba_config(**ODD)
    reference, stack = seeded_pair(config)
    ids = torch.randint(0, config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        for attention_mask in (None, mask):
            expected = reference(input_ids=ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            torch.testing.assert_close(stack(stack.embed(ids), attention_mask), expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(stack.infer(stack.embed(ids), attention_mask), expected,
                                       rtol=1e-5, atol=1e-5)
    # gradients reach the embedding table as in transformers
    reference.train()
    stack.train()
    expected = reference(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    got = stack(stack.embed(ids), mask)
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(3))
    names = [name for name, _ in reference.named_parameters()]
    assert_gradients_close(torch.autograd.grad((got * weights).sum(), list(stack.parameters())),
                           torch.autograd.grad((expected * weights).sum(), list(reference.parameters())), names)


@pytest.mark.parametrize("length", [1, 2, 3, 40])
def test_short_and_long_sequences_equal_transformers(length):
    """Shorter than the convolution kernel, and longer than one scan chunk of a small batch."""
    config = mamba_config(num_hidden_layers=1)
    reference, stack = seeded_pair(config, seed=3)
    embeds = torch.randn(2, length, config.hidden_size, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        expected = reference(inputs_embeds=embeds, use_cache=False).last_hidden_state
        torch.testing.assert_close(stack(embeds), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stack.infer(embeds), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ infer and forward

@pytest.fixture(params=["torch", "numba"])
def scan_backend(request, monkeypatch) -> str:
    """``infer``'s kernels: PyTorch's (the default: forward's operations, bit for bit) or numba's
    (``MAMBANER_KERNELS=numba``: within float32 rounding)."""
    if request.param == "torch":
        monkeypatch.delenv(KERNELS_ENV, raising=False)  # the default
    else:
        if not numba_available():
            pytest.skip("numba is not installed")
        monkeypatch.setenv(KERNELS_ENV, "numba")
    return request.param


def assert_infer_matches(got: torch.Tensor, expected: torch.Tensor, backend: str) -> None:
    if backend == "torch":
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", ["default", "odd"])
def test_infer_equals_forward(shape, scan_backend):
    """``infer`` runs forward's operations time-major without autograd: the same numbers (numba's scan:
    within float32 rounding), with padding, with an all-ones mask, and without a mask."""
    config = mamba_config(**SHAPES[shape])
    _, stack = seeded_pair(config)
    embeds, mask = padded_batch(config.hidden_size)
    for attention_mask in (mask, torch.ones_like(mask), None):
        expected = stack(embeds, attention_mask)  # autograd on
        assert expected.requires_grad
        got = stack.infer(embeds, attention_mask)
        assert not got.requires_grad and got.shape == expected.shape
        assert_infer_matches(got, expected.detach(), scan_backend)
        with torch.inference_mode():
            assert torch.equal(stack.infer(embeds, attention_mask), got)


def test_mixer_infer_is_forward_time_major(scan_backend):
    config = BackboneConfig.from_mamba_config(mamba_config(**ODD))
    torch.manual_seed(4)
    mixer = Mixer(config)
    mixer.reset_parameters(config)
    hidden = torch.randn(3, 8, config.hidden_size, generator=torch.Generator().manual_seed(5))
    mask = torch.ones(3, 8)
    mask[2, 3:] = 0
    with torch.no_grad():
        for attention_mask in (None, mask):
            expected = mixer(hidden, attention_mask)  # b l h
            time_major = None if attention_mask is None else attention_mask.t().contiguous()
            got = mixer.infer(hidden.transpose(0, 1).contiguous(), time_major)  # l b h
            assert_infer_matches(got.transpose(0, 1), expected, scan_backend)


# ------------------------------------------------------------------------------------------------ LoRA

@pytest.mark.parametrize("target", PROJECTIONS)
def test_a_lora_adapter_on_each_projection_changes_the_output(target, monkeypatch):
    """transformers' mixer reads dt_proj.weight (and in its fused kernel out_proj.weight) directly,
    skipping an adapter there; ours calls every projection as a module, on both paths: the adapted stack
    equals the merged one, and differs from the bare one."""
    peft = pytest.importorskip("peft")
    monkeypatch.delenv(KERNELS_ENV, raising=False)  # infer's PyTorch kernels: forward's numbers, bit for bit
    _, stack = seeded_pair(mamba_config())
    with torch.no_grad():  # Δ near softplus(0) rather than 0.001..0.1, so that Δ's projection matters
        for layer in stack.layers:
            layer.mixer.dt_proj.bias.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(6))
    embeds, mask = padded_batch(24)
    with torch.no_grad():
        bare = stack(embeds, mask)
    wrapped = peft.get_peft_model(copy.deepcopy(stack), peft.LoraConfig(r=4, target_modules=[target]))
    adapted = wrapped.base_model.model.eval()
    assert all(type(getattr(m, target)) is not torch.nn.Linear for m in adapted.modules() if isinstance(m, Mixer))
    with torch.no_grad():
        assert torch.equal(adapted(embeds, mask), bare)  # LoRA's B starts at zero
        for name, parameter in adapted.named_parameters():
            if ".lora_B." in name:
                parameter.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(7))
        got = adapted(embeds, mask)
        assert torch.equal(adapted.infer(embeds, mask), got)
        assert (got - bare).abs().max() > 1e-4, f"the adapter on {target} has no effect"
        merged = wrapped.merge_and_unload()
        assert all(m._plain_linears() for m in merged.modules() if isinstance(m, Mixer))
        torch.testing.assert_close(got, merged(embeds, mask), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- Hugging Face checkpoints

@pytest.mark.parametrize("model_class", [MambaModel, MambaForCausalLM])
def test_load_backbone_reads_a_save_pretrained_checkpoint(tmp_path, model_class):
    from mambaner_cli.runtime.model_dir import load_backbone, save_backbone

    config = mamba_config(**ODD)
    torch.manual_seed(8)
    model = model_class(config).eval()
    model.save_pretrained(tmp_path / "hf")
    loaded = load_backbone(tmp_path / "hf")
    assert isinstance(loaded.stack, MambaStack) and loaded.stack.config == BackboneConfig.from_mamba_config(config)
    reference = model if model_class is MambaModel else model.backbone
    ids = torch.randint(0, config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(input_ids=ids, use_cache=False).last_hidden_state
        torch.testing.assert_close(loaded.stack.infer(loaded.stack.embed(ids)), expected, rtol=1e-5, atol=1e-5)
    save_backbone(loaded.stack, loaded.hf_config, tmp_path / "back")  # and written back for transformers
    again = MambaModel.from_pretrained(tmp_path / "back")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in reference.state_dict().items())


# ------------------------------------------------------------------------------- the tagger on the block

def test_tagger_stacks_have_the_parameters_of_transformers_models():
    """The scratch tagger's stacks are named and shaped as transformers' MambaModel of its shape: the
    shipped models' weights, saved from transformers stacks, load unchanged."""
    from mambaner_cli.model.models.tagger import MambaTagger
    from tests.helpers import tiny_config

    config = tiny_config(expand=3, conv_kernel=3)
    hf_config = MambaConfig(vocab_size=1, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
                            state_size=config.state_size, expand=config.expand, conv_kernel=config.conv_kernel)
    assert MambaTagger.backbone_config(config) == dataclasses.replace(
        BackboneConfig.from_mamba_config(hf_config), time_step_rank=0)
    reference = MambaModel(hf_config).state_dict()
    tagger = MambaTagger(config)
    for prefix in ("forward_mamba.", "backward_mamba."):
        state = {k[len(prefix):]: v for k, v in tagger.state_dict().items() if k.startswith(prefix)}
        assert [(k, v.shape) for k, v in state.items()] == [(k, v.shape) for k, v in reference.items()]

def test_tagger_loads_a_model_directory_onto_the_block(tiny_model_dir):
    from safetensors.torch import load_file

    from mambaner_cli.model.features import encode_batch
    from mambaner_cli.model.models.tagger import MambaTagger
    from mambaner_cli.model.modules.crf import is_valid_iob2
    from mambaner_cli.runtime.load import load_tagger

    tagger = load_tagger(tiny_model_dir, device="cpu")
    tagger.split_brackets = False  # the network's own paths here: the run-time rules are tested in test_runtime
    network = tagger.model
    assert isinstance(network, MambaTagger) and not network.training
    assert isinstance(network.forward_mamba, MambaStack)
    assert network.backward_mamba is None or isinstance(network.backward_mamba, MambaStack)
    saved = load_file(str(tiny_model_dir / "model.safetensors"))
    state = network.state_dict()
    assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    sentences = [["the", "cancer", "disease", "of", "Wilson", "."], ["disease"],
                 ["A", "b", "c", "cancer", "the", "disease", "x", "y", "z", "(", "e", ")", "."]]
    results = tagger.tag(sentences, batch_size=2)
    # tagging (decode: the infer paths) against the training paths' emissions decoded the same way
    batch = encode_batch(sentences, tagger.words, tagger.chars, network.config.max_word_len)
    with torch.no_grad():
        emissions = network(**batch)  # b l t
        torch.testing.assert_close(network(**batch, infer=True), emissions, rtol=1e-5, atol=1e-5)
        paths = network.crf.viterbi(emissions.float(), batch["mask"].bool())
        marginals = network.crf.marginals(emissions.float(), batch["mask"].bool())  # b l t
    for i, ((tags, scores), path) in enumerate(zip(results, paths)):
        assert tags == [tagger.labels[t] for t in path]
        assert scores == pytest.approx([float(marginals[i, j, t]) for j, t in enumerate(path)], abs=1e-5)
    tagger.window = 6  # long sentences go through the window logic too
    windowed = tagger.tag(sentences, batch_size=2)
    assert [len(tags) for tags, _ in windowed] == [len(s) for s in sentences]
    assert all(is_valid_iob2(tags) for tags, _ in windowed)
    # sentences within one window are tagged as before: the same tags; the confidences up to the last digits,
    # since another batch shape may take another matmul kernel (seen on a 16-core Xeon with torch 2.11)
    for (tags, scores), (before, before_scores) in zip(windowed[:2], results[:2]):
        assert tags == before and scores == pytest.approx(before_scores, abs=1e-6)


def test_tagging_does_not_import_transformers(tiny_model_dir):
    code = ("import sys; from mambaner_cli.runtime.load import load_tagger; "
            f"t = load_tagger({str(tiny_model_dir)!r}, device='cpu'); t.tag([['the', 'disease']]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'peft')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ mamba-ssm's CUDA kernels

gpu = pytest.mark.skipif(not (torch.cuda.is_available() and mamba_ssm_available()),
                         reason="needs CUDA and mamba-ssm")


@pytest.fixture
def exact_float32():
    """No TF32 in matmuls and convolutions, so that CUDA float32 is compared with CPU float32."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("b,d,l,n", [(2, 16, 64, 8), (3, 24, 7, 4), (1, 8, 300, 16)])
def test_mamba_ssm_scan_equals_the_reference(b, d, l, n, exact_float32):
    g = torch.Generator().manual_seed(b * 1000 + l)
    args = {"u": torch.randn(b, d, l, generator=g), "delta": 0.5 * torch.randn(b, d, l, generator=g),
            "A": -(torch.rand(d, n, generator=g) * 1.95 + 0.05), "B": torch.randn(b, n, l, generator=g),
            "C": torch.randn(b, n, l, generator=g), "D": torch.randn(d, generator=g),
            "z": torch.randn(b, d, l, generator=g), "delta_bias": 0.5 * torch.randn(d, generator=g)}
    names = list(args)
    weights = torch.randn(b, d, l, generator=g)

    def run(scan, device):
        leaves = {k: v.detach().clone().to(device).requires_grad_() for k, v in args.items()}
        out = scan(**leaves, delta_softplus=True)
        grads = torch.autograd.grad((out * weights.to(device)).sum(), [leaves[k] for k in names])
        return out.detach().cpu(), [grad.cpu() for grad in grads]

    expected, expected_grads = run(selective_scan_ref, "cpu")
    got, got_grads = run(selective_scan, "cuda")  # mamba-ssm's kernel on CUDA tensors
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
    assert_gradients_close(got_grads, expected_grads, names, tolerance=1e-3)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("path", ["fused-block", "fused-scan-padded", "fused-scan-eval"])
def test_mixer_on_cuda_equals_the_cpu_path(path, monkeypatch, exact_float32):
    """Training without padding takes mamba-ssm's fused block kernel (mamba_inner_fn); with padding, or
    in eval mode, the fused scan. Each against the CPU path: outputs and every gradient."""
    from mambaner_cli.model.modules import block

    calls = []
    fused = block._mamba_inner_fn
    if fused is not None:
        monkeypatch.setattr(block, "_mamba_inner_fn", lambda *a, **k: calls.append(1) or fused(*a, **k))
    _, stack = seeded_pair(mamba_config(hidden_size=32, state_size=8))
    embeds, mask = padded_batch(32)
    mask = mask if path == "fused-scan-padded" else None
    training = path != "fused-scan-eval"
    stack.train(training)
    on_cuda = copy.deepcopy(stack).cuda().train(training)
    weights = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(9))
    names = [name for name, _ in stack.named_parameters() if name != "embeddings.weight"]  # unread

    def run(model, device):
        leaf = embeds.to(device).requires_grad_()
        out = model(leaf, None if mask is None else mask.to(device))
        grads = torch.autograd.grad((out * weights.to(device)).sum(), [leaf, *map(model.get_parameter, names)])
        return out.detach().cpu(), grads

    expected, expected_grads = run(stack, "cpu")
    got, got_grads = run(on_cuda, "cuda")
    assert bool(calls) == (path == "fused-block")
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
    assert_gradients_close(got_grads, expected_grads, ["inputs", *names], tolerance=1e-3)
    with torch.no_grad():  # infer on CUDA is forward's kernels without a graph
        cuda_mask = None if mask is None else mask.cuda()
        torch.testing.assert_close(on_cuda.eval().infer(embeds.cuda(), cuda_mask).cpu(),
                                   stack.eval().infer(embeds, mask), rtol=1e-3, atol=1e-4)
