"""What cutting a Whisper encoder to the layer its head reads saves: encoder time per clip, parameters and the saved
model's size, for the pretrained encoders scripts/setup.sh installs, side by side in one run.

    python benchmarks/encoder_cut.py                 # 4 s clips, one thread, 1 warm-up + 20 interleaved repetitions
    python benchmarks/encoder_cut.py --quick         # 3 repetitions: checks the script works

Rows: Whisper tiny.en's whole encoder (the previous default), Whisper base's whole encoder, and base cut to its
first 3 layers (the default's feature layer: modeling_ser.WhisperForEmotion.cut_to_feature_layer). Each row is the
encoder's forward on the feature extractor's log-mels of real Emo-DB speech, under inference mode, one clip per
call; repetitions are interleaved (tiny, base, cut, tiny, ...) so load from elsewhere hits every row alike, and the
ratios are of medians measured in this one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import ROOT, median, table, write_result  # noqa: I001
from whisper import speech_pieces
from ser.core.audio import SAMPLING_RATE
from ser.training.encoders import pretrained_model

ENCODERS = {"tiny.en, all 4 layers": ("encoders/whisper-tiny.en", "last"),
            "base, all 6 layers": ("encoders/whisper-base", "last"),
            "base, first 3 layers (cut)": ("encoders/whisper-base", 3)}


def folder_megabytes(model, extractor) -> float:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        extractor.save_pretrained(folder)
        return sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repetitions = 3 if args.quick else args.repetitions
    torch.set_num_threads(1)
    models = {name: pretrained_model(str(ROOT / path), ["a", "b"], feature_layer=layer, freeze_backbone=True)
              for name, (path, layer) in ENCODERS.items()}
    pieces = speech_pieces(args.seconds, repetitions + 1)
    times = {name: [] for name in models}
    with torch.inference_mode():
        for i, piece in enumerate(pieces):
            for name, (model, extractor) in models.items():
                features = extractor([piece], sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_features"]
                start = time.perf_counter()
                model.base_model(features, output_hidden_states=model.config.feature_layer != "last")
                if i:  # the first piece warms up
                    times[name].append(time.perf_counter() - start)
    reference = median(times["tiny.en, all 4 layers"])
    rows = [{"encoder": name, "ms per clip": 1000 * median(times[name]), "x tiny.en": median(times[name]) / reference,
             "parameters (M)": sum(p.numel() for p in model.parameters()) / 1e6,
             "saved folder (MB)": folder_megabytes(model, extractor)}
            for name, (model, extractor) in models.items()]
    print(f"{args.seconds:g} s clips, one thread, median of {repetitions}")
    print(table(rows, list(rows[0]), {"ms per clip": ".1f", "x tiny.en": ".2f", "parameters (M)": ".1f",
                                      "saved folder (MB)": ".1f"}))
    write_result("encoder_cut", {"seconds": args.seconds, "repetitions": repetitions, "rows": rows},
                 quick=args.quick)


if __name__ == "__main__":
    main()
