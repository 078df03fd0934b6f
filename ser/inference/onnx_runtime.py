"""The "onnx" and "onnx-int8" runtimes: a model exported once to ONNX, run in ONNX Runtime.

- Export: `torch.onnx.export` (the torch.export-based exporter) of the model's logits, with dynamic batch and
  length and the attention mask as an input, so one graph serves padded batches of any shape. A speaker-normalised
  log-mel CNN gets a second graph, with the speaker statistics as an input, when they are first passed.
- Every export is checked against the torch model on a padded batch of other shapes than the example it was traced
  with; a model that fails to export, or whose graph does not reproduce it, is refused with a ValueError naming its
  class and the reason.
- Graph optimisation: the exported graph is saved after ONNX Runtime's basic (hardware-independent) optimisations,
  which fold constants such as the transposed linear weights; each session then applies every optimisation level
  (`ORT_ENABLE_ALL`: layer norm and GELU fusions, layouts for this CPU).
- "onnx-int8": `onnxruntime.quantization.quantize_dynamic` on that graph: int8 weights (7 bits used, so the integer
  sums are exact on every x86 CPU: `quantise`) for the matrix products with a constant weight (the linear layers),
  activations quantised on the fly; attention scores and small products (the head) stay float32.
- Cache: `<model folder>/onnx/<key>/` (or `<user cache>/onnx/<key>/` for a Hub id or a folder we cannot write to),
  where `key` is the sha256 of config.json and the weight files, so a changed model never reuses a stale graph and a
  second load exports nothing. The user cache is `$SER_CACHE`, else `$XDG_CACHE_HOME/ser`, else `~/.cache/ser`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ser.core.audio import SAMPLING_RATE
from ser.inference.runtime import ONNX_RUNTIMES, copy_sharing_tensors, freeze_weight_norm

WEIGHT_SUFFIXES = (".safetensors", ".bin")
# Part of every cache key: raise it when export or quantisation changes, so older cached graphs are not reused
GRAPH_VERSION = "4"  # 4: onnx-int8 with 7-bit weights; 3: the heads' Gemm products left in float32
EXPORT_TOLERANCE = 1e-3  # max |logit difference| between the graph and the torch model, relative to the largest logit


class OnnxModel:
    """Called like the torch model (`model(**inputs).logits`), computed by ONNX Runtime."""

    def __init__(self, model: nn.Module, feature_extractor, runtime: str = "onnx", folder: str | Path | None = None):
        """`folder`: where the model was loaded from (its files give the cache key); None hashes the weights in
        memory and caches under the user cache."""
        if runtime not in ONNX_RUNTIMES:
            raise ValueError(f"runtime={runtime!r} is not one of {ONNX_RUNTIMES}")
        # The torch model is kept only where a second graph (with speaker statistics) may still be exported; else
        # the session alone holds the weights, and the torch copy's memory is freed.
        self.model = model.eval() if getattr(model, "speaker_normalised", False) else None
        self.feature_extractor = feature_extractor
        self.quantise = runtime == "onnx-int8"
        self.input_name = model.main_input_name
        key = model_key(model, folder)
        self.cache = cache_folder(folder, key)
        self.sessions = {}
        self._session(with_stats=False, model=model)  # export (or find) now: a model that cannot be exported fails at load

    def __call__(self, attention_mask: torch.Tensor | None = None, normalisation_stats: torch.Tensor | None = None,
                 **inputs) -> SequenceClassifierOutput:
        values = inputs[self.input_name]
        if attention_mask is None:  # a feature extractor without masks: every sample is real
            attention_mask = torch.ones(values.shape[:2], dtype=torch.int64)
        feeds = {self.input_name: values.numpy(), "attention_mask": attention_mask.to(torch.int64).numpy()}
        if normalisation_stats is not None:
            feeds["normalisation_stats"] = normalisation_stats.float().numpy()
        logits = self._session(with_stats=normalisation_stats is not None).run(["logits"], feeds)[0]
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))

    def _session(self, with_stats: bool, model: nn.Module | None = None):
        import onnxruntime as ort

        if with_stats not in self.sessions:
            path = self._graph(with_stats, model or self.model)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = torch.get_num_threads()  # the same CPU budget as the torch runtimes
            options.inter_op_num_threads = 1
            self.sessions[with_stats] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return self.sessions[with_stats]

    def _graph(self, with_stats: bool, model: nn.Module) -> Path:
        """The cached graph file, exported (and quantised) first if it is not there yet."""
        name = "model-stats" if with_stats else "model"
        exported = self.cache / f"{name}.onnx"
        if not exported.exists():
            export(model, self.feature_extractor, exported, with_stats)
        if not self.quantise:
            return exported
        quantised = self.cache / f"{name}.int8.onnx"
        if not quantised.exists():
            quantise(exported, quantised)
        return quantised


# --- export ---------------------------------------------------------------------------------------------------------


class _Logits(nn.Module):
    """The graph's signature: (inputs, attention mask[, speaker statistics]) -> logits."""

    def __init__(self, model: nn.Module, input_name: str):
        super().__init__()
        self.model, self.input_name = model, input_name

    def forward(self, values, attention_mask, normalisation_stats=None):
        extra = {} if normalisation_stats is None else {"normalisation_stats": normalisation_stats}
        return self.model(**{self.input_name: values}, attention_mask=attention_mask, **extra).logits


