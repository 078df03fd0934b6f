"""What the demo (app.py) does with audio, apart from showing it: checking a recording and saying what is wrong in
plain words, analysing an upload (one label, or a timeline of speech segments with a summary), and the live
microphone session. No gradio here: app.py lays out the page and turns these results into components.
"""

from __future__ import annotations

import math
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser.inference import rows
from ser.inference import timeline as timelines
from ser.core.audio import AudioError, Reason, audio_duration, load_audio, to_float_mono
from ser.inference.predictor import EmotionPredictor
from ser.inference.rows import Prediction, Segment

MAX_MINUTES = 10  # the longest upload or live session; ten minutes take a few seconds to classify on a small CPU
MAX_SECONDS = MAX_MINUTES * 60
QUIET_DBFS = -40.0  # speech whose loudest moment is below this is accepted, with a note that it was quiet
LIVE_WINDOW_SECONDS = 3.0  # the live meter shows the emotion of the last few seconds of speech
LIVE_FIRST_SECONDS = 1.0  # ... once it has heard at least this much
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
    """What the page shows: for a clip, the probability of each emotion; for a recording with more than one speech
    segment, its timeline's summary (`recording`), whose scores are then the share of speech time each emotion is
    on top. A recording with a single speech segment is shown as that clip: padding does not change the measure."""

    scores: dict[str, float]
    uncertain: bool
    headline: str  # the top emotion, or a recording's (timelines.MIXED where none holds half of the speech time)
    recording: timelines.Summary | None = None
    notes: list[str] = field(default_factory=list)
    text: str | None = None  # a clip's words, where asked for (a recording's are in its segments)

    @property
    def measure(self) -> str:
        return "probability" if self.recording is None else "share of speech time"

    @classmethod
    def of_clip(cls, clip: Prediction, uncertain_below: float, text: str | None = None) -> Analysis:
        notes = [f"The model is unsure: no emotion reaches {uncertain_below:.0%}."] if clip.uncertain else []
        return cls(clip.scores, clip.uncertain, clip.label, notes=notes, text=getattr(clip, "text", None) or text)

    @classmethod
    def of_recording(cls, summary: timelines.Summary, labels: list[str]) -> Analysis:
        """Unsure when more than half of the speech time is."""
        notes = [f"The model is unsure for {summary.unsure_share:.0%} of the speech time: no emotion reaches "
                 f"{summary.uncertain_below:.0%} there."] if summary.unsure_share > 0.5 else []
        return cls({label: summary.shares.get(label, 0.0) for label in labels}, summary.unsure_share > 0.5,
                   summary.headline, summary, notes)


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
        raise DemoError(PLAIN_WORDS[Reason.EMPTY])
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
    cannot store them. ser.core.audio sets such samples to zero; a person should know that part of the file was lost."""
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
    """Why a recording was refused (`AudioError.reason`), said for a person: no paths, no dBFS; the minimum length is
    the model's own."""
    reason = getattr(error, "reason", Reason.UNREADABLE)
    if reason is Reason.TOO_SHORT:
        return (f"The recording is too short. Please record at least {error.details['minimum_seconds']:g} s of speech "
                "(a sentence is best).")
    return PLAIN_WORDS[reason]


PLAIN_WORDS = {
    Reason.UNREADABLE: UNREADABLE,
    Reason.EMPTY: "The file holds no sound (0 samples). Please upload a recording of speech.",
    Reason.NOT_FINITE: "The file holds no valid sound (the samples are damaged). Please export the recording again.",
    Reason.TOO_LONG: "The recording is too long to classify in one piece. Please upload a shorter one.",
    Reason.SILENT: NO_SPEECH,
    Reason.NO_SPEECH: NO_SPEECH,
}


