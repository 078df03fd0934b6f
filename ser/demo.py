"""What the demo (app.py) does with audio, apart from showing it: checking a recording and saying what is wrong in
plain words, analysing an upload (one label, or a timeline of speech segments with a summary), and the live
microphone session. No gradio here: app.py lays out the page and turns these results into components.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser import timeline as timelines
from ser.audio import AudioError, audio_duration, load_audio, to_mono
from ser.predictor import EmotionPredictor

MAX_MINUTES = 10  # the longest upload or live session; ten minutes take a few seconds to classify on a small CPU
MAX_SECONDS = MAX_MINUTES * 60
QUIET_DBFS = -40.0  # speech whose loudest moment is below this is accepted, with a note that it was quiet
LIVE_WINDOW_SECONDS = 3.0  # the live meter shows the emotion of the last few seconds of speech
LIVE_HISTORY_SECONDS = 60.0  # the rolling live timeline shows this much

NO_INPUT = "Please upload a recording or use the microphone first."
UNREADABLE = "This file could not be read as audio. Please upload a WAV, FLAC, OGG or MP3 recording of speech."
NO_SPEECH = ("No speech was found: the recording is silent, or holds only a steady sound or noise. Please record a "
             "person speaking, close to the microphone.")


class DemoError(ValueError):
    """An input the demo cannot use; the message is for a person, in plain words, with what to do."""


@dataclass
class Recording:
    path: str
    seconds: float
    audio: np.ndarray | None = None  # the decoded samples, once read (at once for a header without a duration)
    notes: list[str] = field(default_factory=list)  # what a person should know about the input


@dataclass
class Analysis:
    scores: dict[str, float]
    uncertain: bool
    rows: list[dict] | None = None  # smoothed speech segments, for a recording longer than one segment
    notes: list[str] = field(default_factory=list)


def check_recording(path: str | None, sampling_rate: int = EmotionPredictor.sampling_rate) -> Recording:
    """A usable upload, or a DemoError saying what is wrong. The duration comes from the file header when it has
    one, so an over-long upload is refused undecoded; a browser recording sent as webm (no duration) is decoded."""
    if not path:
        raise DemoError(NO_INPUT)
    audio = None
    try:
        seconds = audio_duration(path)
    except AudioError:
        try:
            audio = load_audio(path, sampling_rate)
        except AudioError as err:
            raise DemoError(plain_message(err)) from None
        seconds = audio.size / sampling_rate
    if seconds <= 0:
        raise DemoError("The file holds no sound (0 samples). Please upload a recording of speech.")
    if seconds > MAX_SECONDS:
        raise DemoError(f"The recording is {seconds / 60:.1f} minutes long; the demo takes recordings of up to "
                        f"{MAX_MINUTES} minutes. Please upload a shorter excerpt.")
    recording = Recording(str(path), seconds, audio)
    invalid = invalid_share(path)
    if invalid == 1.0:
        raise DemoError("The file holds no valid sound: every sample is damaged (not a number). Please export the "
                        "recording again.")
    if invalid > 0:
        recording.notes.append(f"{invalid:.1%} of the samples were damaged (not a number) and were treated as "
                               "silence.")
    return recording


def invalid_share(path: str | Path) -> float:
    """The share of non-finite samples in a file soundfile can read (float WAV, FLAC...); 0 for others, whose codecs
    cannot store them. ser.audio sets such samples to zero; a person should know that part of the file was lost."""
    try:
        handle = sf.SoundFile(str(path))
    except Exception:  # compressed formats decoded by ffmpeg: no NaN possible
        return 0.0
    bad = total = 0
    with handle:
        for block in handle.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
            bad += int(np.count_nonzero(~np.isfinite(block)))
            total += block.size
    return bad / total if total else 0.0


def plain_message(error: Exception) -> str:
    """The predictor's or decoder's message for a developer, said for a person (no paths, no dBFS)."""
    text = str(error).lower()
    if "too short" in text:
        return (f"The recording is too short. Please record at least {EmotionPredictor.min_seconds:g} s of speech "
                "(a sentence is best).")
    if "silent" in text or "no speech" in text:
        return NO_SPEECH
    if "no finite" in text or "nan" in text:
        return "The file holds no valid sound (the samples are damaged). Please export the recording again."
    if "empty" in text:
        return "The file holds no sound (0 samples). Please upload a recording of speech."
    return UNREADABLE


def analyse(predictor: EmotionPredictor, recording: Recording, segment_seconds: float,
            smooth_seconds: float) -> Analysis:
    """One label for a recording; a recording longer than one segment also gets its timeline, and its label is then
    the mean of its segments' scores weighted by their duration (so the label sums up what the timeline shows)."""
    try:
        if recording.seconds <= segment_seconds:
            if recording.audio is None:  # decoded once: the quiet-speech note below reads the same samples
                recording.audio = predictor.load_file(recording.path)
            scores = predictor.classify_array(recording.audio, predictor.sampling_rate)
            rows = None
        else:
            raw = list(predictor.timeline(recording.path, segment_seconds))
            scores = weighted_scores(raw)
            rows = timelines.smooth(raw, smooth_seconds)
    except ValueError as err:  # AudioError is a ValueError: silent, too short, unreadable
        raise DemoError(plain_message(err)) from None
    notes = list(recording.notes)
    peak = speech_peak_dbfs(recording)
    if peak is not None and peak < QUIET_DBFS:
        notes.append("The recording is very quiet; the result may be less reliable. Speaking closer to the microphone "
                     "helps.")
    uncertain = predictor.is_uncertain(scores)
    # A long recording's mean is often flat because its emotion changes; its summary says how much of it is unsure
    if uncertain and rows is None:
        notes.append(f"The model is unsure: no emotion reaches {predictor.uncertain_below:.0%}.")
    return Analysis(scores, uncertain, rows, notes)