def export(model: nn.Module, feature_extractor, path: Path, with_stats: bool = False) -> None:
    """Exports, checks and saves the graph at `path` (written under another name and moved there, so that a killed
    export or a second process never leaves a partial file under the final name)."""
    import onnxruntime as ort

    name = type(model).__name__
    if with_stats and not getattr(model, "speaker_normalised", False):
        raise ValueError(f"{name} is not speaker-normalised: it takes no speaker statistics")
    example = _example_inputs(model, feature_extractor, [SAMPLING_RATE, int(0.7 * SAMPLING_RATE)], with_stats)
    probe = _example_inputs(model, feature_extractor, [7200, 20800, 12000], with_stats)
    input_names = list(example)
    # AUTO: the exporter infers each axis's range and relations itself; a named Dim could not express the
    # minimum length of a 4-block log-mel CNN (the embedded default), and SEW-D's shapes were fixed with it
    batch, length = torch.export.Dim.AUTO, torch.export.Dim.AUTO
    values, mask = example[model.main_input_name], example["attention_mask"]
    # the length axis of the inputs is the mask's: samples, or frames of (B, T, F) or Whisper's (B, F, T) features
    time_axis = next(axis for axis in range(1, values.dim()) if values.shape[axis] == mask.shape[1])
    dynamic = {"values": {0: batch, time_axis: length}, "attention_mask": {0: batch, 1: length},
               "normalisation_stats": {0: batch}}
    exportable = _exportable_copy(model)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        raw, optimised = Path(tmp) / "raw.onnx", Path(tmp) / path.name
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                # optimize=False: onnxscript 0.7.2's optimiser drops the "+ 1e-10" of log(mel + 1e-10) in the log-mel
                # front end (a padded frame then becomes -inf); ONNX Runtime optimises the graph below instead.
                torch.onnx.export(_Logits(exportable, model.main_input_name).eval(), tuple(example.values()),
                                  str(raw), input_names=input_names, output_names=["logits"], dynamo=True,
                                  dynamic_shapes={k: dynamic[k] for k in ("values", "attention_mask",
                                                                           "normalisation_stats")[:len(example)]},
                                  optimize=False, external_data=True, verbose=False)
            _basic_optimisation(raw, optimised)
            session = ort.InferenceSession(str(optimised), providers=["CPUExecutionProvider"])
            got = session.run(["logits"], {k: v.numpy() for k, v in probe.items()})[0]
        except Exception as err:  # noqa: BLE001  (any exporter or runtime failure is a refusal, with its reason)
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{name} cannot be exported to ONNX: {reason[:500]}") from err
        with torch.no_grad():
            want = model(**probe).logits.numpy()
        error = float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))
        if not error < EXPORT_TOLERANCE:
            raise ValueError(f"{name} cannot be exported to ONNX: the exported graph does not reproduce the model on a "
                             f"padded batch of other shapes (relative logit difference {error:.2g})")
        _move_model(optimised, path)


def _exportable_copy(model: nn.Module) -> nn.Module:
    """A copy sharing the weights, with weight norm computed once (a quantiser needs constant weights) and eager
    attention (the exporter decomposes SDPA into a layout where w2v-BERT's reshape of the heads is an invalid view)."""
    copy = copy_sharing_tensors(model).eval()  # its config is a copy too: the caller's keeps its attention
    freeze_weight_norm(copy)
    if getattr(copy.config, "_attn_implementation", None) not in (None, "eager"):
        copy.set_attn_implementation("eager")
    return copy


def _example_inputs(model: nn.Module, feature_extractor, lengths: list[int], with_stats: bool) -> dict:
    """A padded batch of quiet noise with these lengths (samples), as the feature extractor prepares it."""
    rng = np.random.default_rng(0)
    clips = [0.05 * rng.standard_normal(n).astype(np.float32) for n in lengths]
    inputs = feature_extractor(clips, sampling_rate=SAMPLING_RATE, padding=True, return_attention_mask=True,
                               return_tensors="pt", prepare_speech=False)
    example = {model.main_input_name: inputs[model.main_input_name], "attention_mask": inputs["attention_mask"].long()}
    if with_stats:
        shape = (len(lengths), *model.statistics_shape)
        example["normalisation_stats"] = torch.stack([torch.full(shape, -5.0), torch.full(shape, 2.0)], dim=1)
    return example


