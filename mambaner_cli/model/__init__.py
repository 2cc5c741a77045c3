"""The networks, in layers (no file I/O here: runtime/model_dir.py reads and writes model directories).

    config.py, features.py, lexicon.py, conventions.py   what a network is built from and fed with
    ops/       scan.py (selective scan: chunked CPU path, sequential reference, mamba-ssm on CUDA), conv.py
    modules/   block.py (the Mamba block and stack), embeddings.py (token features), crf.py
    models/    tagger.py (the scratch tagger), pretrained.py (the finetune recipe's token classifier)

Each layer imports only the layers above it in this list.
"""
