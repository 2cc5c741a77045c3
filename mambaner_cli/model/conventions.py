"""Annotation conventions: one network, trained on several corpora, tags by the rules of the one chosen.

NCBI-disease and BC5CDR mark disease mentions by different guidelines. A network with
``TaggerConfig.conventions`` learns, per corpus, a vector added to its token features and a correction
added to its emission layer (``TokenFeatures.convention_vectors``, ``MambaTagger.convention_emissions``
and ``convention_emission_bias``). Both are additive and constant for a given convention, so choosing
one folds it into the plain network's own biases and weights: tagging then runs the same network, at
the same speed, as a model without conventions.
"""

from __future__ import annotations

import torch

from mambaner_cli.model.config import TaggerConfig

# The convention trained on every corpus at once, each marking only its types (`train scratch
# --shared-convention`): what the corpora agree on, for text of no known corpus. First in the list, so
# it is the model's default.
SHARED_CONVENTION = "shared"

CONVENTION_KEYS = ("features.convention_vectors.weight", "convention_emissions", "convention_emission_bias")


def fold_convention(config: TaggerConfig, state: dict[str, torch.Tensor], name: str
                    ) -> tuple[TaggerConfig, dict[str, torch.Tensor]]:
    """The config and weights of a plain network (no conventions) that computes exactly what the network
    of ``config`` and ``state`` computes for sentences of convention ``name``."""
    if name not in config.conventions:
        raise ValueError(f"convention {name!r} is not one of this network's ({', '.join(config.conventions) or 'none'})")
    index = config.conventions.index(name)
    folded = dict(state)
    vectors, weights, biases = (folded.pop(key) for key in CONVENTION_KEYS)
    folded["features.projection.bias"] = state["features.projection.bias"] + vectors[index]
    folded["emissions.weight"] = state["emissions.weight"] + weights[index]
    folded["emissions.bias"] = state["emissions.bias"] + biases[index]
    return TaggerConfig.from_dict({**config.to_dict(), "conventions": []}), folded
