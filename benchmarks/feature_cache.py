"""Frozen-mode epoch time: head training on cached encoder features vs recomputing them every epoch.

    python benchmarks/feature_cache.py              # 32 fixed Emo-DB clips, 2 epochs each way, interleaved
    python benchmarks/feature_cache.py --quick      # 8 clips, 1 epoch each way

Encoder: wav2vec2-base shape (`Wav2Vec2Config()` defaults: 12 layers, hidden 768; feat_extract_norm="layer"),
random weights, wrapped in the emotion model with the frozen-mode head (mean pooling, last layer). One epoch is
the same head training both ways (batches of 8, a random 3 s crop of each clip's frames, class-balanced
cross-entropy, AdamW) on the same clips; it differs only in where the frames come from:

  recompute      the encoder runs on every clip every epoch (whole clip, no_grad, as FeatureCache.encode does)
  cache (RAM)    frames cached once, then held in memory as numpy arrays (what train_ser.py did before the cache
                 became a `datasets` table)
  cache (Arrow)  frames read per batch from the memory-mapped Arrow table of the FeatureCache, as
                 `train_ser.py --mode frozen` does now
  cache (again)  as a new run reusing the cache: each clip hashed and looked up, then its frames read

Epochs of the three kinds are interleaved (recompute, RAM, disk, recompute, ...) so that load from other users of
the machine hits them alike; the ratio of the medians is reported.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import numpy as np
import torch

from _common import EMODB, median, table, write_result  # noqa: I001
from ser.core.audio import SAMPLING_RATE
from ser.data.corpora import load_emodb
from ser.data.inputs import PadCollator, class_weights, load_clips_audio
from ser.training.encoders import scratch_model
from ser.training.frozen import FeatureCache, FrozenEncoderHead

FRAMES_PER_SECOND = 49.9  # wav2vec2 frame rate at 16 kHz (20 ms hop)


def pick_clips(n: int, seed: int = 0):
    clips = load_emodb(EMODB)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(clips)), n))
    return [clips[i] for i in chosen]


def crop(frames: np.ndarray, seconds: float, rng: random.Random) -> np.ndarray:
    units = int(seconds * FRAMES_PER_SECOND)
    if len(frames) <= units:
        return frames
    start = rng.randrange(len(frames) - units + 1)
    return frames[start:start + units]


def train_epoch(head, optimizer, frames_for, labels, weights, batch_size, rng) -> None:
    """One epoch of head training; `frames_for(indices)` returns each clip's (T, H) frames."""
    collate = PadCollator("features")
    order = list(range(len(labels)))
    rng.shuffle(order)
    head.train()
    for start in range(0, len(order), batch_size):
        batch_idx = order[start:start + batch_size]
        frames = frames_for(batch_idx)
        batch = collate([{"features": crop(f, 3.0, rng), "labels": labels[i]} for f, i in zip(frames, batch_idx)])
        out = head(batch["features"], batch["attention_mask"])
        loss = torch.nn.functional.cross_entropy(out.logits, batch["labels"], weight=weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32, help="fixed random subset of Emo-DB (whole clips)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each kind (median reported)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.epochs = 8, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    clips, audio = load_clips_audio(pick_clips(args.clips))
    names = sorted({c.label for c in clips} | {"angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"})
    labels = [names.index(c.label) for c in clips]
    audio_seconds = sum(len(a) for a in audio) / SAMPLING_RATE
    spec = {"family": "wav2vec2", "encoder": {"feat_extract_norm": "layer"}}
    model, feature_extractor = scratch_model(spec, names, pooling="mean", feature_layer="last", freeze_backbone=True)
    model.eval()
    head = FrozenEncoderHead(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    weights = class_weights(labels, len(names))
    print(f"{len(clips)} Emo-DB clips ({audio_seconds:.1f} s of audio), wav2vec2-base shape "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, random weights), "
          f"{torch.get_num_threads()} threads")

    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        cache = FeatureCache(root, model, feature_extractor)
        fingerprint_seconds = time.perf_counter() - start
        start = time.perf_counter()
        mapped = cache.features(audio)  # fills the cache: one encoder pass
        fill_seconds = time.perf_counter() - start
        cache_bytes = sum(p.stat().st_size for p in cache.folder.glob("*.arrow"))
        in_memory = [mapped[i] for i in range(len(mapped))]

        sources = {
            "recompute": lambda idx: [cache.encode(audio[i]) for i in idx],
            "cache (RAM)": lambda idx: [in_memory[i] for i in idx],
            "cache (Arrow)": lambda idx: [mapped[i] for i in idx],
            "cache (again)": lambda idx: list(cache.features([audio[i] for i in idx])),
        }
        times = {name: [] for name in sources}
        rng = random.Random(0)
        for epoch in range(args.epochs):
            for name, source in sources.items():
                start = time.perf_counter()
                train_epoch(head, optimizer, source, labels, weights, args.batch_size, rng)
                times[name].append(time.perf_counter() - start)
                print(f"epoch {epoch + 1} {name}: {times[name][-1]:.3f} s", flush=True)

    base = median(times["recompute"])
    rows = [{"features": name, "s/epoch (median)": median(t), "s/epoch (all)": " ".join(f"{x:.3f}" for x in t),
             "speed-up vs recompute": base / median(t)} for name, t in times.items()]
    print(table(rows, ["features", "s/epoch (median)", "s/epoch (all)", "speed-up vs recompute"],
                {"s/epoch (median)": ".3f", "speed-up vs recompute": ".1f"}))
    print(f"cache fill (first pass, encoder + write): {fill_seconds:.2f} s; encoder fingerprint {fingerprint_seconds:.2f} s; "
          f"cache size {cache_bytes / 1e6:.1f} MB")
    ratio = base / median(times["cache (RAM)"])
    arrow = base / median(times["cache (Arrow)"])
    print(f"target cache >= 10x faster per epoch: {'met' if arrow >= 10 else 'MISSED'} ({arrow:.1f}x from Arrow, "
          f"{ratio:.1f}x from RAM, {base / median(times['cache (again)']):.1f}x hashed and looked up again)")
    write_result("feature_cache", {
        "clips": len(clips), "clip_names": [c.path.rsplit("/", 1)[-1] for c in clips], "audio_seconds": audio_seconds,
        "encoder": "wav2vec2-base shape, random weights, feat_extract_norm=layer", "batch_size": args.batch_size,
        "epochs_each": args.epochs, "threads": args.threads, "seconds_per_epoch": times,
        "cache_fill_seconds": fill_seconds, "fingerprint_seconds": fingerprint_seconds, "cache_bytes": cache_bytes,
        "speedup_ram": ratio, "speedup_arrow": arrow, "speedup_again": base / median(times["cache (again)"]),
        "target_10x_met": arrow >= 10,
        "table": rows}, quick=args.quick)


if __name__ == "__main__":
    main()
