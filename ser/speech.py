"""Where the speech is: an energy-based voice-activity detector, used the same way in training and inference.

Clips are trimmed to their speech before features are computed (train_ser.py and the predictor both call `trim`),
so leading and trailing silence or noise cannot become a cue; long recordings are cut into speech segments.

Energy rather than a neural VAD: it needs no weights (nothing loads offline from the Hub), costs nothing next to the
emotion model, and a relative threshold keeps quiet but real speech (a -48 dBFS peak) while an absolute one would
refuse it. A frame is speech when it is both within `DYNAMIC_RANGE_DB` of the loudest frame and `FLOOR_MARGIN_DB`
above the noise floor (a low percentile of the levels of frames that are not digital silence), so constant
background noise is never speech and padding a clip with digital silence changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser.audio import SAMPLING_RATE

FRAME_SECONDS = 0.025
HOP_SECONDS = 0.010
DYNAMIC_RANGE_DB = 40.0  # speech frames lie within this of the loudest frame
FLOOR_MARGIN_DB = 12.0  # ... and this far above the noise floor
FLOOR_PERCENTILE = 5.0
SILENCE_DB = -300.0  # the level of digital silence (exact zeros): below any recording's own background
MARGIN_SECONDS = 0.1  # kept around each speech region: onsets and decays are quiet
MIN_GAP_SECONDS = 0.3  # regions closer than this (after their margins) are one: pauses up to ~0.5 s stay inside
MIN_SPEECH_SECONDS = 0.1  # shorter regions are clicks, not speech


@dataclass(frozen=True)
class Segment:
    """A speech region in samples: audio[start:end]."""

    start: int
    end: int

    def seconds(self, sampling_rate: int = SAMPLING_RATE) -> tuple[float, float]:
        return self.start / sampling_rate, self.end / sampling_rate


def frame_levels(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """RMS level in dBFS of each frame (FRAME_SECONDS long, every HOP_SECONDS); a clip shorter than one frame is one
    frame."""
    frame = int(FRAME_SECONDS * sampling_rate)
    hop = int(HOP_SECONDS * sampling_rate)
    if audio.size < frame:
        audio = np.pad(audio, (0, frame - audio.size))
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[::hop]
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), SILENCE_DB).astype(np.float32)  # 4 bytes a frame


def speech_frames(levels: np.ndarray) -> np.ndarray:
    """Boolean speech decision per frame (see the module docstring for the rule)."""
    audible = levels[levels > SILENCE_DB]  # digital silence (padding, gaps) says nothing about the room
    floor = np.percentile(audible, FLOOR_PERCENTILE) if audible.size else SILENCE_DB
    threshold = max(levels.max() - DYNAMIC_RANGE_DB, floor + FLOOR_MARGIN_DB)
    return levels >= threshold


def speech_segments(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[Segment]:
    """Speech regions, widened by MARGIN_SECONDS, with short pauses bridged and clicks dropped; [] when none."""
    return segments_from_levels(frame_levels(audio, sampling_rate), audio.size, sampling_rate)


class LevelMeter:
    """`frame_levels` of a recording fed block by block (a long file is never held whole): the same frames, in
    constant memory apart from the levels themselves (100 floats a second)."""

    def __init__(self, sampling_rate: int = SAMPLING_RATE):
        self.sampling_rate = sampling_rate
        self.frame, self.hop = int(FRAME_SECONDS * sampling_rate), int(HOP_SECONDS * sampling_rate)
        self.tail = np.zeros(0, dtype=np.float32)  # samples from the next frame's start on
        self.levels: list[np.ndarray] = []
        self.num_samples = 0

    def add(self, block: np.ndarray) -> None:
        self.num_samples += block.size
        audio = np.concatenate([self.tail, block])
        frames = (audio.size - self.frame) // self.hop + 1 if audio.size >= self.frame else 0
        if frames:
            self.levels.append(frame_levels(audio[: (frames - 1) * self.hop + self.frame], self.sampling_rate))
        self.tail = audio[frames * self.hop:]

    def segments(self) -> list[Segment]:
        levels = np.concatenate(self.levels) if self.levels else frame_levels(self.tail, self.sampling_rate)
        return segments_from_levels(levels, self.num_samples, self.sampling_rate)


def segments_from_levels(levels: np.ndarray, num_samples: int, sampling_rate: int = SAMPLING_RATE) -> list[Segment]:
    """The regions of `speech_segments` from frame levels already measured."""
    hop = int(HOP_SECONDS * sampling_rate)
    frame = int(FRAME_SECONDS * sampling_rate)
    speech = speech_frames(levels)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], speech.astype(np.int8), [0]])))
    regions = list(zip(edges[::2], edges[1::2]))  # speech frames [first, last)
    # Clicks are judged on their speech frames alone, so a region at the clip's edge counts as it would inside
    long_enough = [(first, last) for first, last in regions if (last - first) * hop >= MIN_SPEECH_SECONDS * sampling_rate]
    margin, min_gap = int(MARGIN_SECONDS * sampling_rate), int(MIN_GAP_SECONDS * sampling_rate)
    segments: list[Segment] = []
    for first, last in long_enough or regions:  # a clip holding only a short sound: that sound
        start = max(0, first * hop - margin)
        end = min(num_samples, (last - 1) * hop + frame + margin)
        if segments and start - segments[-1].end < min_gap:
            segments[-1] = Segment(segments[-1].start, end)
        else:
            segments.append(Segment(start, end))
    return segments


def trim(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """The clip from its first speech to its last (pauses inside kept); the clip unchanged when nothing stands out
    as speech, so a caller's own checks decide what to do with it."""
    segments = speech_segments(audio, sampling_rate)
    if not segments:
        return audio
    speech = audio[segments[0].start:segments[-1].end]
    # The margins may reach into digital silence (padding, a muted microphone): exact zeros carry nothing, and
    # without this a clip padded with silence would keep up to MARGIN_SECONDS of it where the clip alone has none
    sounding = np.flatnonzero(speech)
    return speech[sounding[0]:sounding[-1] + 1] if sounding.size else speech
