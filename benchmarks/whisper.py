"""CPU speed of WhisperForEmotion (Whisper's encoder at the clip's own length) against stock
WhisperForAudioClassification (every clip padded to 30 s), with the same random encoder and head weights.

    python benchmarks/whisper.py                   # tiny and base sizes, 4 s clips, 1 warm-up + 5 repetitions
    python benchmarks/whisper.py --seconds 4 10 30       # also longer clips (at 30 s nothing is padded)
    python benchmarks/whisper.py --quick                 # tiny, 4 s, 2 repetitions: checks the script works

Sizes (random weights, 80 mel bins, 1500 positions; the encoder only, as both classes hold it):
  tiny  whisper-tiny encoder: d_model 384, 4 layers, 6 heads, FFN 1536
  base  whisper-base encoder: d_model 512, 6 layers, 8 heads, FFN 2048

Each path is what a user calls per clip: its feature extractor (stock: WhisperFeatureExtractor, padding to 30 s;
ours: WhisperEmotionFeatureExtractor, the clip's own length) and the model's forward, under inference mode, one
clip per call. The head is the one both compute (mean pooling, linear classifier, last layer), with the same weights:
the stock class averages 30 s of frames, most of them padding, ours the clip's own frames. Inputs are real Emo-DB
speech, consecutive clips concatenated and cut to each length, a different piece per repetition. Repetitions are
interleaved (stock, ours, stock, ...) so load from other users of the shared machine hits both alike; medians are
reported and the speed-up is the ratio of medians measured in this one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification

import modeling_ser
from ser.core.audio import SAMPLING_RATE
from _common import EMODB, median, table, write_result  # noqa: I001

SR = SAMPLING_RATE  # ser.core.audio, the one definition
LABELS = ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"]
SIZES = {
    "tiny": dict(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536),
    "base": dict(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048),
}


def build(size: str, seed: int = 0):
    """(ours, stock): WhisperForEmotion and WhisperForAudioClassification sharing one set of random weights."""
    torch.manual_seed(seed)
    fields = dict(SIZES[size], num_mel_bins=80, max_source_positions=1500, **modeling_ser.label_maps(LABELS))
    ours = modeling_ser.WhisperForEmotion(modeling_ser.WhisperEmotionConfig(**fields, pooling="mean")).eval()
    stock = WhisperForAudioClassification(WhisperConfig(**fields)).eval()
    stock.load_state_dict(ours.state_dict(), strict=True)  # same names: encoder.*, projector, classifier
    return ours, stock


def speech_pieces(seconds: float, count: int) -> list[np.ndarray]:
    """`count` different pieces of real Emo-DB speech, each `seconds` long."""
    from ser.core.audio import load_audio
    from ser.data.corpora import load_emodb

    clips = load_emodb(EMODB)
    need, pieces, i = int(seconds * SR), [], 0
    for _ in range(count):
        parts = []
        while sum(len(p) for p in parts) < need:
            parts.append(load_audio(clips[i % len(clips)].path, SR))
            i += 1
        pieces.append(np.concatenate(parts)[:need].astype(np.float32))
    return pieces


def paths(size: str) -> dict:
    """name -> callable(raw 16 kHz audio) -> logits."""
    ours, stock = build(size)
    ours_fe, stock_fe = modeling_ser.WhisperEmotionFeatureExtractor(), WhisperFeatureExtractor()

    def run_ours(audio):
        with torch.inference_mode():
            return ours(**ours_fe(audio, sampling_rate=SR, return_tensors="pt")).logits

    def run_stock(audio):
        with torch.inference_mode():
            return stock(stock_fe(audio, sampling_rate=SR, return_tensors="pt")["input_features"]).logits

    return {"stock WhisperForAudioClassification": run_stock, "WhisperForEmotion": run_ours}


def time_size(size: str, seconds: float, reps: int, warmup: int) -> dict:
    calls = paths(size)
    pieces = speech_pieces(seconds, warmup + reps)
    for audio in pieces[:warmup]:
        for call in calls.values():
            call(audio)
    times = {name: [] for name in calls}
    for audio in pieces[warmup:]:
        for name, call in calls.items():
            start = time.perf_counter()
            call(audio)
            times[name].append(time.perf_counter() - start)
    stock, ours = (median(times[name]) for name in calls)
    row = {"size": size, "clip s": seconds, "stock s/clip": stock, "ours s/clip": ours, "speed-up": stock / ours,
           "paired speed-up": median([s / o for s, o in zip(*times.values())]),
           "all s": {name: [round(t, 4) for t in values] for name, values in times.items()}}
    print(f"  {size:<5} {seconds:>4} s  stock {stock:.3f} s/clip  ours {ours:.3f} s/clip  x{stock / ours:.1f}",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--seconds", nargs="+", type=float, default=[4.0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--quick", action="store_true", help="tiny, 4 s, 2 repetitions (writes whisper-quick.json)")
    parser.add_argument("--name", default="whisper", help="results/<name>.json")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seconds, args.reps = ["tiny"], [4.0], 2
    torch.set_num_threads(args.threads)
    rows = [time_size(size, seconds, args.reps, args.warmup) for size in args.sizes for seconds in args.seconds]
    print(table(rows, ["size", "clip s", "stock s/clip", "ours s/clip", "speed-up", "paired speed-up"],
                {"stock s/clip": ".3f", "ours s/clip": ".3f", "speed-up": ".1f", "paired speed-up": ".1f"}))
    write_result("whisper", {"sizes": {s: SIZES[s] for s in args.sizes}, "reps": args.reps, "warmup": args.warmup,
                             "threads": args.threads, "rows": rows, "target": "speed-up >= 5 at 4 s, tiny and base"},
                 quick=args.quick, name=args.name)


if __name__ == "__main__":
    main()
