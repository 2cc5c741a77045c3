"""The light Mamba backbone computes transformers' MambaModel, loads its state dict, and spares its import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import MambaConfig, MambaModel

from mambaner_cli.model.config import TaggerConfig
from mambaner_cli.model.features import Vocabulary
from mambaner_cli.model.mixer import use_fast_scan
from mambaner_cli.model.models.tagger import MambaTagger
from mambaner_cli.model.modules.block import BackboneConfig, LightMambaModel
from mambaner_cli.runtime.tagger import Tagger
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_mamba_config(**overrides: object) -> MambaConfig:
    settings = {"vocab_size": 50, "hidden_size": 24, "num_hidden_layers": 2, "state_size": 4, "expand": 2,
                "conv_kernel": 4, "use_cache": False, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}
    settings.update(overrides)
    return MambaConfig(**settings)


def seeded_pair(config: MambaConfig, fast: bool = True) -> tuple[torch.nn.Module, LightMambaModel]:
    torch.manual_seed(0)
    reference = MambaModel(config)
    with torch.no_grad():  # make every parameter matter: D, biases and norms are 1/0 at initialisation
        for parameter in reference.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    if fast:
        use_fast_scan(reference)
    light = LightMambaModel(BackboneConfig.from_mamba_config(config))
    light.load_state_dict(reference.state_dict())  # strict: same names, same shapes
    return reference.eval(), light.eval()


def padded_batch(hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    embeds = torch.randn(3, 9, hidden, generator=generator)
    lengths = torch.tensor([9, 5, 1])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    return embeds, mask


def test_same_parameter_names_and_shapes():
    config = tiny_mamba_config()
    reference = MambaModel(config)
    light = LightMambaModel(BackboneConfig.from_mamba_config(config))
    assert {k: v.shape for k, v in light.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("fast", [True, False], ids=["FastMambaMixer", "transformers-sequential"])
def test_light_backbone_equals_transformers_with_padding(fast):
    config = tiny_mamba_config()
    reference, light = seeded_pair(config, fast=fast)
    embeds, mask = padded_batch(config.hidden_size)
    with torch.inference_mode():
        expected = reference(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        got = light(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    assert got.shape == expected.shape == (3, 9, config.hidden_size)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # padding does not leak into the real tokens: the short sentence alone gives the same states
    with torch.inference_mode():
        alone = light(inputs_embeds=embeds[1:2, :5], attention_mask=mask[1:2, :5]).last_hidden_state
    torch.testing.assert_close(alone[0], got[1, :5], atol=1e-5, rtol=1e-5)


def test_light_backbone_equals_transformers_from_input_ids_and_odd_shapes():
    config = tiny_mamba_config(hidden_size=20, expand=3, conv_kernel=3, time_step_rank=3, use_bias=True)
    reference, light = seeded_pair(config)
    ids = torch.randint(0, config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = reference(input_ids=ids, use_cache=False).last_hidden_state
        got = light(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [{}, {"hidden_size": 20, "expand": 3, "conv_kernel": 3, "use_bias": True}])
def test_light_backbone_inference_path_equals_its_autograd_path(overrides):
    """Without autograd the light backbone runs time-major (``Mixer.infer``): the same numbers, bit for bit,
    with padding, without padding, and without a mask."""
    config = tiny_mamba_config(**overrides)
    _, light = seeded_pair(config)
    embeds, mask = padded_batch(config.hidden_size)
    for attention_mask in (mask, torch.ones_like(mask), None):
        expected = light(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state  # autograd
        assert expected.requires_grad
        with torch.inference_mode():
            got = light(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        torch.testing.assert_close(got, expected.detach(), rtol=0, atol=0)


def test_light_backbone_refuses_what_it_does_not_do():
    light = LightMambaModel(BackboneConfig(hidden_size=8, num_layers=1))
    with pytest.raises(ValueError, match="cache"):
        light(inputs_embeds=torch.zeros(1, 2, 8), use_cache=True)
    with pytest.raises(ValueError, match="exactly one"):
        light()
    with pytest.raises(ValueError, match="silu"):
        BackboneConfig.from_mamba_config(tiny_mamba_config(hidden_act="gelu"))


def test_tagger_loads_either_backbone_with_identical_tags(tiny_model_dir):
    light = Tagger.load(tiny_model_dir, device="cpu")
    assert isinstance(light.model.forward_mamba, LightMambaModel)
    network = MambaTagger(light.model.config, backbone="transformers")
    network.load_state_dict(light.model.state_dict())
    heavy = Tagger(network, light.words, light.chars, "tiny", torch.device("cpu"), window=6)
    light.window = 6  # long sentences go through the window logic too
    sentences = [["the", "cancer", "disease", "of", "Wilson", "."], ["disease"],
                 ["A", "b", "c", "cancer", "the", "disease", "x", "y", "z", "(", "e", ")", "."]]
    expected, got = heavy.tag(sentences, batch_size=2), light.tag(sentences, batch_size=2)
    assert [tags for tags, _ in got] == [tags for tags, _ in expected]
    for (_, scores), (_, reference) in zip(got, expected):
        assert scores == pytest.approx(reference, abs=1e-5)


def test_tagging_does_not_import_transformers(tiny_model_dir):
    code = ("import sys; from mambaner_cli.runtime.tagger import Tagger; "
            f"t = Tagger.load({str(tiny_model_dir)!r}, device='cpu'); t.tag([['the', 'disease']]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_light_tagger_from_config_matches_vocabulary_shapes():
    # a MambaTagger built light has the parameters a transformers-built one saves
    config = TaggerConfig(labels=["O", "B-Disease", "I-Disease"], word_vocab_size=len(Vocabulary(["a"])),
                          char_vocab_size=5, word_dim=8, char_dim=4, char_channels=4, case_dim=2, hidden_size=16,
                          num_layers=1, state_size=4)
    heavy, light = MambaTagger(config), MambaTagger(config, backbone="light")
    assert {k: v.shape for k, v in light.state_dict().items()} == {k: v.shape for k, v in heavy.state_dict().items()}
    with pytest.raises(ValueError, match="backbone"):
        MambaTagger(config, backbone="mamba_ssm")
