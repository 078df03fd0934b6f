"""Speaker statistics for speaker (or corpus) normalisation: one definition for training and prediction.

A speaker-normalised model z-normalises with the mean and std per dimension over all of one speaker's speech: the
log-mel CNN its log-mels (speech frames only, as its front end decides), the other families the frames of their
chosen encoder layer(s) (`frame_normalisation="speaker"`). train_ser.py computes them for every training and test
speaker, the predictor for the clips or the recording it is given; both go through `RunningStatistics`, which needs
constant memory however much audio it is fed.
"""

import numpy as np
import torch

import modeling_ser
from ser.core.audio import SAMPLING_RATE


class LogMelFrames:
    """The log-mel CNN's speech frames (N, F) of one clip."""

    eps = 1e-4

    def __init__(self, frontend):
        self.frontend = frontend
        self.hop_seconds = frontend.hop_length / SAMPLING_RATE

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        log_mel, _, is_speech = self.frontend(torch.from_numpy(samples).reshape(1, -1))
        return log_mel[is_speech]


class EncoderFrames:
    """The frames (N, H) or (N, L, H) of a model's chosen encoder layer(s) for one clip: what its head normalises."""

    eps = modeling_ser.FRAME_STATS_EPS

    def __init__(self, model, feature_extractor):
        self.model, self.feature_extractor = model, feature_extractor
        self.hop_seconds = None  # set by the first clip: encoder frames per second differ by family

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        inputs = self.feature_extractor(samples, sampling_rate=SAMPLING_RATE, prepare_speech=False,
                                        return_tensors="pt")
        outputs = self.model.base_model(inputs[self.feature_extractor.model_input_names[0]],
                                        output_hidden_states=self.model.config.feature_layer != "last")
        frames = self.model.encoder_frames(outputs)[0]
        self.hop_seconds = len(samples) / SAMPLING_RATE / max(len(frames), 1)
        return frames


def frame_source(model, feature_extractor):
    """What a speaker-normalised model's statistics are taken over."""
    if not getattr(model, "speaker_normalised", False):
        raise ValueError("this model was not trained with speaker normalisation")
    if model.normalises_inputs:
        return LogMelFrames(model.frontend)
    return EncoderFrames(model, feature_extractor)


class RunningStatistics:
    """Mean and std per dimension over the frames of many clips or blocks, in constant memory: what
    modeling_ser's `frame_statistics` gives on all those frames at once (a population std)."""

    def __init__(self, source=None, eps: float | None = None):
        """`source` turns samples into frames (`add`); without one, only `add_frames` works. `eps`: added to the
        variance, by default the source's."""
        self.source = source
        self.eps = source.eps if eps is None else eps
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, samples: np.ndarray) -> None:
        with torch.no_grad():  # not inference_mode: training feeds these statistics through autograd
            self.add_frames(self.source(samples))

    def add_frames(self, frames: torch.Tensor) -> None:
        """Frames (N, ...) already computed, e.g. from a frozen encoder's feature cache."""
        frames = torch.as_tensor(frames).double()
        self.count += len(frames)
        self.total = self.total + frames.sum(dim=0)
        self.squares = self.squares + (frames ** 2).sum(dim=0)

    @property
    def seconds(self) -> float:
        return self.count * ((self.source and self.source.hop_seconds) or 0.0)

    def result(self) -> torch.Tensor:
        mean = self.total / self.count
        variance = (self.squares / self.count - mean ** 2).clamp(min=0)
        return torch.stack([mean, (variance + self.eps).sqrt()]).float()


def cached_frame_statistics(features: list) -> torch.Tensor:
    """Statistics (2, ...) over the cached encoder frames (T, ...) of many clips: a frozen encoder's training clips
    for "global" frame normalisation."""
    stats = RunningStatistics(eps=modeling_ser.FRAME_STATS_EPS)
    for frames in features:
        stats.add_frames(torch.from_numpy(frames))
    return stats.result()