def _basic_optimisation(source: Path, target: Path) -> None:
    """ONNX Runtime's basic graph optimisations (constant folding, redundant nodes), saved: standard ONNX operators
    only, so the file runs on any CPU, and its linear weights are plain constants for the quantiser."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    # weights beside the graph: protobuf files cannot exceed 2 GB
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", target.name + ".data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def quantise(source: Path, target: Path) -> None:
    """int8 dynamic quantisation of the matrix products with constant weights (MatMulConstBOnly: the attention score
    products of two activations stay float32, for accuracy), one scale per output channel: per-tensor scales agreed
    with fp32 on 94 of 100 Emo-DB clips on base, per-channel on 98. Convolutions stay float32: quantising the
    front end as well was 1.2x faster at 4 s but agreed on only 74 of 100 (benchmarks/README.md, section 3).

    Weights in 7 bits (reduce_range: -64..64), so that the answer does not depend on the CPU: ONNX Runtime's u8 x s8
    kernel for AVX2 without VNNI (vpmaddubsw) adds each pair of uint8 activation x int8 weight products in 16 bits,
    with saturation, and 2 x 255 x 127 does not fit where 2 x 255 x 64 does; with VNNI the sums are exact. On an
    AVX2-only AMD Zen 3, 8-bit weights agreed with fp32 on 90 % of 200 unseen clips (issue 26, Whisper tiny.en), and
    an exact emulation of that kernel on 100 held-out clips gives 94 %; 7-bit weights give 100 % with the kernel
    emulated or not (benchmarks/int8_kernels.py), so the integer sums are the same on every x86 CPU."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantise-") as tmp:
        partial = Path(tmp) / target.name
        quantize_dynamic(source, partial, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         per_channel=True, reduce_range=True, nodes_to_exclude=small_products(source),
                         extra_options={"MatMulConstBOnly": True}, use_external_data_format=True)
        _move_model(partial, target)


def small_products(path: Path, smallest: int = 256 * 256) -> list[str]:
    """Matrix products whose constant weight has fewer than `smallest` entries: a classifier, or the log-mel CNN's
    filter bank. Quantising them saves nothing, and the filter bank in int8 changed the embedded default model's
    top-1 on 8 of 12 clips. A Gemm (a linear layer on pooled (B, C) inputs: the heads) is named twice: dynamic
    quantisation first rewrites every Gemm as a MatMul named "<name>_MatMul" (onnxruntime.quantization.onnx_model,
    replace_gemm_with_matmul) and only then matches the names to exclude, so the Gemm's own name alone left the
    classifier quantised."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {init.name: int(np.prod(init.dims)) for init in graph.initializer}
    small = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")
             and any(sizes.get(name, smallest) < smallest for name in node.input[1:2])]
    return [name for node in small for name in ([node.name, f"{node.name}_MatMul"] if node.op_type == "Gemm"
                                                 else [node.name])]


def _move_model(source: Path, target: Path) -> None:
    """Moves a graph and its external data file(s); the graph last, as its presence marks a finished file."""
    for data in source.parent.glob(source.name + ".data*"):
        os.replace(data, target.parent / data.name)
    os.replace(source, target)


# --- the cache ------------------------------------------------------------------------------------------------------


def user_cache() -> Path:
    if os.environ.get("SER_CACHE"):
        return Path(os.environ["SER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ser"


def model_key(model: nn.Module, folder: str | Path | None) -> str:
    """sha256 of the saved config and weight files; without a folder, of the config and the tensors in memory."""
    digest = hashlib.sha256(GRAPH_VERSION.encode())
    files = model_files(folder) if folder is not None else []
    if files:
        for file in files:
            with open(file, "rb") as handle:
                digest.update(file.name.encode())
                hashlib.file_digest(handle, lambda: digest)  # adds to `digest`; read(), not mmap: nothing stays resident
    else:
        digest.update(model.config.to_json_string(use_diff=False).encode())
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            # reshape: a 0-d tensor (a batch norm's step count) cannot be viewed as bytes
            digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def model_files(folder: str | Path) -> list[Path]:
    """config.json and the weight files of a local folder or of a Hub id's cached snapshot."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        from transformers.utils import cached_file

        path = Path(cached_file(str(folder), "config.json")).parent
    weights = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return [path / "config.json", *weights] if weights else []


def cache_folder(folder: str | Path | None, key: str) -> Path:
    """`<folder>/onnx/<key>` when the model is a local folder we can write to, else `<user cache>/onnx/<key>`."""
    candidates = [user_cache() / "onnx" / key]
    if folder is not None and Path(folder).expanduser().is_dir():
        candidates.insert(0, Path(folder).expanduser() / "onnx" / key)
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=candidate):
                pass
            return candidate
        except OSError:
            continue
    raise ValueError(f"no writable folder for the exported ONNX graph: tried {', '.join(map(str, candidates))}")
