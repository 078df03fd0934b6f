"""CPU inference runtimes. "int8" quantises the weights of the linear layers to 8 bits and computes them with int8
kernels (dynamic quantisation: activations are quantised on the fly), which is where a transformer encoder spends
most of its time; convolutions and attention softmax stay in float32."""

import torch
from torch import nn

RUNTIMES = ("fp32", "int8")


def reads_weights_directly(name: str, model: nn.Module) -> bool:
    """WavLM's attention passes its q/k/v/out projections' weight and bias tensors to a fused kernel instead of
    calling the layers, which a quantised layer (whose weight is packed) cannot serve."""
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    return type(parent).__name__ == "WavLMAttention"


def prepare_model(model: nn.Module, runtime: str = "fp32", inplace: bool = False) -> nn.Module:
    """The model ready for CPU inference with the given runtime. For int8, a quantised copy unless `inplace`
    (which saves the copy's memory when the caller owns the model)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not one of {RUNTIMES}")
    model = model.eval()
    if runtime == "fp32":
        return model
    linear = {name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and not reads_weights_directly(name, model)}
    return torch.ao.quantization.quantize_dynamic(model, linear, dtype=torch.qint8, inplace=inplace)
