"""Builds emotion models and their feature extractors: around a pretrained encoder (Hub id or folder) or,
where no pretrained weights are available, around an encoder of the same family trained from scratch."""

import json
import os
import shutil
from pathlib import Path

from transformers import AutoFeatureExtractor

import modeling_ser
from feature_extraction_ser import emotion_feature_extractor
from ser.training import convert_whisper
from ser.core.audio import SAMPLING_RATE



def feature_extractor_for(family: str, **overrides):
    """The family's standard front end: raw normalised samples, 80-bin log-mels stacked in pairs (w2v-BERT), Whisper's
    log-mels at the clip's own length (not padded to 30 s), or raw samples at their own level (logmel-cnn computes
    and normalises its log-mels itself); each prepares clips once training sets its `speech_preparation`."""
    cls = modeling_ser.FEATURE_EXTRACTORS[emotion_class(family).family]
    if family == "whisper":
        return cls(sampling_rate=SAMPLING_RATE, **overrides)
    if family == "wav2vec2-bert":
        return cls(sampling_rate=SAMPLING_RATE, return_attention_mask=True, **overrides)
    options = {"feature_size": 1, "sampling_rate": SAMPLING_RATE, "padding_value": 0.0,
               "do_normalize": family != "logmel-cnn"}
    return cls(**options, return_attention_mask=True, **overrides)


def emotion_class(family: str):
    if family not in modeling_ser.EMOTION_CLASSES:
        raise ValueError(f"unknown encoder family {family!r}; known: {sorted(modeling_ser.EMOTION_CLASSES)}")
    return modeling_ser.EMOTION_CLASSES[family]


def scratch_model(spec: dict, labels: list[str], **head_options):
    """An emotion model whose encoder starts from random weights. `spec` = {"family", "encoder": config fields,
    "feature_extractor": optional overrides} as in `configs/encoders/*.json`."""
    cls = emotion_class(spec["family"])
    config = cls.config_class(**{**spec["encoder"], **head_options}, **modeling_ser.label_maps(labels))  # head options win
    overrides = spec.get("feature_extractor", {})
    if spec["family"] == "whisper":
        overrides = {"feature_size": config.num_mel_bins, **overrides}  # the extractor makes the encoder's mel bins
    return cls(config), feature_extractor_for(spec["family"], **overrides)


def pretrained_model(name_or_path: str, labels: list[str], **head_options):
    """An emotion model around a pretrained encoder; the same `from_pretrained` path for Hub ids and folders. A
    CTranslate2 Whisper folder (faster-whisper's format) is converted once into a cached transformers copy."""
    name_or_path = checkpoint_folder(name_or_path)
    model = modeling_ser.from_backbone(name_or_path, labels, **head_options)
    # ours, with the checkpoint's settings (a Whisper one's pads every clip to 30 s; ours does not)
    return model, emotion_feature_extractor(AutoFeatureExtractor.from_pretrained(name_or_path))


def checkpoint_folder(name_or_path: str) -> str:
    """A transformers checkpoint for `name_or_path`: itself, or the converted copy of a CTranslate2 Whisper folder,
    cached under SER_CACHE (default ~/.cache/ser) by the SHA-256 of its model.bin."""
    if not convert_whisper.is_ctranslate2_model(name_or_path):
        return name_or_path
    digest = convert_whisper.file_sha256(Path(name_or_path) / "model.bin")
    cached = Path(os.environ.get("SER_CACHE", Path.home() / ".cache" / "ser")) / f"whisper-ct2-{digest[:16]}"
    if not (cached / "model.safetensors").is_file():
        partial = cached.with_name(cached.name + f".partial-{os.getpid()}")  # a killed conversion never looks done
        convert_whisper.convert(name_or_path, partial, origin={"model_bin_sha256": digest})
        shutil.rmtree(cached, ignore_errors=True)
        partial.replace(cached)
    return str(cached)


def load_spec(path: str | Path) -> dict:
    """An encoder spec: the family and the config fields it sets differently from the config class's defaults."""
    spec = json.loads(Path(path).read_text())
    if "family" not in spec or "encoder" not in spec:
        raise ValueError(f"{path}: an encoder spec needs 'family' and 'encoder' keys")
    defaults = emotion_class(spec["family"]).config_class()
    unknown = sorted(key for key in spec["encoder"] if not hasattr(defaults, key))
    if unknown:  # a config class keeps unknown keys silently, so a misspelt field would change nothing
        raise ValueError(f"{path}: {unknown} are not fields of {type(defaults).__name__}")
    return spec
