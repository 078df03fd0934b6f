"""CPU inference runtimes. "int8" quantises the weights of every linear layer to 8 bits and computes them with int8
kernels (dynamic quantisation: activations are quantised on the fly), which is where a transformer encoder spends
most of its time; convolutions and attention softmax stay in float32."""

import torch
from torch import nn

RUNTIMES = ("fp32", "int8")


def prepare_model(model: nn.Module, runtime: str = "fp32") -> nn.Module:
    """The model ready for CPU inference with the given runtime (a new module for int8; the original is untouched)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not one of {RUNTIMES}")
    model = model.eval()
    if runtime == "fp32":
        return model
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