def weighted_scores(rows: list[dict]) -> dict[str, float]:
    labels = list(rows[0]["scores"])
    weights = np.array([row["end"] - row["start"] for row in rows])
    scores = np.array([[row["scores"][label] for label in labels] for row in rows])
    return dict(zip(labels, ((scores * weights[:, None]).sum(axis=0) / weights.sum()).tolist()))


def speech_peak_dbfs(recording: Recording) -> float | None:
    """The loudest sample of a recording up to a minute long (the quiet-speech note); None for longer ones, which
    are not decoded whole just for a note."""
    if recording.audio is None and recording.seconds > 60:
        return None
    audio = recording.audio if recording.audio is not None else load_audio(recording.path)
    peak = float(np.abs(audio).max())
    return 20 * math.log10(peak) if peak > 0 else None


# --- presenting an analysis ------------------------------------------------------------------------------------------


def summary_text(analysis: Analysis, seconds: float) -> str:
    """Markdown: how much of the recording is speech and the share of speech time per emotion."""
    if not analysis.rows:
        return ""
    summary = timelines.summary(analysis.rows)
    shares = " · ".join(f"{label} {share:.0%}" for label, share in summary["share"].items())
    unsure = sum(row["end"] - row["start"] for row in analysis.rows if row["uncertain"]) / summary["speech_seconds"]
    return (f"**Speech:** {clock(summary['speech_seconds'])} of {clock(seconds)}, in {len(analysis.rows)} "
            f"segments.  \n**Time per emotion:** {shares}.  \n**Unsure:** {unsure:.0%} of the speech time.")


def clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def timeline_table(rows: list[dict]) -> dict[str, list]:
    """Columns for a line plot, one point per segment middle: the probability of every emotion that is the top
    label somewhere (the others would only crowd the legend). Minutes on the time axis past two minutes."""
    shown = list(timelines.summary(rows)["share"])
    in_minutes = rows[-1]["end"] > 120
    table = {"time": [], "emotion": [], "probability": []}
    for row in rows:
        middle = (row["start"] + row["end"]) / 2
        for label in shown:
            table["time"].append(round(middle / 60 if in_minutes else middle, 3))
            table["emotion"].append(label)
            table["probability"].append(round(row["scores"][label], 4))
    return table


