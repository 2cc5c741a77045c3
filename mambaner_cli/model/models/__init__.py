"""Whole networks: the scratch tagger (features -> two Mamba stacks -> CRF) and the pretrained-Mamba token
classifier of the finetune recipe."""
