"""mambaner: fast disease-mention tagging of PubMed with a Mamba (selective state-space) tagger."""

__version__ = "0.1.0"