def time_axis_title(rows: list[dict]) -> str:
    return "time (min)" if rows[-1]["end"] > 120 else "time (s)"


def write_segments(rows: list[dict], name: str) -> Path:
    """The segments as CSV in a fresh temporary folder, named after the recording, for download."""
    folder = Path(tempfile.mkdtemp(prefix="ser-segments-"))
    return timelines.write(rows, folder / f"{Path(name).stem}-segments.csv")


# --- live microphone ---------------------------------------------------------------------------------------------


class LiveSession:
    """One person's live microphone: the audio so far (at most MAX_SECONDS, resampled as it arrives) and the
    emotion of the last LIVE_WINDOW_SECONDS after each chunk."""

    def __init__(self, rate: int, sampling_rate: int = EmotionPredictor.sampling_rate):
        self.rate = rate
        self.sampling_rate = sampling_rate
        self.resampler = None if rate == sampling_rate else soxr.ResampleStream(rate, sampling_rate, 1,
                                                                                dtype="float32")
        self.chunks: list[np.ndarray] = []
        self.samples = 0
        self.rows: list[dict] = []  # {"start", "end", "label", "scores"} of each window with speech

    @property
    def seconds(self) -> float:
        return self.samples / self.sampling_rate

    def add(self, rate: int, chunk: np.ndarray) -> None:
        if rate != self.rate:
            raise DemoError("The microphone changed its sampling rate mid-recording. Please start again.")
        audio = as_float(chunk)
        if self.resampler is not None:
            audio = self.resampler.resample_chunk(audio)
        room = int(MAX_SECONDS * self.sampling_rate) - self.samples
        self.chunks.append(audio[:room])
        self.samples += min(audio.size, room)

    def listen(self, predictor: EmotionPredictor) -> dict | None:
        """Classifies the last window; its row, or None while there is no speech in it."""
        window = self.last(LIVE_WINDOW_SECONDS)
        try:
            scores = predictor.classify_array(window, self.sampling_rate)
        except ValueError:  # silence, noise or still too short: the meter waits for speech
            return None
        row = {"start": max(0.0, self.seconds - LIVE_WINDOW_SECONDS), "end": self.seconds,
               "label": max(scores, key=scores.get), "scores": scores}
        self.rows.append(row)
        return row

    def last(self, seconds: float) -> np.ndarray:
        want = int(seconds * self.sampling_rate)
        tail, have = [], 0
        for chunk in reversed(self.chunks):
            tail.append(chunk)
            have += chunk.size
            if have >= want:
                break
        return np.concatenate(tail[::-1])[-want:] if tail else np.zeros(0, dtype=np.float32)

    def recent_rows(self) -> list[dict]:
        return [row for row in self.rows if row["end"] >= self.seconds - LIVE_HISTORY_SECONDS]

    def save(self) -> Recording:
        """The whole session as a WAV file, to be analysed like an upload when the person stops."""
        folder = Path(tempfile.mkdtemp(prefix="ser-live-"))
        path = folder / "live-recording.wav"
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)
        sf.write(path, audio, self.sampling_rate, subtype="PCM_16")
        return Recording(str(path), audio.size / self.sampling_rate)


def as_float(chunk: np.ndarray) -> np.ndarray:
    """Browser microphone chunks (int16, mono or (samples, channels)) as mono float32 in [-1, 1]."""
    chunk = np.asarray(chunk)
    if np.issubdtype(chunk.dtype, np.integer):
        chunk = chunk.astype(np.float32) / np.iinfo(chunk.dtype).max
    chunk = chunk.astype(np.float32, copy=False)
    return to_mono(chunk) if chunk.ndim == 2 else chunk
