"""Where the speech is: one voice-activity detector for every path (training's trimming, the predictor's "is there
speech" check and trimming, timeline segments, the live meter).

This file is model code: it is saved beside every model (with modeling_ser.py and feature_extraction_ser.py), so
the stock pipeline finds speech as training did. It needs numpy, and for Silero the `silero-vad` wheel (its ONNX
model) and onnxruntime.

The default is Silero VAD (pip `silero-vad` 6.2.3, MIT): a small trained network that gives every 32 ms frame a
speech probability, and that tells speech from noise at the same level, which no energy rule can. Its ONNX model
ships inside the wheel; it runs here through onnxruntime in its "sequence" form (a whole block of frames per call,
probabilities bit-exact with the streaming model), so a file is scanned block by block in constant memory. A frame
starts speech when its probability reaches `threshold` and speech goes on until one falls below `release` (Silero's
own hysteresis, `neg_threshold`); the thresholds are lower than Silero's 0.5 / 0.35 because acted emotional speech
(shouts, sobs) scores low: on all 2,563 clips of Emo-DB, RAVDESS and EMOVO, 0.25 / 0.1 misses 2 clean and 4
telephone-band clips where 0.5 / 0.35 misses 7 and 20, while white, pink and brown noise at -60 to -6 dBFS
never score above 0.10 (benchmarks/speech_detector.py). Where no frame reaches `threshold` but one reaches
`fallback`, the energy detector below decides: those misses are mostly shouts scored 0.2 to 0.22 (brown noise would
be "speech" to the energy detector alone, so it never decides by itself).

Two rules on the frames' levels complete Silero (benchmarks/speech_detector.py measures both):
- Loud is never "no speech". Silero scores some short shouted words below 0.05 (cut from Emo-DB's and RAVDESS's
  angry clips, alone or set in digital silence or in noise 40 to 60 dB below them: 27 of 2,140 got no frame at
  `fallback`). Where Silero hears none, the energy detector still decides when the clip's loud frames stand `loud_db`
  above its own floor: the 90th minus the 10th percentile of the levels of its first difference (a gentle high-pass,
  so that the drift of brown noise and hum is no loudness), over the frames that are not digital silence, with the
  loud frames' plain level above LOUD_MIN_DBFS. Steady white, pink and brown noise, hum and tones spread at most
  1.5 dB; every corpus clip at least 16 dB, the shouted words Silero missed at least 12 dB. Where Silero heard
  something (`fallback`), the spread must still reach STEADY_DB, so brown noise (which the energy detector alone
  takes for speech) is no speech when Silero scores it 0.15 to 0.25, as it does for 1 in 75 brown-noise clips set
  in digital silence.
- Speech ends where its sound does. Silero's probability lags the audio: after speech it stays above `release` for
  0.1 to 0.3 s over whatever follows (and a background that changes, such as noise after a clip cut short, scores
  up to 0.7 for a moment). Each speech region's end is pulled back over its last frames that are within `settle_db`
  of the level after it (the SETTLE_PERCENTILE of the audible frames up to the next region, where there are at least
  SETTLE_FRAMES of them), so a clip padded with noise trims as it does alone: on all 2,563 clips padded with 2 s of
  -50 dBFS white noise, the end of the speech moved by more than 0.2 s in 34 % of them before and 2 % after, while
  the clean clips' trims changed in 60 (2.3 %).

The energy detector of earlier models stays, for the models trained with it (their config names no detector): a
frame is speech when it is both within `DYNAMIC_RANGE_DB` of the loudest frame and `FLOOR_MARGIN_DB` above the noise
floor (a low percentile of the levels of frames that are not digital silence).

Either way the frame decisions become segments by the same rules: each region widened by `MARGIN_SECONDS`, regions
closer than `MIN_GAP_SECONDS` joined, clicks shorter than `MIN_SPEECH_SECONDS` dropped. A model records the detector
it was trained with (`Detector.to_dict`, saved as `speech_detector` in its config) and is served with exactly that.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

SAMPLING_RATE = 16000  # what every encoder family here expects (ser.core.audio reads it from here)

DETECTORS = ("silero-vad", "energy")
SILERO_VERSION = "6.2.3"  # the pinned wheel (requirements.txt) whose model file is used
SILERO_FRAME = 512  # samples per frame at 16 kHz (32 ms)
SILERO_CONTEXT = 64  # the last samples of the previous frame, which the network hears with each frame
SILERO_BLOCK = 512 * SILERO_FRAME  # samples per onnxruntime call and per level normalisation (16.4 s)
SILERO_PEAK = 0.5  # each block's peak is scaled to this (-6 dBFS) before the network hears it
SETTLE_PERCENTILE = 5.0  # the level after a speech region: this percentile of its audible frames ...
SETTLE_FRAMES = 3  # ... where there are at least this many (96 ms); none: the region's end stays
LOUD_PERCENTILES = (90.0, 10.0)  # the clip's loud frames and its floor, for `loud_db`
LOUD_MIN_DBFS = -80.0  # loud frames quieter than this are no speech (20 dB above 16-bit quantisation noise)
STEADY_DB = 3.0  # loud_db on: where Silero heard something (fallback), the energy detector decides only above this

FRAME_SECONDS = 0.025  # energy detector: frame length and hop
HOP_SECONDS = 0.010
DYNAMIC_RANGE_DB = 40.0  # speech frames lie within this of the loudest frame
FLOOR_MARGIN_DB = 12.0  # ... and this far above the noise floor
FLOOR_PERCENTILE = 5.0
DIGITAL_SILENCE_DB = -300.0  # the level of digital silence (exact zeros): below any recording's own background

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


@dataclass(frozen=True)
class Detector:
    """Which detector, with its settings: what a model records and the predictor applies."""

    name: str = "silero-vad"
    threshold: float = 0.25  # silero-vad: a frame with at least this speech probability starts speech
    release: float = 0.1  # ... which goes on until a frame falls below this
    fallback: float = 0.15  # no frame reaches `threshold`, but one reaches this: the energy detector decides
    # Settings added later: a model whose saved detector lacks them gets these defaults (0 turns either off)
    loud_db: float = 10.0  # no frame reaches `fallback`, but loud frames stand this far above the floor: energy decides
    settle_db: float = 3.0  # a speech region's end is pulled back over frames within this of the level after it

    def __post_init__(self):
        if self.name not in DETECTORS:
            raise ValueError(f"unknown speech detector {self.name!r}; choose one of {', '.join(DETECTORS)}")

    def to_dict(self) -> dict:
        if self.name != "silero-vad":
            return asdict(self)
        return {**asdict(self), "version": importlib.metadata.version("silero-vad")}

    @classmethod
    def from_dict(cls, settings: dict | None) -> Detector:
        """The detector a model's config records; a model that records none was trained with the energy one."""
        if not settings:
            return ENERGY
        return cls(**{key: value for key, value in settings.items() if key != "version"})

    def meter(self, sampling_rate: int = SAMPLING_RATE) -> SileroMeter | LevelMeter:
        return SileroMeter(self) if self.name == "silero-vad" else LevelMeter(sampling_rate)

    def segments(self, audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> list[Segment]:
        """Speech regions, widened by MARGIN_SECONDS, with short pauses bridged and clicks dropped; [] when none.
        The last few answers are kept by the audio's content: the predictor asks twice for each clip (is there
        speech, then where to trim), and hashing the samples costs a tenth of scanning them."""
        samples = np.ascontiguousarray(audio)
        key = (self, sampling_rate, samples.dtype.str, hashlib.blake2b(samples.view(np.uint8), digest_size=16).digest())
        with _RECENT_LOCK:
            found = _RECENT.get(key)
            if found is not None:
                _RECENT.move_to_end(key)
        if found is None:
            meter = self.meter(sampling_rate)
            meter.add(samples)
            found = tuple(meter.segments())
            with _RECENT_LOCK:
                _RECENT[key] = found
                while len(_RECENT) > RECENT_ANSWERS:
                    _RECENT.popitem(last=False)
        return list(found)

    def trim(self, audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
        """The clip from its first speech to its last (pauses inside kept); the clip unchanged when it holds no
        speech, so a caller's own checks decide what to do with it."""
        segments = self.segments(audio, sampling_rate)
        if not segments:
            return audio
        speech = audio[segments[0].start:segments[-1].end]
        # The margins may reach into digital silence (padding, a muted microphone): exact zeros carry nothing, and
        # without this a clip padded with silence would keep up to MARGIN_SECONDS of it where the clip alone has none
        sounding = np.flatnonzero(speech)
        return speech[sounding[0]:sounding[-1] + 1] if sounding.size else speech


DEFAULT = Detector()
ENERGY = Detector("energy")
RECENT_ANSWERS = 64  # Detector.segments: answers kept (a batch of clips is checked, then trimmed)
_RECENT: OrderedDict = OrderedDict()
_RECENT_LOCK = threading.Lock()


# --- silero-vad --------------------------------------------------------------------------------------------------


@cache
def silero_session():
    """The sequence model from the installed wheel, found without importing the package (whose import sets torch to
    one thread for the whole process)."""
    spec = importlib.util.find_spec("silero_vad")
    try:  # (inside try: transformers' remote-code loader does not demand it of a model that never trims)
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if spec is None or spec.origin is None or onnxruntime is None:
        raise RuntimeError("this model finds speech with Silero VAD, which needs two packages: "
                           f"pip install silero-vad=={SILERO_VERSION} onnxruntime")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # 32 ms frames: threads would only spin
    path = Path(spec.origin).parent / "data" / "silero_vad_16k_sequence.onnx"
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class SileroMeter:
    """Speech probabilities of a recording fed block by block, identical to feeding it whole: the audio is scanned in
    fixed blocks of SILERO_BLOCK samples counted from its start, the network's state and the previous frame's
    last samples carry over between them, and the last frame is zero-padded (as Silero does). Each block is scaled
    to a peak of SILERO_PEAK first, so a quiet recording is heard as a loud one (noise stays noise at any level)."""

    def __init__(self, detector: Detector = DEFAULT):
        self.detector = detector
        self.levels = LevelMeter()  # the fallback
        self.changes = LevelMeter()  # levels of the first difference (loud_db)
        self.last = np.zeros(1, np.float32)  # the sample before the next block, for the first difference
        self.frame_levels: list[np.ndarray] = []  # each frame's level in dBFS as added (before scaling; settle_db)
        self.state = [np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)]
        self.context = np.zeros(SILERO_CONTEXT, np.float32)
        self.pending: list[np.ndarray] = []  # samples of the block being filled
        self.probabilities: list[np.ndarray] = []
        self.num_samples = self.scanned = 0  # samples added, and of those, scanned
        self.finished = False

    def add(self, block: np.ndarray) -> None:
        if self.finished:  # its last frame was zero-padded: more audio would not follow on from it
            raise RuntimeError("this meter has given its segments; start a new one for more audio")
        self.pending.append(np.asarray(block, dtype=np.float32))
        self.levels.add(self.pending[-1])
        if self.pending[-1].size:
            self.changes.add(np.diff(self.pending[-1], prepend=self.last))
            self.last = self.pending[-1][-1:]
        self.num_samples += block.size
        while self.num_samples - self.scanned >= SILERO_BLOCK:
            audio = np.concatenate(self.pending)
            self._scan(audio[:SILERO_BLOCK])
            self.pending = [audio[SILERO_BLOCK:]]
            self.scanned += SILERO_BLOCK

    def _scan(self, audio: np.ndarray) -> None:
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        frames = np.pad(audio, (0, -audio.size % SILERO_FRAME)).reshape(-1, SILERO_FRAME)
        if not frames.size:
            return
        power = np.mean(np.square(frames, dtype=np.float64), axis=1)
        self.frame_levels.append(np.where(power > 0, 10 * np.log10(np.maximum(power, 1e-30)),
                                          DIGITAL_SILENCE_DB).astype(np.float32))
        if peak > 0:
            frames = frames * np.float32(SILERO_PEAK / peak)
        contexts = np.concatenate([self.context[None], frames[:-1, -SILERO_CONTEXT:]])
        self.context = frames[-1, -SILERO_CONTEXT:].copy()
        # Frames of digital silence (padding, a muted microphone) are no speech and do not advance the network, so
        # padding a clip with silence leaves what the network hears of the clip unchanged
        sounding = frames.any(axis=1)
        probabilities = np.zeros(len(frames), np.float32)
        if sounding.any():
            heard, *self.state = silero_session().run(
                ["speech_probs", "hn", "cn"], {"input": np.concatenate([contexts, frames], axis=1)[sounding],
                                               "h": self.state[0], "c": self.state[1]})
            probabilities[sounding] = heard.reshape(-1)
        self.probabilities.append(probabilities)

    def segments(self) -> list[Segment]:
        """The speech of everything added (the meter is finished: nothing more can be added)."""
        if not self.finished:
            self._scan(np.concatenate(self.pending) if self.pending else np.zeros(0, np.float32))
            self.pending, self.finished = [], True
        probabilities = np.concatenate(self.probabilities) if self.probabilities else np.zeros(0, np.float32)
        speech = hysteresis(probabilities, self.detector.threshold, self.detector.release)
        if not speech.any():  # a shout Silero scores low is still speech; noise it scores lower still is not
            heard = bool(probabilities.size and probabilities.max() >= self.detector.fallback)
            if self.detector.loud_db > 0:  # the energy detector decides where loud frames stand out of the floor
                spread = loud_spread(self.levels.all_levels(), self.changes.all_levels())
                heard = (heard and spread >= STEADY_DB) or spread >= self.detector.loud_db
            return self.levels.segments() if heard else []
        if self.detector.settle_db > 0:
            speech = settle_ends(speech, np.concatenate(self.frame_levels), self.detector.settle_db)
        return segments_from_frames(speech, SILERO_FRAME, SILERO_FRAME, self.num_samples)


def settle_ends(speech: np.ndarray, levels: np.ndarray, settle_db: float) -> np.ndarray:
    """Each speech region's end pulled back over its last frames within `settle_db` of the level after it (see the
    module docstring); a region with no frame above that level goes, unless that would leave no speech at all."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], speech.astype(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2]
    settled = speech.copy()
    for i, (start, end) in enumerate(zip(starts, ends)):
        after = levels[end:starts[i + 1] if i + 1 < len(starts) else levels.size]
        after = after[after > DIGITAL_SILENCE_DB]
        if after.size < SETTLE_FRAMES:
            continue
        above = np.flatnonzero(levels[start:end] >= np.percentile(after, SETTLE_PERCENTILE) + settle_db)
        settled[start + (above[-1] + 1 if above.size else 0):end] = False
    return settled if settled.any() else speech


def loud_spread(levels: np.ndarray, change_levels: np.ndarray) -> float:
    """How far (dB) the loud frames stand above the floor, in the levels of the first difference (see the module
    docstring); 0 where the loud frames' plain level is below LOUD_MIN_DBFS. Digital silence is left out of both."""
    changes = change_levels[change_levels > DIGITAL_SILENCE_DB]
    plain = levels[levels > DIGITAL_SILENCE_DB]
    if not changes.size or not plain.size or np.percentile(plain, LOUD_PERCENTILES[0]) < LOUD_MIN_DBFS:
        return 0.0
    loud, floor = np.percentile(changes, LOUD_PERCENTILES)
    return float(loud - floor)


def hysteresis(probabilities: np.ndarray, threshold: float, release: float) -> np.ndarray:
    """Speech from a frame reaching `threshold` until one falls below `release`."""
    speech = np.zeros(probabilities.size, dtype=bool)
    active = False
    for i, probability in enumerate(probabilities.tolist()):
        active = probability >= threshold or (active and probability >= release)
        speech[i] = active
    return speech


# --- energy ------------------------------------------------------------------------------------------------------


def frame_levels(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """RMS level in dBFS of each frame (FRAME_SECONDS long, every HOP_SECONDS); a clip shorter than one frame is one
    frame."""
    frame = int(FRAME_SECONDS * sampling_rate)
    hop = int(HOP_SECONDS * sampling_rate)
    if audio.size < frame:
        audio = np.pad(audio, (0, frame - audio.size))
    frames = np.lib.stride_tricks.sliding_window_view(audio, frame)[::hop]
    power = np.mean(np.square(frames, dtype=np.float64), axis=1)
    return np.maximum(10 * np.log10(np.maximum(power, 1e-30)), DIGITAL_SILENCE_DB).astype(np.float32)  # 4 bytes a frame


def speech_frames(levels: np.ndarray) -> np.ndarray:
    """Boolean speech decision per frame (see the module docstring for the rule)."""
    audible = levels[levels > DIGITAL_SILENCE_DB]  # digital silence (padding, gaps) says nothing about the room
    floor = np.percentile(audible, FLOOR_PERCENTILE) if audible.size else DIGITAL_SILENCE_DB
    threshold = max(levels.max() - DYNAMIC_RANGE_DB, floor + FLOOR_MARGIN_DB)
    return levels >= threshold


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

    def all_levels(self) -> np.ndarray:
        return np.concatenate(self.levels) if self.levels else frame_levels(self.tail, self.sampling_rate)

    def segments(self) -> list[Segment]:
        return segments_from_frames(speech_frames(self.all_levels()), self.hop, self.frame, self.num_samples)


# --- frames to segments ------------------------------------------------------------------------------------------


def segments_from_frames(speech: np.ndarray, hop: int, frame: int, num_samples: int,
                         sampling_rate: int = SAMPLING_RATE) -> list[Segment]:
    """Speech regions from per-frame decisions (frame i covers samples [i * hop, i * hop + frame)): widened by the
    margin, short gaps bridged, clicks dropped."""
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
