"""Speech statistics for speaker (or corpus) normalisation: one definition for training and prediction.

A logmel-cnn model with "speaker" normalisation z-normalises its log-mels with the mean and std per mel bin of one
speaker's speech frames (the model's own front end decides which frames are speech). train_ser.py computes them for
every training and test speaker, the predictor for the clips or the recording it is given; both go through
`RunningStatistics`, which needs constant memory however much audio it is fed.
"""

import numpy as np
import torch

from ser.audio import SAMPLING_RATE


class RunningStatistics:
    """Mean and std per mel bin over the speech frames of many clips or blocks, in constant memory: what
    `masked_statistics` gives on all those frames at once (a population std)."""

    def __init__(self, frontend):
        self.frontend = frontend
        self.count, self.total, self.squares = 0, 0.0, 0.0
        self.hop_seconds = frontend.hop_length / SAMPLING_RATE

    def add(self, samples: np.ndarray) -> None:
        with torch.no_grad():  # not inference_mode: training feeds these statistics through autograd
            log_mel, _, is_speech = self.frontend(torch.from_numpy(samples).reshape(1, -1))
        frames = log_mel[is_speech].double()
        self.count += len(frames)
        self.total = self.total + frames.sum(dim=0)
        self.squares = self.squares + (frames ** 2).sum(dim=0)

    @property
    def seconds(self) -> float:
        return self.count * self.hop_seconds

    def result(self) -> torch.Tensor:
        mean = self.total / self.count
        variance = (self.squares / self.count - mean ** 2).clamp(min=0)
        return torch.stack([mean, (variance + 1e-4).sqrt()]).float()
