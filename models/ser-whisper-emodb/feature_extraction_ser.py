"""What a model does to audio before its encoder: one preparation, then the family's features.

A clip that cannot be classified is refused with a typed reason (empty, too short, silent, no speech); the rest is
cut to its speech and brought to one level, as the model's training clips were, and then turned into the encoder's
features. The preparation is saved in the feature extractor's config (`speech_preparation`), so every path that
loads the model prepares audio with the same function: the stock `pipeline("audio-classification")`, the toolkit's
EmotionPredictor (and through it predict_ser.py and the demo), and training itself (`ser/training/experiment.py`).

This file is model code: it is saved beside every model with modeling_ser.py and speech_ser.py (the speech
detector). It needs torch, transformers and numpy; a model that trims with Silero VAD also needs the `silero-vad`
wheel and onnxruntime, and says so when they are missing.
"""

import enum
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature

try:  # beside this file in a saved model (a package), or the project's top-level module
    from .speech_ser import SAMPLING_RATE, Detector
except ImportError:
    from speech_ser import SAMPLING_RATE, Detector


class Reason(enum.Enum):
    """Why an input is refused: what callers branch on, and what the demo and the command line put into words."""

    UNREADABLE = "unreadable"
    EMPTY = "empty"
    NOT_FINITE = "not finite"
    TOO_SHORT = "too short"
    TOO_LONG = "too long"
    SILENT = "silent"
    NO_SPEECH = "no speech"


class AudioError(ValueError):
    """Audio that cannot be classified (a file that cannot be read, or a clip the model refuses): `reason` says why,
    `details` holds the numbers behind it (e.g. `seconds`, `minimum_seconds`); the message is for a developer."""

    def __init__(self, message: str, reason: Reason = Reason.UNREADABLE, **details):
        super().__init__(message)
        self.reason, self.details = reason, details


# Clips cut to their speech are scaled to this RMS level before the encoder hears them: Whisper's log-mel features
# move with the level, so without it a quieter or louder copy of a clip is heard differently.
LEVEL_DBFS = -23.0
MIN_SECONDS = 0.25  # the shortest clip any model classifies; a model's own minimum may be longer
SILENCE_DB = -70.0  # a clip whose peak is below this (dBFS) holds no speech; quieter than -70 is not a recording


def shortest_seconds(config, at_least: float = MIN_SECONDS) -> float:
    """The shortest clip a model takes: `at_least`, or longer where its encoder needs more (the log-mel CNN's blocks
    each halve the frames: `shortest_input_samples`)."""
    return max(at_least, (getattr(config, "shortest_input_samples", None) or 0) / SAMPLING_RATE)


def normalise_level(audio: np.ndarray, dbfs: float = LEVEL_DBFS) -> np.ndarray:
    """The clip scaled to an RMS of `dbfs` (float samples: peaks may exceed 1, nothing is clipped); silence as is."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return audio if rms == 0 else (audio * np.float32(10 ** (dbfs / 20) / rms)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Preparation:
    """What training did to every clip before its features, as the model's feature extractor records it."""

    trim_silence: bool = True  # cut to the speech the detector finds (pauses inside kept)
    speech_detector: dict | None = None  # speech_ser.Detector.to_dict(); None: the energy detector of older models
    level_normalisation: bool = True  # scaled to LEVEL_DBFS after trimming
    min_seconds: float = MIN_SECONDS  # shorter clips are refused; trimming never leaves less than this

    @property
    def detector(self) -> Detector:
        return Detector.from_dict(self.speech_detector)

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self, clip: np.ndarray, name: str = "audio") -> None:
        """Refuses, with its reason, a 16 kHz mono clip no model can classify."""
        if clip.size == 0:
            raise AudioError(f"{name}: audio is empty (0 samples)", Reason.EMPTY)
        if not np.isfinite(clip).all():
            raise AudioError(f"{name}: audio contains NaN or infinite samples", Reason.NOT_FINITE)
        seconds = clip.size / SAMPLING_RATE
        if seconds < self.min_seconds:
            raise AudioError(f"{name}: audio is too short ({seconds:.3f} s < {self.min_seconds} s)", Reason.TOO_SHORT,
                             seconds=seconds, minimum_seconds=self.min_seconds)
        peak = float(np.max(np.abs(clip)))
        if peak < 10.0 ** (SILENCE_DB / 20.0):  # amplitudes compared: digital silence meets no log of zero
            level = f"{20 * np.log10(peak):.1f} dBFS" if peak > 0 else "digital silence"
            raise AudioError(f"{name}: no speech: the audio is silent (peak {level}, below {SILENCE_DB:g} dBFS)",
                             Reason.SILENT)
        if not self.detector.segments(clip, SAMPLING_RATE):
            raise AudioError(f"{name}: no speech found: the audio is a steady sound or noise with nothing louder in it",
                             Reason.NO_SPEECH)

    def __call__(self, clip: np.ndarray, name: str = "audio", refuse: bool = True) -> np.ndarray:
        """The clip as training clips were: checked (unless not `refuse`: training's own clips, a recording's
        segments), cut to its speech (unless that leaves less than `min_seconds`: then the clip as it is), scaled
        to the level."""
        clip = np.ascontiguousarray(clip, dtype=np.float32)
        if refuse:
            self.check(clip, name)
        if self.trim_silence:
            trimmed = self.detector.trim(clip, SAMPLING_RATE)
            clip = trimmed if trimmed.size >= self.min_seconds * SAMPLING_RATE else clip
        return normalise_level(clip) if self.level_normalisation else clip


