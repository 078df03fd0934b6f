"""What the speech detector's memo (speech_ser.Detector.segments keeps its last answers by the audio's content) saves
the predictor, which asks twice for each clip (is there speech, then where to trim): the default model classifies
100 Emo-DB files one at a time with the memo off and on, alternated three times in one process on one thread, and
the answers are checked identical.

    python benchmarks/detector_memo.py

Writes benchmarks/results/detector_memo.json (about 1 minute).
"""

import time

import torch

from _common import EMODB, ROOT, write_result
import speech_ser as speech
from ser.core.defaults import DEFAULT_MODEL
from ser.inference.predictor import EmotionPredictor

REPEATS = 3


def main() -> None:
    torch.set_num_threads(1)
    files = sorted((EMODB / "wav").glob("*.wav"))[:100]
    predictor = EmotionPredictor.from_pretrained(ROOT / DEFAULT_MODEL)
    for path in files[:5]:  # warm-up: the detector's session and the model's first calls
        predictor.classify_file(path)
    seconds, answers, kept = {"off": [], "on": []}, {}, speech.RECENT_ANSWERS
    for _ in range(REPEATS):
        for memo, size in (("off", 0), ("on", kept)):
            speech.RECENT_ANSWERS = size
            speech._RECENT.clear()
            start = time.perf_counter()
            answers[memo] = [predictor.classify_file(path) for path in files]
            seconds[memo].append(time.perf_counter() - start)
    speech.RECENT_ANSWERS = kept
    result = {"files": len(files), "seconds": seconds, "ratio_off_over_on": min(seconds["off"]) / min(seconds["on"]),
              "identical": answers["off"] == answers["on"]}
    write_result("detector_memo", result)
    print(f"{len(files)} files: memo off {min(seconds['off']):.2f} s, on {min(seconds['on']):.2f} s (best of "
          f"{REPEATS}): {result['ratio_off_over_on']:.2f}x; identical answers: {result['identical']}")


if __name__ == "__main__":
    main()
