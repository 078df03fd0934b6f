"""How the speech detector's settings were chosen (speech_ser.py): on every clip of Emo-DB, RAVDESS and EMOVO, clean,
band-limited to the telephone band and with white noise at 5 dB SNR, how many clips Silero VAD finds no speech in at
each threshold (release 0.15 below it, as Silero's own neg_threshold), and the highest speech probability it gives
white, pink and brown noise at -60 to -6 dBFS (3 s each, 3 draws). Clips Silero misses are a detector's worst error
here: the predictor refuses them as "no speech".

    python benchmarks/speech_detector.py

Also times both detectors on the clean clips (milliseconds per second of audio, one thread). Writes
benchmarks/results/speech_detector.json and prints a markdown table (about 2 minutes on one core).
"""

import time

import numpy as np
from tqdm import tqdm

from _common import DATA, write_result
import speech_ser as speech
from ser.audio import SAMPLING_RATE, load_audio
from ser.augment import add_noise, band_limit
from ser.corpora import load_corpus

THRESHOLDS = (0.5, 0.35, 0.25)
LEVELS_DBFS = (-60, -40, -20, -6)


def probabilities(audio: np.ndarray) -> np.ndarray:
    meter = speech.SileroMeter()
    meter.add(audio)
    meter.segments()
    return np.concatenate(meter.probabilities)


def noise(kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(3 * SAMPLING_RATE)
    frequencies = np.maximum(np.fft.rfftfreq(white.size, 1 / SAMPLING_RATE), 1.0)
    shaped = np.fft.irfft(np.fft.rfft(white) / frequencies ** {"white": 0, "pink": 0.5, "brown": 1}[kind], white.size)
    return (shaped / np.sqrt(np.mean(shaped ** 2)) * 10 ** (level / 20)).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(0)
    missed = {corpus: {condition: {str(t): 0 for t in THRESHOLDS} for condition in ("clean", "tel-8k", "snr-5")}
              for corpus in ("emodb", "ravdess", "emovo")}
    seconds = {"audio": 0.0, "silero-vad": 0.0, "energy": 0.0}
    for corpus, conditions in missed.items():
        for clip in tqdm(load_corpus(corpus, DATA / corpus), desc=corpus, unit="clip"):
            audio = load_audio(clip.path)
            seconds["audio"] += audio.size / SAMPLING_RATE
            for detector in (speech.DEFAULT, speech.ENERGY):
                start = time.perf_counter()
                detector.segments(audio)
                seconds[detector.name] += time.perf_counter() - start
            for condition, version in (("clean", audio), ("tel-8k", band_limit(audio)),
                                       ("snr-5", add_noise(audio, 5, rng))):
                best = probabilities(version).max()
                for threshold in THRESHOLDS:
                    conditions[condition][str(threshold)] += int(best < threshold)
    noise_max = {kind: max(float(probabilities(noise(kind, level, rng)).max()) for level in LEVELS_DBFS
                           for _ in range(3)) for kind in ("white", "pink", "brown")}
    print("| clips with no frame at the threshold | " + " | ".join(map(str, THRESHOLDS)) + " |")
    print("|---|" + "---|" * len(THRESHOLDS))
    for condition in ("clean", "tel-8k", "snr-5"):
        print(f"| {condition} | " + " | ".join(str(sum(missed[c][condition][str(t)] for c in missed))
                                               for t in THRESHOLDS) + " |")
    print("\nhighest speech probability in noise: " + ", ".join(f"{k} {v:.3f}" for k, v in noise_max.items()))
    per_second = {name: 1000 * seconds[name] / seconds["audio"] for name in ("silero-vad", "energy")}
    print("milliseconds per second of audio: " + ", ".join(f"{k} {v:.2f}" for k, v in per_second.items()))
    write_result("speech_detector", {"missed": missed, "noise_max_probability": noise_max,
                                     "ms_per_audio_second": per_second})


if __name__ == "__main__":
    main()
