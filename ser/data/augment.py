"""Training-time augmentation of raw 16 kHz clips: fresh on every draw for models that read samples (logmel-cnn,
wav2vec 2.0, ...); as a few perturbed copies of each clip for a frozen encoder, whose features are cached (`copies`).

Each training draw of a clip is cut to `crop_seconds` (shorter clips repeated to fill it, so batches hold no
padding) and perturbed the way new voices, rooms and microphones differ from the training corpus: speed (pitch and
tempo together, as Kaldi's speed perturbation), additive noise at a random signal-to-noise ratio, the telephone band
(on a share of draws), and gain (with the clipping a recorder applies). Mixup (Zhang et al. 2018) blends pairs of clips and their labels within a batch.
SpecAugment lives in the model (`spec_augment` in modeling_ser.py), since it acts on the model's own log-mels.
"""

import zlib
from dataclasses import dataclass, field

import numpy as np
import soxr
import torch

from ser.core.audio import SAMPLING_RATE


@dataclass
class AugmentationArguments:
    augment: bool = field(default=False, metadata={"help": "Perturb training clips (speed, noise, gain); needs an encoder that reads raw samples"})
    loop_pad: bool = field(default=True, metadata={"help": "Repeat clips shorter than --crop_seconds to fill the crop (else they stay short and are padded)"})
    speed_range: list[float] = field(default_factory=lambda: [0.9, 1.1], metadata={"help": "Speed perturbation factors, drawn uniformly (1 1: off)"})
    noise_probability: float = field(default=0.5, metadata={"help": "Share of training draws that get white noise added"})
    noise_snr_db: list[float] = field(default_factory=lambda: [5.0, 40.0], metadata={"help": "Signal-to-noise ratio range of that noise, dB"})
    gain_db: list[float] = field(default_factory=lambda: [-30.0, 6.0], metadata={"help": "Gain range, dB (samples beyond full scale are clipped)"})
    band_limit_probability: float = field(default=0.0, metadata={"help": "Share of training draws band-limited to the telephone band (resampled to 8 kHz and back)"})
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup: mixing weights drawn from Beta(alpha, alpha); 0 turns it off"})
    copies: int = field(default=0, metadata={"help": "--mode frozen: perturbed copies of each clip (noise, telephone band and gain as above, no speed), encoded and cached once; each training draw takes the clip or one of its copies"})
    copy_shift_seconds: float = field(default=0.0, metadata={"help": "--copies: each copy starts up to this much later (where a speech detector's frames cut a clip moves by up to a frame)"})

    def __post_init__(self):
        for name in ("speed_range", "noise_snr_db", "gain_db"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"--{name} {low} {high}: the first value is the lower bound")
        if self.speed_range[0] <= 0:
            raise ValueError(f"--speed_range must be positive, got {self.speed_range}")
        if self.copies < 0:
            raise ValueError(f"--copies must be 0 or more, got {self.copies}")


def crop(audio: np.ndarray, length: int, rng: np.random.Generator, loop_pad: bool = True) -> np.ndarray:
    """A random `length`-sample piece; a shorter clip is repeated to fill it (or returned whole)."""
    if len(audio) < length:
        return np.resize(audio, length) if loop_pad else audio
    start = rng.integers(0, len(audio) - length + 1)
    return audio[start : start + length]


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Plays `factor` times faster: pitch and tempo rise together, the length shrinks by `factor`."""
    if factor == 1:
        return audio
    return soxr.resample(audio, SAMPLING_RATE * factor, SAMPLING_RATE).astype(np.float32, copy=False)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at `snr_db` below the clip's mean power (a silent clip is returned unchanged)."""
    power = float(np.mean(audio.astype(np.float64) ** 2))
    if power == 0:
        return audio
    noise = rng.standard_normal(len(audio)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def band_limit(audio: np.ndarray, rate: int = 8000) -> np.ndarray:
    """The telephone band: down to `rate` and back, so nothing above rate / 2 survives."""
    return soxr.resample(soxr.resample(audio, SAMPLING_RATE, rate), rate, SAMPLING_RATE).astype(np.float32)[: len(audio)]


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    return np.clip(audio * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


class WaveformAugmenter:
    """One training draw of a clip: crop (at the speed-scaled length), speed, noise, gain. The result has the crop's
    length (or the clip's, for a short clip without loop padding)."""

    def __init__(self, args: AugmentationArguments, crop_seconds: float, seed: int):
        self.args, self.length = args, int(round(crop_seconds * SAMPLING_RATE))
        self.rng = np.random.default_rng(seed)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        args, rng = self.args, self.rng
        if not args.augment:
            return crop(audio, self.length, rng, args.loop_pad)
        factor = rng.uniform(*args.speed_range)
        piece = change_speed(crop(audio, int(round(self.length * factor)), rng, args.loop_pad), factor)
        piece = piece[: self.length] if len(piece) >= self.length or not args.loop_pad else np.resize(piece, self.length)
        return perturb(piece, args, rng)


def perturb(audio: np.ndarray, args: AugmentationArguments, rng: np.random.Generator) -> np.ndarray:
    """The recording conditions of one draw: noise (on a share of draws), the telephone band (on a share), gain."""
    if rng.random() < args.noise_probability:
        audio = add_noise(audio, rng.uniform(*args.noise_snr_db), rng)
    if rng.random() < args.band_limit_probability:
        audio = band_limit(audio)
    return apply_gain(audio, rng.uniform(*args.gain_db))


def perturbed_copies(audio: np.ndarray, args: AugmentationArguments) -> list[np.ndarray]:
    """`args.copies` perturbed versions of a clip, drawn with a generator seeded by the clip's samples: a clip gets
    the same copies in every run, so their cached features are reused."""
    rng = np.random.default_rng(zlib.crc32(audio.tobytes()))
    shift = int(args.copy_shift_seconds * SAMPLING_RATE)
    return [perturb(audio[rng.integers(0, shift + 1) if shift else 0:], args, rng) for _ in range(args.copies)]


def mixup(batch: dict, alpha: float, num_labels: int) -> dict:
    """Blends each clip with another of the batch: inputs `lam * x + (1 - lam) * x[perm]`, labels likewise as class
    probabilities. `lam >= 0.5`, so each clip keeps its own normalisation statistics and mask (joined with the
    partner's)."""
    name = next(key for key in batch if key not in ("attention_mask", "labels", "normalisation_stats"))
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    lam = max(lam, 1 - lam)
    perm = torch.randperm(len(batch["labels"]))
    targets = torch.nn.functional.one_hot(batch["labels"], num_labels).float()
    mixed = dict(batch)
    mixed[name] = lam * batch[name] + (1 - lam) * batch[name][perm]
    mixed["labels"] = lam * targets + (1 - lam) * targets[perm]
    if "attention_mask" in batch:
        mixed["attention_mask"] = batch["attention_mask"] | batch["attention_mask"][perm]
    return mixed
