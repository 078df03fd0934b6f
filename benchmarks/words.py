"""Words per segment (ser/inference/words.py): word error rate and speed of the Whisper decoder reading the encoder pass that
gives the emotion (shared) against a separate run on 30 s-padded input (stock Whisper), and a 10-minute recording
with emotion and words per segment.

    python benchmarks/words.py --reps 2 --paths shared padded clip-length --emotion-only   # the README's table
    python benchmarks/words.py --sizes base --paths shared bare decoder-padding --minutes 0 --name words-ablation
    python benchmarks/words.py --sizes base --corpora ravdess --clips 160 --minutes 0 --name words-ravdess160
    python benchmarks/words.py --quick             # base, 20 clips per corpus, a 1-minute recording

Clips: 40 RAVDESS clips (20 of each sentence, "Kids are talking by the door" / "Dogs are sitting by the door") and
40 Emo-DB clips (4 of each of its ten sentences), drawn with a fixed seed across speakers and emotions. WER is the
corpus-level rate over words lower-cased, punctuation stripped, German ß and umlauts spelt out on both sides
(ser.inference.words.normalise). Greedy decoding, the language detected per clip (tiny.en is English-only: RAVDESS only).
The clip-length paths decode each clip as the emotion model hears it (feature_extraction_ser: trimmed to its speech
and levelled; the default model for base, models/ser-whisper-ravdess for tiny.en); the padded path decodes the clip
as it is, padded to 30 s, as stock Whisper does. Time per minute of audio: each path's whole work on the clips,
batched, the median of `--reps` runs, the paths interleaved; "shared" and "padded" both give emotion and words
(one pass; the plain predictor plus the padded transcription), the others words alone.

The recording: real clips of Emo-DB, RAVDESS and EMOVO in shuffled order with 1 s of silence between them, up to
`--minutes`; timed from the file to every segment's emotion and words (speech detection, cutting into segments of
at most 6 s, the shared pass, decoding), as predict_ser.py --timeline --words would run it, the padding's keys
computed on first use included; `--emotion-only` also times the predictor's timeline without words.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser.inference import words
from ser.core.audio import SAMPLING_RATE, load_audio
from ser.data.corpora import load_emodb, load_emovo, load_ravdess
from _common import DATA, ROOT, median, table, write_result  # noqa: I001

SIZES = {"base": ("encoders/whisper-base", "models/ser-whisper-mixture"),
         "tiny.en": ("encoders/whisper-tiny.en", "models/ser-whisper-ravdess")}
RAVDESS_TEXTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
EMODB_TEXTS = {  # ../shared/data/README.md
    "a01": "Der Lappen liegt auf dem Eisschrank.", "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.", "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen."}
OUTSIDE = {"ravdess": 0.025, "emodb": 0.120}  # base, greedy, 30 s-padded, 40 clips each, measured outside the project
TARGETS = {"ravdess": 0.05, "emodb": 0.15}
COLUMNS = ["size", "corpus", "path", "emotion", "clips", "wer", "s_per_audio_min", "outside_padded_wer"]


def corpus_clips(corpus: str, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(path, reference text): the same number of clips of each sentence, spread over speakers by a fixed seed."""
    if corpus == "ravdess":
        clips, texts = load_ravdess(DATA / "ravdess"), RAVDESS_TEXTS
    else:
        clips, texts = load_emodb(DATA / "emodb"), EMODB_TEXTS
    rng = random.Random(seed)
    chosen = []
    per_text = count // len(texts)
    for key, text in texts.items():
        chosen += [(c.path, text) for c in rng.sample(sorted((c for c in clips if c.text == key),
                                                           key=lambda c: c.path), per_text)]
    return chosen