def analyse(predictor: EmotionPredictor, recording: Recording, segment_seconds: float,
            smooth_seconds: float, words: bool = False) -> Analysis:
    """A clip's probabilities; a longer recording's timeline summary, or the probabilities of its one speech
    segment where it has only one. `words`: what was said too (in the same encoder pass as the emotion)."""
    try:
        if recording.seconds <= segment_seconds:
            if recording.audio is None:  # decoded once: the quiet-speech note below reads the same samples
                recording.audio = predictor.load_file(recording.path)
            rate, text = predictor.sampling_rate, None
            if words:
                scores, text = predictor.classify_with_words(recording.audio, rate)
            else:
                scores = predictor.classify_array(recording.audio, rate)
            analysis = Analysis.of_clip(Prediction.of(scores, predictor.uncertain_below), predictor.uncertain_below,
                                        text)
        else:
            segments = list(predictor.timeline(recording.path, segment_seconds, words=words))
            analysis = (Analysis.of_clip(segments[0], predictor.uncertain_below) if len(segments) == 1 else
                        Analysis.of_recording(predictor.summarise(segments, smooth_seconds), predictor.labels))
    except ValueError as err:  # AudioError is a ValueError: silent, too short, unreadable
        raise DemoError(plain_message(err)) from None
    peak = speech_peak_dbfs(recording)
    quiet = ["The recording is very quiet; the result may be less reliable. Speaking closer to the microphone helps."]
    analysis.notes = recording.notes + (quiet if peak is not None and peak < QUIET_DBFS else []) + analysis.notes
    return analysis


def speech_peak_dbfs(recording: Recording) -> float | None:
    """The loudest sample of a recording up to a minute long (the quiet-speech note); None for longer ones, which
    are not decoded whole just for a note."""
    if recording.audio is None and recording.seconds > 60:
        return None
    audio = recording.audio if recording.audio is not None else load_audio(recording.path)
    peak = float(np.abs(audio).max())
    return 20 * math.log10(peak) if peak > 0 else None


# --- presenting an analysis ------------------------------------------------------------------------------------------


def summary_text(summary: timelines.Summary, seconds: float, colors: dict[str, str] | None = None) -> str:
    """Markdown: how much of the recording is speech, the share of speech time per emotion (given `colors`, each with
    its colour in the timeline: the plot's legend, which wraps on a narrow screen) and the unsure share, all read
    from the scores the plot draws."""
    shares = " · ".join(f"{swatch(label, colors)}{label} {share:.0%}" for label, share in summary.shares.items())
    return (f"**Speech:** {clock(summary.speech_seconds)} of {clock(seconds)}, in {len(summary.segments)} "
            f"segments.  \n**Share of the speech time each emotion is on top:** {shares}.  \n**Unsure** (no "
            f"emotion reaches {summary.uncertain_below:.0%}): {summary.unsure_share:.0%} of the speech time.")


def swatch(label: str, colors: dict[str, str] | None) -> str:
    return f'<span class="swatch" style="color: {colors[label]}">■</span> ' if colors else ""


def legend_text(rows: list[Segment], colors: dict[str, str]) -> str:
    """The plot's legend as text: each emotion `timeline_table` draws, with its colour."""
    return " · ".join(f"{swatch(label, colors)}{label}" for label in plotted_emotions(rows))


def plotted_emotions(rows: list[Segment]) -> list[str]:
    """The emotions that are the top label somewhere, most speech time first (the others would only crowd a plot)."""
    return list(timelines.top_time(rows))


def headline_text(analysis: Analysis) -> str:
    """Markdown: the result in one line, saying what its percentage measures."""
    if analysis.recording is None:
        said = f"  \n**Words:** “{analysis.text}”" if analysis.text else ""
        return (f"**{analysis.headline.capitalize()}:** the model gives it a probability of "
                f"{analysis.scores[analysis.headline]:.0%}.{said}")
    if analysis.headline == timelines.MIXED:
        return "**Mixed emotions:** none is on top for half of the speech time."
    return (f"**Mostly {analysis.headline}:** on top for {analysis.scores[analysis.headline]:.0%} of the speech "
            "time.")


def clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def timeline_table(rows: list[Segment]) -> dict[str, list]:
    """Columns for a line plot: each segment's probabilities held from its start to its end (two points), for every
    emotion that is the top label somewhere (the others would only crowd the legend); time in seconds; the words,
    where there are any, for the hover."""
    shown = plotted_emotions(rows)
    table = {"time": [], "emotion": [], "probability": [], "words": []}
    for row in rows:
        for time in (row.start, row.end):
            for label in shown:
                table["time"].append(round(time, 3))
                table["emotion"].append(label)
                table["probability"].append(round(row.scores[label], 4))
                table["words"].append(row.text or "")
    return table


