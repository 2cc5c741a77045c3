"""Layers with parameters: the Mamba block and stack, the token-feature embeddings, the CRF."""
