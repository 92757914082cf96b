"""Karpathy's microgpt rebuilt step by step, from scalars to tensors to GPUs."""

__version__ = "0.1.0"