def write_segments(summary: timelines.Summary, labels: list[str], name: str, words: bool = False) -> Path:
    """The segments as the plot draws them, as CSV in a fresh temporary folder, named after the recording."""
    path = Path(tempfile.mkdtemp(prefix="ser-segments-")) / f"{Path(name).stem}-segments.csv"
    rows.write(summary.segments, labels, path, words)
    return path


# --- live microphone ---------------------------------------------------------------------------------------------


class LiveSession:
    """One person's live microphone: the audio so far (at most MAX_SECONDS, resampled as it arrives) and the
    emotion of the last LIVE_WINDOW_SECONDS each time the page looks. Audio arrives on one thread while the page
    looks from another: `lock` keeps the samples and their count together."""

    def __init__(self, rate: int, sampling_rate: int = EmotionPredictor.sampling_rate):
        self.rate = rate
        self.sampling_rate = sampling_rate
        self.resampler = None if rate == sampling_rate else soxr.ResampleStream(rate, sampling_rate, 1,
                                                                                dtype="float32")
        self.chunks: list[np.ndarray] = []
        self.samples = 0
        self.rows: list[Segment] = []  # each window with speech
        self.lock = threading.RLock()
        self.finished = False  # no audio after `finish`

    @property
    def seconds(self) -> float:
        return self.samples / self.sampling_rate

    def add(self, rate: int, chunk: np.ndarray) -> None:
        if rate != self.rate:
            raise DemoError("The microphone changed its sampling rate mid-recording. Please start again.")
        self._keep(as_float(chunk))

    def finish(self) -> None:
        """The resampler's last samples (it holds ~25 ms back until told that nothing more comes); later audio is
        ignored."""
        self._keep(np.zeros(0, np.float32), last=True)

    def _keep(self, audio: np.ndarray, last: bool = False) -> None:
        with self.lock:
            if self.finished:
                return
            self.finished = last
            if self.resampler is not None:
                audio = self.resampler.resample_chunk(audio, last=last)
            room = int(MAX_SECONDS * self.sampling_rate) - self.samples
            self.chunks.append(audio[:room])
            self.samples += min(audio.size, room)

    def listen(self, predictor: EmotionPredictor) -> Segment | None:
        """Classifies the last window; its row, or None before LIVE_FIRST_SECONDS or while there is no speech. With
        nothing new since the last look, the last row again."""
        with self.lock:
            seconds, window = self.seconds, self.last(LIVE_WINDOW_SECONDS)
            if self.rows and self.rows[-1].end == seconds:
                return self.rows[-1]
        if seconds < LIVE_FIRST_SECONDS:
            return None
        try:
            scores = predictor.classify_array(window, self.sampling_rate)
        except ValueError:  # silence, noise or still too short: the meter waits for speech
            return None
        row = Segment.of(scores, predictor.uncertain_below, start=max(0.0, seconds - LIVE_WINDOW_SECONDS),
                         end=seconds)
        with self.lock:
            self.rows.append(row)
        return row

    def last(self, seconds: float) -> np.ndarray:
        want = int(seconds * self.sampling_rate)
        tail, have = [], 0
        with self.lock:
            for chunk in reversed(self.chunks):
                tail.append(chunk)
                have += chunk.size
                if have >= want:
                    break
        return np.concatenate(tail[::-1])[-want:] if tail else np.zeros(0, dtype=np.float32)

    def recent_rows(self) -> list[Segment]:
        with self.lock:
            return [row for row in self.rows if row.end >= self.seconds - LIVE_HISTORY_SECONDS]

    def save(self) -> Recording:
        """The whole session as a WAV file, to be analysed like an upload when the person stops: every sample it
        heard, its resampler flushed."""
        self.finish()
        folder = Path(tempfile.mkdtemp(prefix="ser-live-"))
        path = folder / "live-recording.wav"
        with self.lock:
            audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)
        sf.write(path, audio, self.sampling_rate, subtype="PCM_16")
        return Recording(str(path), audio.size / self.sampling_rate)


def as_float(chunk: np.ndarray) -> np.ndarray:
    """Browser microphone chunks (int16, mono or (samples, channels)) as mono float32, scaled as the predictor scales
    PCM; an empty chunk is no audio yet."""
    chunk = np.asarray(chunk)
    return np.zeros(0, np.float32) if chunk.size == 0 else to_float_mono(chunk, "microphone")
