"""EmotionPredictor: the toolkit's one inference object (CLI, Gradio app, benchmarks).

It loads a saved model (stock `*ForSequenceClassification` or our custom head) through `from_pretrained`, checks its
input with messages a user can act on, and runs the model directly on the feature extractor's tensors. Long
recordings go through `timeline`, which streams the file so memory does not depend on its length.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import nn

import modeling_ser
import speech_ser as speech
from ser.core import defaults
from ser.inference import timeline as timelines  # the module; EmotionPredictor.timeline is the method
from feature_extraction_ser import MIN_SECONDS, Preparation, emotion_feature_extractor, shortest_seconds
from ser.core.audio import SAMPLING_RATE, AudioError, Reason, audio_duration, load_audio, to_float_mono
from ser.inference.rows import Segment
from ser.inference.runtime import ONNX_RUNTIMES, check_runtime, fast_inference_model
from ser.core.statistics import RunningStatistics, frame_source


WORDS_BATCH = 64  # timeline segments per call when words are asked for (decoded together)


@dataclass(frozen=True)
class InputPolicy:
    """What the predictor accepts as one clip, and how much of one speaker's speech it needs: one definition, which
    the command line and the demo read from their predictor. A model's own limits narrow it (`for_model`); a
    refusal is an AudioError whose Reason names the limit."""

    min_seconds: float = MIN_SECONDS
    max_seconds: float = 60.0  # longer recordings go through the timeline, in segments
    min_speaker_seconds: float = 10.0  # speech needed before a speaker's own statistics are stable enough to normalise with

    def for_model(self, model: nn.Module, feature_extractor) -> InputPolicy:
        """Narrowed to what the model can take: a Whisper encoder has positions for 30 s (two mel frames each); the
        log-mel CNN needs `shortest_input_samples` (each of its blocks halves the frames)."""
        longest = self.max_seconds
        if getattr(model, "family", None) == "whisper":
            longest = min(longest, 2 * model.config.max_source_positions * feature_extractor.hop_length / SAMPLING_RATE)
        return replace(self, min_seconds=shortest_seconds(model.config, self.min_seconds),
                       max_seconds=longest)


class EmotionPredictor:
    """Emotion probabilities for clips, files and long recordings."""

    sampling_rate = SAMPLING_RATE
    uncertain_below = defaults.UNCERTAIN_BELOW
    batch_size = 8  # clips or timeline windows per forward pass
    max_padding = 0.1  # a padded batch may hold at most this fraction of padding (padding is wasted compute)

    def __init__(self, model: nn.Module, feature_extractor, runtime: str = defaults.RUNTIME, owns_model: bool = False,
                 source: str | Path | None = None, policy: InputPolicy = InputPolicy()):
        """`owns_model`: the model may be rewritten in place (no copy: the int8 peak memory drops by the model's
        size); else the caller's model is left as it was. `source`: the folder or Hub id it was loaded from, whose
        files key the ONNX runtimes' cache of exported graphs (ser/inference/onnx_runtime.py). `policy`: what it accepts,
        narrowed to the model's own limits (`self.policy`)."""
        check_runtime(runtime)
        self.source = source
        self._transcriber = None  # the Whisper decoder for words, loaded when first asked for (ser/inference/words.py)
        rate = getattr(feature_extractor, "sampling_rate", None)
        if rate != self.sampling_rate:
            raise ValueError(f"the feature extractor expects {rate} Hz audio; "
                             f"EmotionPredictor feeds {self.sampling_rate} Hz")
        config = model.config
        self.labels: list[str] = [_label(config.id2label, i) for i in range(config.num_labels)]
        self.runtime = runtime
        # ours (which prepares each clip as training did, where the model records how) in place of a stock one
        self.feature_extractor = feature_extractor = emotion_feature_extractor(feature_extractor)
        if runtime in ONNX_RUNTIMES:
            from ser.inference.onnx_runtime import OnnxModel  # imports onnxruntime only when used
            self.model = OnnxModel(model, feature_extractor, runtime, folder=source)
        else:
            self.model = fast_inference_model(model, runtime, inplace=owns_model)
        self.pads_exactly = _pads_exactly(config, feature_extractor)
        self.policy = policy.for_model(model, feature_extractor)
        serving = modeling_ser.serving_settings(config)
        # our classes calibrate in their forward; a head saved as a stock class leaves it to us
        calibrated_inside = getattr(model, "applies_calibration", False)
        self.temperature = 1.0 if calibrated_inside else float(serving.calibration_temperature or 1.0)
        # speaker-normalised models: what their speaker statistics are taken over (ser.core.statistics)
        self.frame_source = frame_source(model, feature_extractor) if getattr(model, "speaker_normalised", False) \
            else None

    @property
    def preparation(self) -> Preparation:
        """What training did to each clip, as the feature extractor records it (which then does it); a model that
        records nothing gets each clip as it is, refused where no speech is found (the energy detector)."""
        return self.feature_extractor.preparation or Preparation(trim_silence=False, level_normalisation=False)

    @property
    def detector(self):
        """The speech detector training cut clips with: the timeline finds a recording's segments with it too."""
        return self.preparation.detector

    min_seconds = property(lambda self: self.policy.min_seconds)
    max_seconds = property(lambda self: self.policy.max_seconds)
    min_speaker_seconds = property(lambda self: self.policy.min_speaker_seconds)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, runtime: str = defaults.RUNTIME,
                        policy: InputPolicy = InputPolicy()) -> EmotionPredictor:
        """A Hub id or a local folder, through the same `from_pretrained` path for both."""
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        check_runtime(runtime)
        name = str(name_or_path)
        _check_local_model(name)
        modeling_ser.register_auto_classes()
        try:
            model = AutoModelForAudioClassification.from_pretrained(name, dtype=torch.float32)
            feature_extractor = AutoFeatureExtractor.from_pretrained(name)
        except (OSError, ValueError) as err:
            if Path(name).is_dir():
                raise
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FileNotFoundError(
                f"model {name!r} not found: there is no such local folder, and it could not be loaded from the "
                f"Hugging Face Hub ({reason})"
            ) from err
        return cls(model, feature_extractor, runtime=runtime, owns_model=True,  # nobody else holds this model
                   source=name, policy=policy)

    # --- clips ------------------------------------------------------------------------------------------------------

    def classify_batch(self, arrays: list[np.ndarray], speaker_stats: torch.Tensor | None = None
                       ) -> list[dict[str, float]]:
        """Probabilities of every label for each 16 kHz mono clip, in input order. `speaker_stats`: the clips are
        one speaker's, whose `speaker_statistics` a speaker-normalised model normalises them with."""
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)):
            raise ValueError("classify_batch expects a list of 1-D numpy arrays (use classify_array for one clip)")
        clips = []
        for i, array in enumerate(arrays):
            if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind != "f":
                described = f"{type(array).__name__} {getattr(array, 'shape', '')} {getattr(array, 'dtype', '')}"
                raise ValueError(f"clip {i}: expected a 1-D float numpy array of 16 kHz mono samples, got {described}"
                                 " (classify_array converts other rates and channel layouts)")
            clip = np.ascontiguousarray(array, dtype=np.float32)
            self._check_clip(clip, f"clip {i}")
            clips.append(clip)
        return self._as_dicts(self._probabilities(clips, speaker_stats))

    def classify_array(self, array: np.ndarray, sampling_rate: int) -> dict[str, float]:
        """One clip at any rate, mono (n,) or (n, channels); integer PCM is scaled to [-1, 1]."""
        return self._as_dicts(self._probabilities([self.prepare_array(array, sampling_rate)]))[0]

    def classify_with_words(self, array: np.ndarray, sampling_rate: int, language: str | None = None
                            ) -> tuple[dict[str, float], str]:
        """One clip's probabilities (as `classify_array` gives them) and its words, from one encoder pass."""
        from ser.inference.words import emotion_and_words

        probs, texts = emotion_and_words(self, [self.prepare_array(array, sampling_rate)], self.transcriber, language)
        return self._as_dicts(probs)[0], texts[0]

    @property
    def can_transcribe(self) -> bool:
        """Whether words can be asked for: a Whisper model, with converted checkpoints to find its decoder among."""
        from feature_extraction_ser import WhisperEmotionFeatureExtractor
        from ser.inference.words import bundled_folders

        return isinstance(self.feature_extractor, WhisperEmotionFeatureExtractor) and bool(bundled_folders())

    def classify_file(self, path: str | Path) -> dict[str, float]:
        return self._as_dicts(self._probabilities([self.load_file(path)]))[0]

    def prepare_array(self, array: np.ndarray, sampling_rate: int, name: str = "audio") -> np.ndarray:
        """Validated 16 kHz mono float32 from what a caller (e.g. a Gradio microphone) hands over."""
        rate = _check_rate(sampling_rate)
        mono = to_float_mono(array, name)
        self._check_duration(mono.size / rate, name)
        if not np.isfinite(mono).all():
            raise AudioError(f"{name}: audio contains NaN or infinite samples", Reason.NOT_FINITE)
        if rate != self.sampling_rate:
            mono = soxr.resample(mono, rate, self.sampling_rate).astype(np.float32, copy=False)
        self._check_clip(mono, name)
        return mono

    def load_file(self, path: str | Path) -> np.ndarray:
        """Decoded, validated 16 kHz mono. The length is checked from the header first, so an hour-long file is
        refused without being decoded."""
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"expected a file path, got {type(path).__name__}")
        path = Path(path)
        self._check_duration(audio_duration(path), str(path))
        audio = load_audio(path, self.sampling_rate)
        self._check_clip(audio, str(path))
        return audio

    # --- long recordings ---------------------------------------------------------------------------------------------

    def timeline(self, path: str | Path, max_segment_seconds: float = defaults.SEGMENT_SECONDS,
                 smooth_seconds: float = 0.0, words: bool = False, language: str | None = None) -> Iterator[Segment]:
        """The speech segments of a recording, in time order (silence and steady noise between them get no row), each
        classified from its own audio. A segment longer than `max_segment_seconds` becomes equal pieces no longer
        than that; `smooth_seconds` > 0 averages each piece's scores with its neighbours' in the same stretch of
        speech (timelines.smooth). A speaker-normalised model normalises with the whole recording's statistics.
        `words`: each segment's text too, from the Whisper decoder, in the same encoder pass as its emotion (which
        it leaves unchanged); `language` (a code or name) fixes it, else it is detected per segment.

        Arguments and the file's existence are checked now; decoding errors surface while iterating.
        """
        if not (self.min_seconds <= max_segment_seconds <= self.max_seconds):
            raise ValueError(f"max_segment_seconds={max_segment_seconds} must be between {self.min_seconds} and "
                             f"{self.max_seconds} s")
        if smooth_seconds < 0:
            raise ValueError(f"smooth_seconds={smooth_seconds} must be 0 (no smoothing) or positive")
        path = timelines.check_file(path)
        if words:
            self.transcriber.check_language(language)  # a model without a decoder, or a wrong language: said now
        rows = self._timeline_rows(path, int(round(max_segment_seconds * self.sampling_rate)), words, language)
        return iter(timelines.smooth(list(rows), smooth_seconds, self.uncertain_below)) if smooth_seconds else rows

    @property
    def transcriber(self):
        """The Whisper decoder of the checkpoint this model's encoder came from (ser/inference/words.py): loaded once."""
        if self._transcriber is None:
            from ser.inference.words import Transcriber

            self._transcriber = Transcriber.for_emotion_model(self.source if self.source else self)
        return self._transcriber

    def _timeline_rows(self, path: Path, longest: int, words: bool = False, language: str | None = None
                       ) -> Iterator[Segment]:
        stats = RunningStatistics(self.frame_source) if self.frame_source is not None else None
        segments = timelines.find_segments(path, self.detector, self.sampling_rate, also=stats.add if stats else None)
        shortest = int(math.ceil(self.min_seconds * self.sampling_rate))
        segments = [s for s in timelines.pieces(segments, longest) if s.end - s.start >= shortest]
        if not segments:
            raise AudioError(f"{path}: no speech found: the recording is silent, or a steady sound or noise",
                             Reason.NO_SPEECH)
        normalisation = stats.result() if stats and stats.seconds >= self.min_speaker_seconds else None
        size = WORDS_BATCH if words else self.batch_size  # the decoder reads its weights once per step, per batch
        batch: list[tuple[speech.Segment, np.ndarray]] = []
        for piece in timelines.cut(path, segments, self.sampling_rate):
            batch.append(piece)
            if len(batch) == size:
                yield from self._segment_rows(batch, normalisation, words, language)
                batch = []
        yield from self._segment_rows(batch, normalisation, words, language)

    def _segment_rows(self, batch: list[tuple[speech.Segment, np.ndarray]], stats, words: bool = False,
                      language: str | None = None) -> Iterator[Segment]:
        if not batch:
            return
        clips = [audio for _, audio in batch]
        if words:
            from ser.inference.words import emotion_and_words

            probs, texts = emotion_and_words(self, clips, self.transcriber, language, stats)
        else:
            probs, texts = self._probabilities(clips, stats), [None] * len(clips)
        for (segment, _), scores, text in zip(batch, self._as_dicts(probs), texts):
            start, end = segment.seconds(self.sampling_rate)
            yield Segment.of(scores, self.uncertain_below, start=start, end=end, text=text)

    def summarise(self, rows: Iterable[Segment], smooth_seconds: float = 0.0) -> timelines.Summary:
        """A recording's analysis from its timeline: shares of speech time, unsure share, headline."""
        return timelines.summarise(rows, self.uncertain_below, smooth_seconds)

    def plot_timeline(self, summary: timelines.Summary, path: str | Path | None = None, title: str | None = None):
        return timelines.plot(summary, self.labels, path, title)

    # --- internals --------------------------------------------------------------------------------------------------

    def _check_duration(self, seconds: float, name: str) -> None:
        if seconds > self.max_seconds:
            raise AudioError(f"{name}: audio is too long ({seconds:.1f} s > {self.max_seconds:g} s) to classify as "
                             "one clip; use the timeline (EmotionPredictor.timeline, or predict_ser.py --timeline)",
                             Reason.TOO_LONG, seconds=seconds, maximum_seconds=self.max_seconds)

    def _check_clip(self, audio: np.ndarray, name: str) -> None:
        """The checks every clip gets before the model sees it: the model's own (empty, silent, no speech), with
        this predictor's shortest length, and its longest."""
        replace(self.preparation, min_seconds=self.min_seconds).check(audio, name)
        self._check_duration(audio.size / self.sampling_rate, name)

    def is_uncertain(self, scores: dict[str, float]) -> bool:
        """The documented rule (rows.Prediction.of): the top probability (calibrated, where the model was) is below
        `uncertain_below`."""
        return Segment.of(scores, self.uncertain_below).uncertain

    def speaker_statistics(self, clips: list[np.ndarray]) -> torch.Tensor | None:
        """For a speaker-normalised model: statistics (2, ...) of the speech in `clips` (one speaker's), refused under
        `min_speaker_seconds` of speech. Other models normalise without them: a clear error."""
        if self.frame_source is None:
            raise ValueError("this model was not trained with speaker normalisation: it normalises each clip by "
                             "itself, and one speaker's other recordings would change nothing")
        clips = [self.feature_extractor.prepare(clip, refuse=False) for clip in clips]
        stats = RunningStatistics(self.frame_source)
        for clip in clips:
            stats.add(clip)
        if stats.seconds < self.min_speaker_seconds:
            raise ValueError(f"too little speech to adapt to this speaker: {stats.seconds:.1f} s found, "
                             f"{self.min_speaker_seconds:g} s needed; pass more of the speaker's recordings")
        return stats.result()

    def _probabilities(self, clips: list[np.ndarray], stats: torch.Tensor | None = None) -> np.ndarray:
        """Calibrated softmax rows (len(clips), num_labels) in input order; each clip first made what the model's
        training clips were (the feature extractor's `prepare`; checked already, or a recording's segment). `stats`
        (2, F): a speaker-normalised model's statistics for every clip."""
        clips = [self.feature_extractor.prepare(clip, refuse=False) for clip in clips]
        probs = np.empty((len(clips), len(self.labels)), dtype=np.float32)
        for batch in self._batches([clip.size for clip in clips]):
            inputs = self.feature_extractor([clips[i] for i in batch], sampling_rate=self.sampling_rate,
                                            padding=True, return_tensors="pt", prepare_speech=False)
            if stats is not None:
                inputs["normalisation_stats"] = stats.expand(len(batch), *stats.shape)
            with torch.inference_mode():
                logits = self.model(**inputs).logits
            probs[batch] = torch.softmax(logits.float() / self.temperature, dim=-1).numpy()
        return probs

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped for one forward each, by length. Padding is only used where the model ignores it exactly
        (an attention mask and no group norm over time); otherwise only clips of equal length share a batch."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        tolerance = self.max_padding if self.pads_exactly else 0.0
        batches: list[list[int]] = []
        for i in order:
            current = batches[-1] if batches else None
            if (current and len(current) < self.batch_size
                    and lengths[i] <= lengths[current[0]] * (1 + tolerance)):
                current.append(i)
            else:
                batches.append([i])
        return batches

    def _as_dicts(self, probs: np.ndarray) -> list[dict[str, float]]:
        return [dict(zip(self.labels, row.tolist())) for row in probs]


# --- input checks ---------------------------------------------------------------------------------------------------


def _label(id2label: dict, index: int) -> str:
    return str(id2label[index] if index in id2label else id2label[str(index)])


def _check_local_model(name: str) -> None:
    """Turns the usual local mistakes into one clear message before transformers tries the Hub."""
    path = Path(name).expanduser()
    if path.is_file():
        raise FileNotFoundError(f"{name} is a file; a model is a folder with config.json and weights")
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{name} is a folder but holds no config.json: not a saved model")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local and not path.exists():
        raise FileNotFoundError(f"model folder {name} does not exist")


def _check_rate(sampling_rate) -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}")
    return int(sampling_rate)


def _pads_exactly(config, feature_extractor) -> bool:
    """Padding changes nothing only with an attention mask and no normalisation over time in the conv front end."""
    return bool(getattr(feature_extractor, "return_attention_mask", False)) and \
        getattr(config, "feat_extract_norm", "layer") != "group"
