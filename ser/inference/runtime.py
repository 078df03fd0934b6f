"""CPU inference: runtimes, and exact rewrites of slow stock modules.

Runtimes: "int8" quantises the weights of the linear layers to 8 bits and computes them with int8
kernels (dynamic quantisation: activations are quantised on the fly), which is where a transformer encoder spends
most of its time; convolutions and attention softmax stay in float32. "bf16" runs the model under CPU autocast:
matrix products and convolutions in bfloat16 (AVX512-BF16 / AMX kernels), softmax, norms and reductions in float32
as autocast decides; the weights stay float32 (measured on wav2vec2-base at 4 s: autocast 1.9 s, a bfloat16 copy of
the weights 3.4 s). "onnx" and "onnx-int8" run an exported graph in ONNX Runtime (ser/inference/onnx_runtime.py).

The predictor's default (ser.core.defaults.RUNTIME) is "onnx": float32 like "fp32", so exact (to ~1e-6), and the fastest
exact runtime on every CPU measured. The int8 runtimes' and bf16's agreement with fp32 depends on the CPU's kernels
(docs/results.md, "Runtimes of the default"); bf16 without native bf16 instructions is emulated and slow, and says so."""

import copy
import itertools
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

TORCH_RUNTIMES = ("fp32", "int8", "bf16")
ONNX_RUNTIMES = ("onnx", "onnx-int8")  # ser/inference/onnx_runtime.py
RUNTIMES = TORCH_RUNTIMES + ONNX_RUNTIMES


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not one of {RUNTIMES}")


# x86 instructions that compute bfloat16 products natively (AVX512-BF16; AMX tiles). Without either, oneDNN emulates
# bf16 by converting to float32 and back around every product.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# The flags that decide the speed and the rounding of the reduced-precision runtimes (benchmarks record them).
RUNTIME_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")
BF16_SLOWDOWN = "6.6x slower than fp32 on an AVX2-only AMD Zen 3"  # the default model at 4 s (issue 26)


class SlowRuntimeWarning(UserWarning):
    """A runtime selected on a CPU that runs it slower than fp32."""


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The instruction-set flags of the first processor in /proc/cpuinfo (x86 "flags", Arm "Features"); empty where
    the file cannot be read (not Linux): the CPU is then unknown."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16(flags: frozenset[str] | set[str]) -> bool:
    """Whether an x86 CPU with these flags computes bfloat16 products natively."""
    return bool(NATIVE_BF16_FLAGS & set(flags))


def bf16_warning(flags: frozenset[str] | set[str]) -> str | None:
    """What selecting bf16 costs on a CPU with these flags: None where it has native bf16, or where the CPU is not
    x86 (every x86-64 has sse2) or unknown (no flags): there is no measurement to quote."""
    x86 = "sse2" in flags
    if not x86 or native_bf16(flags):
        return None
    return (f"runtime='bf16' on a CPU without native bf16 instructions (neither "
            f"{' nor '.join(sorted(NATIVE_BF16_FLAGS))} in its flags): bf16 is emulated there, {BF16_SLOWDOWN} (the "
            f"default model, 4 s clips). runtime='onnx', the default, is exact and faster.")


def warn_if_slow(runtime: str, flags: frozenset[str] | set[str] | None = None) -> None:
    """Warns (SlowRuntimeWarning) when `runtime` is bf16 and the CPU (this one's flags unless given) has no native
    bf16: a warning rather than a refusal, as bf16 still gives answers close to fp32 there."""
    if runtime != "bf16":
        return
    message = bf16_warning(cpu_flags() if flags is None else flags)
    if message:
        warnings.warn(message, SlowRuntimeWarning, stacklevel=3)


def reads_weights_directly(name: str, model: nn.Module) -> bool:
    """WavLM's attention passes its q/k/v/out projections' weight and bias tensors to a fused kernel instead of
    calling the layers, which a quantised layer (whose weight is packed) cannot serve."""
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    return type(parent).__name__ == "WavLMAttention"


def prepare_model(model: nn.Module, runtime: str = "fp32", inplace: bool = False) -> nn.Module:
    """The model ready for CPU inference with the given runtime. For int8, a quantised copy unless `inplace`
    (which saves the copy's memory when the caller owns the model)."""
    check_runtime(runtime)
    if runtime in ONNX_RUNTIMES:
        raise ValueError(f"runtime={runtime!r} runs in ONNX Runtime: use ser.inference.onnx_runtime.OnnxModel")
    model = model.eval()
    if runtime == "fp32":
        return model
    if runtime == "bf16":
        warn_if_slow(runtime)
        return Bf16Autocast(model)
    # one weight scale per output channel, as the onnx-int8 runtime (ser/onnx_runtime.quantise) for its accuracy
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    linear = {name: qconfig for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and not reads_weights_directly(name, model)}
    return torch.ao.quantization.quantize_dynamic(model, linear, dtype=torch.qint8, inplace=inplace)


_LAYER_NORM_FEATURE_ENCODERS = {"Wav2Vec2FeatureEncoder", "HubertFeatureEncoder", "WavLMFeatureEncoder"}
_LAYER_NORM_CONV_LAYERS = {"Wav2Vec2LayerNormConvLayer", "HubertLayerNormConvLayer", "WavLMLayerNormConvLayer"}


