"""Does silence change the answer? Classifies real Emo-DB clips as they are and with digital silence added before and
after, and counts how often the predicted label changes.

    python benchmarks/silence.py                                 # the embedded default model
    python benchmarks/silence.py --model path/to/model --clips 100 --pad 0.5 2

Clips: every `len(clips) // N`-th Emo-DB clip in file order (all speakers and emotions). Writes
benchmarks/results/silence-<model folder name>.json.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import EMODB, ROOT, write_result  # noqa: I001  (puts the repo root on sys.path)
from ser.audio import load_audio
from ser.corpora import load_emodb
from ser.defaults import DEFAULT_MODEL
from ser.predictor import EmotionPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / DEFAULT_MODEL))
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--pad", type=float, nargs="+", default=[0.5, 2.0], help="seconds of silence on each side")
    args = parser.parse_args()
    predictor = EmotionPredictor.from_pretrained(args.model)
    clips = load_emodb(EMODB)
    clips = clips[:: max(1, len(clips) // args.clips)][: args.clips]
    audio = [load_audio(clip.path) for clip in clips]
    top = lambda scores: max(scores, key=scores.get)  # noqa: E731
    plain = [top(s) for s in predictor.classify_batch(audio)]
    rows = {"model": args.model, "clips": len(clips),
            "accuracy_plain": float(np.mean([p == c.label for p, c in zip(plain, clips)]))}
    print(f"{args.model}: {len(clips)} Emo-DB clips, accuracy as they are {rows['accuracy_plain']:.3f}")
    for pad in args.pad:
        silence = np.zeros(int(pad * predictor.sampling_rate), dtype=np.float32)
        padded = [top(s) for s in predictor.classify_batch([np.concatenate([silence, a, silence]) for a in audio])]
        changed = sum(p != q for p, q in zip(plain, padded))
        accuracy = float(np.mean([p == c.label for p, c in zip(padded, clips)]))
        rows[f"pad_{pad}"] = {"label_changed": changed, "accuracy": accuracy}
        print(f"  {pad} s of silence on each side: label changed on {changed} of {len(clips)}, accuracy {accuracy:.3f}")
    write_result(f"silence-{args.model.rstrip('/').split('/')[-1]}", rows)


if __name__ == "__main__":
    main()