def is_batch(raw_speech) -> bool:
    """Several clips (a 2-D array, or a list of arrays or lists) rather than one, as transformers' extractors tell."""
    return getattr(raw_speech, "ndim", 1) > 1 or (
        isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and hasattr(raw_speech[0], "__len__"))


class PreparingFeatureExtractorMixin:
    """A feature extractor that prepares each clip first (`Preparation`), as its config's `speech_preparation`
    says; without one it is its stock parent, and is saved as that (`stock_class`), so a model that needs no code
    of ours still loads without `trust_remote_code`."""

    stock_class = None  # the parent to save as when nothing is prepared; None: this class computes other features

    def __init__(self, *args, speech_preparation: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.speech_preparation = speech_preparation

    @property
    def preparation(self) -> Preparation | None:
        return Preparation(**self.speech_preparation) if self.speech_preparation else None

    def prepare(self, clip: np.ndarray, name: str = "audio", refuse: bool = True) -> np.ndarray:
        """One 16 kHz mono clip as the model's training clips were (the clip as float32 when nothing is prepared)."""
        preparation = self.preparation
        if preparation is None:
            return np.ascontiguousarray(clip, dtype=np.float32)
        return preparation(clip, name, refuse)

    def _prepared(self, raw_speech, prepare_speech: bool, refuse: bool):
        """`raw_speech` (one clip or a batch) with each clip prepared, in the same form."""
        if not prepare_speech or self.preparation is None:
            return raw_speech
        if is_batch(raw_speech):
            return [self.prepare(np.asarray(clip), f"clip {i}", refuse) for i, clip in enumerate(raw_speech)]
        return self.prepare(np.asarray(raw_speech), "audio", refuse)

    def save_pretrained(self, save_directory, **kwargs):
        if self.speech_preparation is None and self.stock_class is not None:
            fields = {k: v for k, v in self.to_dict().items() if k not in ("auto_map", "feature_extractor_type",
                                                                           "speech_preparation")}
            return self.stock_class(**fields).save_pretrained(save_directory, **kwargs)
        return super().save_pretrained(save_directory, **kwargs)


class Wav2Vec2EmotionFeatureExtractor(PreparingFeatureExtractorMixin, Wav2Vec2FeatureExtractor):
    """Raw samples (wav2vec 2.0, HuBERT, WavLM, the log-mel CNN), each clip prepared first."""

    stock_class = Wav2Vec2FeatureExtractor

    def __call__(self, raw_speech, *args, prepare_speech: bool = True, refuse: bool = True, **kwargs) -> BatchFeature:
        """`prepare_speech=False`: the clips are prepared already (training); `refuse=False`: prepare without
        refusing (a recording's segments)."""
        return super().__call__(self._prepared(raw_speech, prepare_speech, refuse), *args, **kwargs)


class Wav2Vec2BertEmotionFeatureExtractor(PreparingFeatureExtractorMixin, SeamlessM4TFeatureExtractor):
    """80-bin log-mels stacked in pairs (w2v-BERT 2.0), each clip prepared first."""

    stock_class = SeamlessM4TFeatureExtractor

    def __call__(self, raw_speech, *args, prepare_speech: bool = True, refuse: bool = True, **kwargs) -> BatchFeature:
        return super().__call__(self._prepared(raw_speech, prepare_speech, refuse), *args, **kwargs)


class WhisperEmotionFeatureExtractor(PreparingFeatureExtractorMixin, WhisperFeatureExtractor):
    """Whisper's log-mels without the 30 s padding, exact under padding, each clip prepared first.

    The stock extractor pads every clip with zeros to 30 s (`padding="max_length"`) before its STFT, so a clip's
    last frames see the zeros instead of the reflection of its own end, and its mask counts one frame too many when
    a length is not a multiple of the hop. Here each clip's log-mels are computed alone, exactly as Whisper computes
    them for that clip, and then padded (by default to the longest clip of the call) with a mask of its real frames.
    """

    def __init__(self, *args, return_attention_mask: bool = True, **kwargs):
        super().__init__(*args, return_attention_mask=return_attention_mask, **kwargs)

    def __call__(self, raw_speech, sampling_rate=None, return_tensors=None, padding="longest", max_length=None,
                 return_attention_mask=None, truncation=False, prepare_speech: bool = True, refuse: bool = True,
                 **kwargs) -> BatchFeature:
        """`padding`: True or "longest" (default), or "max_length" (`max_length` samples, 30 s if not given).
        Nothing is truncated: the encoder refuses more frames than it has positions for, by name."""
        raw_speech = self._prepared(raw_speech, prepare_speech, refuse)
        clips = list(raw_speech) if is_batch(raw_speech) else [raw_speech]
        features = [super(WhisperEmotionFeatureExtractor, self).__call__(
            clip, sampling_rate=sampling_rate, padding="longest", truncation=False, return_attention_mask=False,
            return_tensors="pt", **kwargs)["input_features"][0] for clip in clips]  # each (F, T_i)
        lengths = torch.tensor([f.shape[-1] for f in features])
        if padding == "max_length":  # at least that many frames; a longer clip is kept whole
            frames = max((max_length or self.n_samples) // self.hop_length, int(lengths.max()))
        elif padding in (True, "longest") or len(set(lengths.tolist())) == 1:
            frames = int(lengths.max())
        else:
            raise ValueError(f"padding={padding!r}: clips of different lengths need padding=True or 'max_length'")
        batch = {"input_features": torch.stack([nn.functional.pad(f, (0, frames - f.shape[-1]), value=self.padding_value)
                                                for f in features])}
        if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
            batch["attention_mask"] = (torch.arange(frames) < lengths.unsqueeze(1)).to(torch.int32)  # mel frames
        if return_tensors != "pt":
            batch = {name: value.numpy() for name, value in batch.items()}
        return BatchFeature(batch, tensor_type=return_tensors)


EMOTION_FEATURE_EXTRACTORS = {cls.stock_class: cls for cls in (Wav2Vec2EmotionFeatureExtractor,
                                                               Wav2Vec2BertEmotionFeatureExtractor)}


def emotion_feature_extractor(stock) -> PreparingFeatureExtractorMixin:
    """A pretrained encoder's stock feature extractor as ours (the same settings; nothing prepared yet)."""
    if isinstance(stock, PreparingFeatureExtractorMixin):
        return stock
    if isinstance(stock, WhisperFeatureExtractor):
        return WhisperEmotionFeatureExtractor(**{**_settings(stock), "return_attention_mask": True})
    cls = EMOTION_FEATURE_EXTRACTORS.get(type(stock))
    if cls is None:
        raise ValueError(f"{type(stock).__name__}: no emotion feature extractor for it; known: "
                         f"{sorted(c.__name__ for c in EMOTION_FEATURE_EXTRACTORS)}")
    return cls(**_settings(stock))


def _settings(extractor) -> dict:
    return {k: v for k, v in extractor.to_dict().items() if k not in ("feature_extractor_type", "auto_map",
                                                                     "processor_class", "mel_filters", "window")}


for _cls in (Wav2Vec2EmotionFeatureExtractor, Wav2Vec2BertEmotionFeatureExtractor, WhisperEmotionFeatureExtractor):
    _cls.register_for_auto_class("AutoFeatureExtractor")