def fast_inference_model(model: nn.Module, runtime: str = "fp32", inplace: bool = False) -> nn.Module:
    """`prepare_model(model, runtime)` plus two rewrites for CPU inference, on a copy that shares the weights unless
    `inplace` (then the model itself is rewritten):

    - A layer-norm convolutional front end (wav2vec 2.0 / HuBERT / WavLM large-style and our tiny encoders) runs
      time-major: the stock layers transpose around every LayerNorm, which hands oneDNN channels-last inputs that
      it convolves about twice as slowly; computing each convolution as strided matrix products on (B, T, C)
      removes the transposes. On a wav2vec2-base shape with that front end the whole forward is ~1.3x faster
      (one thread, 2-4 s clips). Group-norm front ends (wav2vec2-base checkpoints) are already fast and kept.
    - A weight-normed convolution (the positional embedding) gets its weight computed once instead of per call.
    Results differ from the stock modules only by float rounding (~1e-6).

    The time-major front end is left out under bf16: its matrix products write into float32 buffers, which
    autocast does not reach, and the bf16 convolutions are fast already.
    """
    if not inplace:
        model = copy_sharing_tensors(model)
    if runtime != "bf16":
        base = getattr(model, "base_model", None)
        encoder = getattr(base, "feature_extractor", None)
        if encoder is not None and _time_major_supported(encoder):
            base.feature_extractor = TimeMajorFeatureEncoder(encoder)
    freeze_weight_norm(model)
    return prepare_model(model, runtime, inplace=True).eval()


class Bf16Autocast(nn.Module):
    """Runs the wrapped model under bfloat16 CPU autocast; its logits come back as float32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **inputs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = self.model(**inputs)
        output.logits = output.logits.float()
        return output


def copy_sharing_tensors(model: nn.Module) -> nn.Module:
    """A new module tree whose parameters and buffers are the very same tensors: cheap, and safe to rewire."""
    memo = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def _time_major_supported(encoder: nn.Module) -> bool:
    if type(encoder).__name__ not in _LAYER_NORM_FEATURE_ENCODERS:
        return False
    for layer in getattr(encoder, "conv_layers", ()):
        conv = getattr(layer, "conv", None)
        if (type(layer).__name__ not in _LAYER_NORM_CONV_LAYERS or not isinstance(conv, nn.Conv1d)
                or not isinstance(getattr(layer, "layer_norm", None), nn.LayerNorm)
                or conv.groups != 1 or conv.padding != (0,) or conv.dilation != (1,)
                or parametrize.is_parametrized(conv)):
            return False
    return len(getattr(encoder, "conv_layers", ())) > 0


class TimeMajorFeatureEncoder(nn.Module):
    """The layer-norm conv front end computed on (B, T, C): same weights, same result, no transposes.

    Each convolution is the sum over kernel taps of (frames at that tap, strided) @ (C_in, C_out): a strided view
    that BLAS reads without a copy. The first layer (one input channel) is one product over unfolded windows.
    Returns (B, C, T) like the stock encoder, as a transposed view of the time-major result, which the model
    transposes straight back.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.strides = []
        self.norms = nn.ModuleList()
        self.activations = nn.ModuleList()
        for i, layer in enumerate(encoder.conv_layers):
            conv = layer.conv
            taps = conv.weight.detach().permute(2, 1, 0).contiguous()  # (kernel, C_in, C_out)
            bias = None if conv.bias is None else conv.bias.detach()
            self.register_buffer(f"taps{i}", taps, persistent=False)
            self.register_buffer(f"bias{i}", bias, persistent=False)
            self.strides.append(conv.stride[0])
            self.norms.append(layer.layer_norm)
            self.activations.append(layer.activation)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden = input_values[:, :, None]  # (B, T, 1)
        for i, (stride, norm, activation) in enumerate(zip(self.strides, self.norms, self.activations)):
            hidden = _conv_time_major(hidden, getattr(self, f"taps{i}"), getattr(self, f"bias{i}"), stride)
            hidden = F.layer_norm(hidden, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
            hidden = _activate_in_place(activation, hidden)
        return hidden.transpose(1, 2)


def _activate_in_place(activation: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """GELU over the layer-norm output it replaces: the first layers' activations are tens of MB, and each fresh
    tensor that size costs page faults as well as memory traffic."""
    if getattr(activation, "act", None) is F.gelu:  # transformers' GELUActivation (exact erf GELU)
        return torch.ops.aten.gelu_(hidden)
    return activation(hidden)


def _conv_time_major(hidden: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor | None,
                     stride: int) -> torch.Tensor:
    """Conv1d (no padding) on (B, T, C_in) -> (B, T_out, C_out)."""
    kernel, channels_in, channels_out = taps.shape
    batch, frames, _ = hidden.shape
    frames_out = (frames - kernel) // stride + 1
    if frames_out <= 0:
        raise ValueError(f"input of {frames} frames is shorter than the convolution kernel ({kernel})")
    if channels_in == 1:
        out = hidden[:, :, 0].unfold(1, kernel, stride) @ taps[:, 0, :]
        return out if bias is None else out.add_(bias)
    span = (frames_out - 1) * stride + 1
    out = hidden.new_empty(batch, frames_out, channels_out)
    for b in range(batch):
        if bias is None:
            torch.mm(hidden[b, 0:span:stride], taps[0], out=out[b])
        else:
            torch.addmm(bias, hidden[b, 0:span:stride], taps[0], out=out[b])
        for tap in range(1, kernel):
            out[b].addmm_(hidden[b, tap:tap + span:stride], taps[tap])
    return out


def freeze_weight_norm(model: nn.Module) -> None:
    """Swaps weight-normed Conv1d layers for plain ones holding the weight computed once (on our copy only; ONNX
    export needs it too: a quantiser only quantises a convolution whose weight is a constant)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv1d) and parametrize.is_parametrized(child, "weight"):
                plain = nn.Conv1d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                  padding=child.padding, dilation=child.dilation, groups=child.groups, bias=False,
                                  padding_mode=child.padding_mode, device="meta")
                with torch.no_grad():
                    plain.weight = nn.Parameter(child.weight.detach().clone(), requires_grad=False)
                plain.bias = child.bias
                setattr(parent, name, plain)