def recording(minutes: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """Real clips of the three corpora, shuffled, 1 s of silence between them, up to `minutes` long."""
    clips = [*load_emodb(DATA / "emodb"), *load_ravdess(DATA / "ravdess"), *load_emovo(DATA / "emovo")]
    random.Random(seed).shuffle(clips)
    pause = np.zeros(SAMPLING_RATE, dtype=np.float32)
    parts, total, count = [pause], pause.size, 0
    for clip in clips:
        audio = load_audio(clip.path)
        if total + audio.size + pause.size > minutes * 60 * SAMPLING_RATE:
            break
        parts += [audio, pause]
        total += audio.size + pause.size
        count += 1
    return np.concatenate(parts), count


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


PATHS = {  # path: what gives the emotion
    "shared": "same pass",  # ser.inference.words.emotion_and_words: one encoder pass, the padding's keys above the head's layer
    "padded": "plain predictor",  # stock Whisper on each clip padded to 30 s, and the plain predictor
    "clip-length": "none",  # words alone: the clip-length encoder with every layer over the padding's keys
    "bare": "none",  # ablation: the clip-length encoder output alone, nothing of the padding anywhere
    "decoder-padding": "none",  # ablation: the bare output, the decoder also attending to the padding's output
}


def corpus_rows(args, size: str, transcriber, predictor, corpus: str) -> tuple[list[dict], dict]:
    """WER and time per minute of audio of each path on one corpus's clips."""
    chosen = corpus_clips(corpus, args.clips)
    raw = [load_audio(path) for path, _ in chosen]
    references = [text for _, text in chosen]
    minutes = sum(clip.size for clip in raw) / SAMPLING_RATE / 60

    def prepared():
        return [predictor.feature_extractor.prepare(clip, refuse=False) for clip in raw]

    def without_padding(decoder_padding: bool):
        """The whole clip-length encoder as it is (no padding's keys in it), in batches."""
        clips, texts = prepared(), [""] * len(raw)
        for first in range(0, len(clips), words.BATCH_SIZE):
            batch = clips[first:first + words.BATCH_SIZE]
            inputs = transcriber.clip_features(batch, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="pt",
                                               prepare_speech=False)
            with torch.inference_mode():
                out = transcriber._exact_encoder(transcriber.layers)(inputs["input_features"],
                                                                     attention_mask=inputs["attention_mask"])
            pads = words.pad_values(inputs["input_features"], inputs["attention_mask"]) if decoder_padding else None
            encoded = words.Encoded(out.last_hidden_state, out.frame_mask, pads)
            texts[first:first + len(batch)] = transcriber.decode(encoded, [c.size / SAMPLING_RATE for c in batch])
        return None, texts

    runs = {"shared": lambda: words.emotion_and_words(predictor, raw, transcriber, padded=False),
            "padded": lambda: (predictor._probabilities(raw), transcriber.transcribe(raw, padded=True)),
            "clip-length": lambda: (None, transcriber.transcribe(prepared(), padded=False)),
            "bare": lambda: without_padding(False),
            "decoder-padding": lambda: without_padding(True)}
    paths = [name for name in PATHS if name in args.paths]
    texts, seconds, probabilities = {}, {name: [] for name in paths}, {}
    for _ in range(args.reps):  # interleaved, so a load burst hits the paths alike
        for name in paths:
            (probabilities[name], texts[name]), spent = timed(runs[name])
            seconds[name].append(spent)
    rows = []
    for name in paths:
        rows.append({"size": size, "corpus": corpus, "path": name, "emotion": PATHS[name], "clips": len(raw),
                     "wer": words.word_error_rate(references, texts[name]),
                     "s_per_audio_min": median(seconds[name]) / minutes,
                     "outside_padded_wer": OUTSIDE[corpus] if size == "base" else None})
    details = {"clips": [Path(p).name for p, _ in chosen], "references": references, "texts": texts,
               "seconds": seconds, "audio_minutes": minutes}
    if "shared" in paths and "padded" in paths:
        shared, plain = probabilities["shared"], probabilities["padded"]
        details["same_emotions_shared_vs_plain"] = bool(np.array_equal(shared.argmax(-1), plain.argmax(-1)))
        details["max_probability_difference"] = float(np.abs(shared - plain).max())
    return rows, details


def long_recording(args, predictor, transcriber) -> dict:
    """The recording's segments with emotion and words, from the file (as the timeline reads it)."""
    from ser.inference import timeline as timelines

    audio, count = recording(args.minutes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recording.wav"
        sf.write(path, audio, SAMPLING_RATE, subtype="PCM_16")
        start = time.perf_counter()
        segments = timelines.find_segments(path, predictor.detector, SAMPLING_RATE)
        segments = timelines.pieces(segments, int(6.0 * SAMPLING_RATE))
        detected = time.perf_counter() - start
        pieces = list(timelines.cut(path, segments, SAMPLING_RATE))
        texts, labels = [], []
        for first in range(0, len(pieces), 64):
            batch = pieces[first:first + 64]
            probabilities, batch_texts = words.emotion_and_words(predictor, [a for _, a in batch], transcriber)
            texts += batch_texts
            labels += [predictor.labels[i] for i in probabilities.argmax(-1)]
        total = time.perf_counter() - start
        emotion_only = None
        if args.emotion_only:
            start = time.perf_counter()
            list(predictor.timeline(path))
            emotion_only = time.perf_counter() - start
    return {"audio_minutes": audio.size / SAMPLING_RATE / 60, "clips": count, "segments": len(pieces),
            "seconds_with_words": total, "seconds_speech_detection": detected,
            "seconds_emotion_only_timeline": emotion_only, "sample_texts": texts[:10], "sample_labels": labels[:10]}


def cpu_flags() -> list[str]:
    out = subprocess.run(["bash", "-c", r"grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*\|avx2' /proc/cpuinfo | sort -u"],
                         capture_output=True, text=True)
    return out.stdout.split()


def main() -> None:
    from ser.inference.predictor import EmotionPredictor

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--corpora", nargs="*", default=["ravdess", "emodb"], choices=["ravdess", "emodb"],
                        help="corpora for the word error rates (none: the recording alone)")
    parser.add_argument("--clips", type=int, default=40, help="clips per corpus (a multiple of 20)")
    parser.add_argument("--reps", type=int, default=2, help="timed runs of each path (the WER is the same each time)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the recording (0: none)")
    parser.add_argument("--paths", nargs="+", default=["shared", "padded"], choices=list(PATHS),
                        help="shared: emotion_and_words; padded: plain predictor + stock 30 s-padded words; "
                             "clip-length: words alone, every layer over the padding's keys; bare, decoder-padding: "
                             "ablations without the padding's keys (anywhere / in the encoder)")
    parser.add_argument("--emotion-only", action="store_true", help="also time the recording's timeline without words")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--quick", action="store_true", help="base, 20 clips per corpus, 1 reps, a 1-minute recording")
    parser.add_argument("--name", default="words", help="results/<name>.json")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.clips, args.reps, args.minutes = ["base"], 20, 1, 1.0
    torch.set_num_threads(args.threads)

    rows, details, long = [], {}, None
    for size in args.sizes:
        checkpoint, model = SIZES[size]
        predictor = EmotionPredictor.from_pretrained(ROOT / model, runtime="fp32")
        transcriber = words.Transcriber.for_emotion_model(ROOT / model)
        assert transcriber.source.resolve() == (ROOT / checkpoint).resolve(), transcriber.source
        for corpus in [c for c in args.corpora if transcriber.multilingual or c == "ravdess"]:
            found, details[f"{size}/{corpus}"] = corpus_rows(args, size, transcriber, predictor, corpus)
            rows += found
            print(table(found, COLUMNS,
                        {"wer": ".3f", "s_per_audio_min": ".2f"}), flush=True)
        if size == "base" and args.minutes:
            long = long_recording(args, predictor, transcriber)
            print(f"recording: {long['audio_minutes']:.1f} min, {long['segments']} segments, emotion and words in "
                  f"{long['seconds_with_words']:.1f} s ({args.threads} thread(s))", flush=True)
    print()
    print(table(rows, COLUMNS,
                {"wer": ".3f", "s_per_audio_min": ".2f"}))
    write_result("words", {"threads": args.threads, "cpu_flags_grep": cpu_flags(), "shared_words": words.SHARED_WORDS,
                           "targets_base": TARGETS, "rows": rows, "recording": long, "details": details},
                 quick=args.quick, name=args.name)


if __name__ == "__main__":
    main()
