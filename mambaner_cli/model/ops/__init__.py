"""Kernels: the selective scan (a chunked CPU scan with its own backward, a sequential reference, mamba-ssm on
CUDA) and the causal depthwise convolution. Plain functions on tensors, no parameters."""
