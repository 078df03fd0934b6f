"""Do a long recording's segments say what the same audio says alone? Clips of the three corpora, mixed emotions in
shuffled order, are joined with pauses into one recording; its timeline (as the demo shows it: the default segment
length and smoothing) is compared with each clip classified alone and with each segment's own audio classified
alone. Also checks that the summary's unsure share is the share of speech time whose plotted top score is below the
threshold.

    python benchmarks/timeline_agreement.py                          # 48 clips, 16 per corpus, the default model
    python benchmarks/timeline_agreement.py --clips-per-corpus 30 --pause 0.5 --model models/ser-whisper-emodb

Writes benchmarks/results/timeline-agreement.json and prints a table.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from _common import DATA, ROOT, table, write_result
from ser.core import defaults
from ser.core.audio import SAMPLING_RATE, load_audio
from ser.data.corpora import load_corpus
from ser.inference.predictor import EmotionPredictor

CORPORA = ("emodb", "ravdess", "emovo")


def pick(clips_per_corpus: int, labels: list[str], seed: int) -> list:
    """Clips of each corpus, spread over the model's emotions, in one shuffled order."""
    rng = random.Random(seed)
    chosen = []
    for name in CORPORA:
        clips = [clip for clip in load_corpus(name, DATA / name) if clip.label in labels]
        rng.shuffle(clips)
        by_label = {label: [c for c in clips if c.label == label] for label in labels}
        while len([c for c in chosen if c.corpus == name]) < clips_per_corpus and any(by_label.values()):
            for label in labels:
                if by_label[label] and len([c for c in chosen if c.corpus == name]) < clips_per_corpus:
                    chosen.append(by_label[label].pop())
    rng.shuffle(chosen)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / defaults.DEFAULT_MODEL))
    parser.add_argument("--clips-per-corpus", type=int, default=16)
    parser.add_argument("--pause", type=float, default=1.0, help="digital silence between clips (s)")
    parser.add_argument("--smooth", type=float, default=defaults.SMOOTH_SECONDS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    predictor = EmotionPredictor.from_pretrained(args.model)
    clips = pick(args.clips_per_corpus, predictor.labels, args.seed)
    pause = np.zeros(int(args.pause * SAMPLING_RATE), dtype=np.float32)
    audio, spans = [], []
    at = 0
    for clip in clips:
        samples = load_audio(clip.path, SAMPLING_RATE)
        spans.append((at, at + samples.size))
        audio += [samples, pause]
        at += samples.size + pause.size
    recording = np.concatenate(audio)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.wav"
        sf.write(path, recording, SAMPLING_RATE, subtype="FLOAT")
        summary = predictor.summarise(predictor.timeline(path, defaults.SEGMENT_SECONDS), args.smooth)
    alone = [predictor.classify_file(clip.path) for clip in clips]
    clip_labels = [max(scores, key=scores.get) for scores in alone]

    agree_clip = agree_audio = 0
    for segment in summary.segments:
        a, b = int(round(segment.start * SAMPLING_RATE)), int(round(segment.end * SAMPLING_RATE))
        inside = max(range(len(spans)), key=lambda i: min(b, spans[i][1]) - max(a, spans[i][0]))
        agree_clip += segment.label == clip_labels[inside]
        own = predictor.classify_array(recording[a:b], SAMPLING_RATE)
        agree_audio += segment.label == max(own, key=own.get)
    below = sum(s.seconds for s in summary.segments if max(s.scores.values()) < predictor.uncertain_below)
    row = {"clips": len(clips), "segments": len(summary.segments), "minutes": recording.size / SAMPLING_RATE / 60,
           "agree_with_clip_alone": agree_clip / len(summary.segments),
           "agree_with_segment_audio_alone": agree_audio / len(summary.segments),
           "clips_right_alone": float(np.mean([label == clip.label for label, clip in zip(clip_labels, clips)])),
           "unsure_share": summary.unsure_share, "plotted_share_below_threshold": below / summary.speech_seconds}
    print(table([row], list(row), {"minutes": ".2f"}))
    write_result("timeline-agreement", {"model": args.model, "settings": vars(args), "result": row})


if __name__ == "__main__":
    main()
