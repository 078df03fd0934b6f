"""Turns clips into model inputs: audio decoding with a bad-file report, per-clip features computed once,
optional speaker normalisation, random-crop training sets and a padding collator."""

import random

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import WhisperFeatureExtractor

from ser.data import dataset
from ser.core.audio import SAMPLING_RATE
from ser.data.augment import mixup
from ser.data.corpora import Clip
from ser.core.statistics import RunningStatistics, frame_source


def load_clips_audio(clips: list[Clip], skip_bad: bool = False) -> tuple[list[Clip], list[np.ndarray]]:
    """Every clip's audio in memory (for small sets: benchmarks); unreadable files as `dataset.decoded` reports them."""
    decoded = list(dataset.decoded(dataset.from_clips(clips), skip_bad))
    return [clips[i] for i, _ in decoded], [samples for _, samples in decoded]


def extract_features(feature_extractor, audio: list[np.ndarray], per_utterance_norm: bool = True) -> list[np.ndarray]:
    """The model's input for each whole clip, unpadded, time first: samples (N,) or filterbank frames (T, D), also
    for Whisper, whose log-mels (D, T) are transposed here and back by the collator (`time_last`), so cropping,
    padding and speaker statistics handle every family alike. Without `per_utterance_norm`, filterbanks keep their
    level, for speaker normalisation to use instead."""
    name = feature_extractor.model_input_names[0]
    options = {} if per_utterance_norm else {"do_normalize_per_mel_bins": False}  # only filterbank extractors have it
    out = []
    for samples in tqdm(audio, desc="computing input features", unit="clip"):
        features = feature_extractor(samples, sampling_rate=SAMPLING_RATE, prepare_speech=False, return_tensors="np",
                                     **options)[name][0]
        out.append((features.T if time_last(feature_extractor) else features).astype(np.float32))
    return out


def time_last(feature_extractor) -> bool:
    """Whisper's extractors give (mel bins, frames); the others frames (or samples) first."""
    return isinstance(feature_extractor, WhisperFeatureExtractor)


def speaker_normalise(features: list[np.ndarray], speakers: list[str]) -> list[np.ndarray]:
    """Z-normalises each feature dimension with the statistics of that speaker's own clips (unlabelled audio, the
    test speaker's included, as a deployed system would after hearing a caller for a while)."""
    if features[0].ndim < 2:
        raise ValueError("speaker normalisation needs feature vectors per frame: use a filterbank encoder "
                         "(wav2vec2-bert) or --mode frozen (normalises the encoder's features)")
    out = list(features)
    for speaker in sorted(set(speakers)):
        indices = [i for i, s in enumerate(speakers) if s == speaker]
        frames = np.concatenate([features[i].reshape(len(features[i]), -1) for i in indices])
        mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-5
        for i in indices:
            shape = features[i].shape
            out[i] = ((features[i].reshape(shape[0], -1) - mean) / std).reshape(shape).astype(np.float32)
    return out


def take(values, indices: list[int]):
    """values[i] for each of `indices`: a view of cached features (read only when indexed), else a list."""
    return values.take(indices) if hasattr(values, "take") else [values[i] for i in indices]


class CropDataset(torch.utils.data.Dataset):
    """Clips as (features, label[, normalisation_stats]). For training, each draw of a clip is a fresh random crop:
    `augment` (raw samples: crop and perturb, see ser.data.augment) or a plain `crop_seconds` crop on the first axis,
    samples or frames, of the clip or (given `variants`, per clip a list of its perturbed copies' features) of one
    of its copies. Without either, the whole clip (evaluation)."""

    def __init__(self, features, labels, durations, crop_seconds: float | None = None, augment=None, stats=None,
                 variants=None):
        self.features, self.labels, self.durations, self.crop_seconds = features, labels, durations, crop_seconds
        self.augment, self.stats, self.variants = augment, stats, variants

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        features = self.features[i]
        if self.variants is not None:
            features = random.choice([features, *self.variants[i]])  # a copy has the clip's length
        if self.augment is not None:
            features = self.augment(features)
        elif self.crop_seconds:
            units = max(1, int(len(features) * self.crop_seconds / self.durations[i]))  # units per second differ
            if len(features) > units:
                start = random.randrange(len(features) - units + 1)
                features = features[start : start + units]
        item = {"features": features, "labels": self.labels[i]}
        if self.stats is not None:
            item["normalisation_stats"] = self.stats[i]
        return item


class PadCollator:
    """Pads a batch on the time axis and builds the attention mask the model turns into a frame mask. With
    `mixup_alpha` (training), blends the padded batch with itself (ser.data.augment.mixup)."""

    def __init__(self, input_name: str, padding_value: float = 0.0, mixup_alpha: float = 0.0, num_labels: int = 0,
                 time_last: bool = False):
        self.input_name, self.padding_value = input_name, padding_value
        self.mixup_alpha, self.num_labels, self.time_last = mixup_alpha, num_labels, time_last

    def __call__(self, batch: list[dict]) -> dict:
        longest = max(len(item["features"]) for item in batch)
        first = batch[0]["features"]
        padded = np.full((len(batch), longest, *first.shape[1:]), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for row, item in enumerate(batch):
            padded[row, : len(item["features"])] = item["features"]
            mask[row, : len(item["features"])] = 1
        inputs = torch.from_numpy(padded)
        out = {
            self.input_name: inputs.transpose(1, 2) if self.time_last else inputs,  # (B, D, T) for Whisper
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([item["labels"] for item in batch]),
        }
        if "normalisation_stats" in batch[0]:
            out["normalisation_stats"] = torch.stack([torch.as_tensor(item["normalisation_stats"]) for item in batch])
        return mixup(out, self.mixup_alpha, self.num_labels) if self.mixup_alpha > 0 else out


def speaker_statistics(model, feature_extractor, audio: list[np.ndarray], speakers: list[str],
                       features: list[np.ndarray] | None = None) -> list[torch.Tensor]:
    """For a speaker-normalised model: each clip's speaker's statistics, over all that speaker's clips (unlabelled
    audio, the test speaker's included), exactly as the predictor computes them (ser.core.statistics). `features`: a
    frozen encoder's cached frames of the clips, which are what the statistics are taken over."""
    source = frame_source(model, feature_extractor)
    by_speaker = {}
    for speaker in tqdm(sorted(set(speakers)), desc="speaker statistics", unit="speaker"):
        stats = RunningStatistics(source)
        for i, owner in enumerate(speakers):
            if owner != speaker:
                continue
            if features is not None and not model.normalises_inputs:
                stats.add_frames(torch.from_numpy(features[i]))
            else:
                stats.add(audio[i])
        by_speaker[speaker] = stats.result()
    return [by_speaker[s] for s in speakers]


def balance_groups(indices: list[int], groups: list, seed: int = 0) -> list[int]:
    """`indices` with each group's (e.g. corpus's) share repeated up to the largest group's count, so every group
    gives as many training draws per epoch; the extra copies are drawn at random (with `seed`), whole repeats first."""
    by_group: dict = {}
    for i in indices:
        by_group.setdefault(groups[i], []).append(i)
    largest = max(len(members) for members in by_group.values())
    rng = np.random.default_rng(seed)
    out = []
    for members in by_group.values():
        repeats, rest = divmod(largest, len(members))
        out += members * repeats + [members[j] for j in rng.choice(len(members), rest, replace=False)]
    return out


def class_weights(labels: list[int], num_labels: int) -> torch.Tensor:
    """Inverse class frequency (mean 1 over the classes present), for a class-balanced loss."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)
