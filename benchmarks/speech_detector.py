"""How the speech detector's settings were chosen (speech_ser.py): on every clip of Emo-DB, RAVDESS and EMOVO, clean,
band-limited to the telephone band and with white noise at 5 dB SNR, how many clips Silero VAD finds no speech in at
each threshold (release 0.15 below it, as Silero's own neg_threshold), and the highest speech probability it gives
white, pink and brown noise at -60 to -6 dBFS (3 s each, 3 draws). Clips Silero misses are a detector's worst error
here: the predictor refuses them as "no speech".

    python benchmarks/speech_detector.py

Also times both detectors on the clean clips (milliseconds per second of audio, one thread). Writes
benchmarks/results/speech_detector.json and prints a markdown table (about 2 minutes on one core).

    python benchmarks/speech_detector.py --rules    # only the two level rules (issue 28), about 3 minutes

The two level rules of speech_ser.py (`loud_db`, `settle_db`), before (both off: the detector as it was) and after:
- refusals ("no speech") of every corpus clip, clean and padded with 2 s of -50 dBFS white noise on each side (the
  robustness benchmark's noise-2s); of shouted single words cut from the corpora (`shouted_words`); and of steady
  sounds, which must stay refused (`steady_sounds`: white, pink and brown noise at -60 to -6 dBFS, alone and inside
  digital silence, hum, tones, a chord, digital silence); with the level spread `loud_db` is measured on (90th minus
  10th percentile of the first difference's frame levels) at its extremes in each set;
- how far the trimmed span of a noise-padded clip lies from the clean clip's (start and end), and how many clean
  clips' trims the rules change (the shipped models were trained on the trims before).
Writes benchmarks/results/speech_detector-rules.json.
"""

import argparse
from dataclasses import replace

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from _common import DATA, write_result
import speech_ser as speech
from ser.core.audio import SAMPLING_RATE, load_audio
from ser.data.augment import add_noise, band_limit
from ser.data.corpora import load_corpus

THRESHOLDS = (0.5, 0.35, 0.25)
LEVELS_DBFS = (-60, -40, -20, -6)


def probabilities(audio: np.ndarray) -> np.ndarray:
    meter = speech.SileroMeter()
    meter.add(audio)
    meter.segments()
    return np.concatenate(meter.probabilities)


def noise(kind: str, level: float, rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    white = rng.standard_normal(int(seconds * SAMPLING_RATE))
    frequencies = np.maximum(np.fft.rfftfreq(white.size, 1 / SAMPLING_RATE), 1.0)
    shaped = np.fft.irfft(np.fft.rfft(white) / frequencies ** {"white": 0, "pink": 0.5, "brown": 1}[kind], white.size)
    return (shaped / np.sqrt(np.mean(shaped ** 2)) * 10 ** (level / 20)).astype(np.float32)


def spread(audio: np.ndarray) -> float:
    """What `loud_db` is compared with: the 90th minus the 10th percentile of the first difference's frame levels."""
    levels = speech.frame_levels(np.diff(audio, prepend=np.float32(0)).astype(np.float32))
    levels = levels[levels > speech.DIGITAL_SILENCE_DB]
    high, low = np.percentile(levels, speech.LOUD_PERCENTILES) if levels.size else (0.0, 0.0)
    return float(high - low)


def loud_bursts(audio: np.ndarray, count: int = 3) -> list[np.ndarray]:
    """Up to `count` loud stretches of a clip (single words or syllable groups, 0.25 to 1 s): frames within 15 dB of
    the clip's loudest, gaps under 50 ms bridged, cut at most 1 s around the stretch's loudest frame with 50 ms either
    side and 10 ms fades, loudest first."""
    levels, hop, frame = speech.frame_levels(audio), 160, 400
    loud = levels >= levels.max() - 15
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    stretches: list[list[int]] = []
    for first, last in zip(edges[::2], edges[1::2]):
        if stretches and first - stretches[-1][1] < 5:
            stretches[-1][1] = last
        else:
            stretches.append([first, last])
    bursts = []
    for first, last in stretches:
        if (last - first) * hop < 0.25 * SAMPLING_RATE:
            continue
        loudest = first + int(np.argmax(levels[first:last]))
        first = max(first, loudest - 50)
        last = min(last, first + 100)
        cut = audio[max(0, first * hop - 800):min(audio.size, (last - 1) * hop + frame + 800)].copy()
        ramp = np.linspace(0, 1, 160, dtype=np.float32)
        cut[:160] *= ramp
        cut[-160:] *= ramp[::-1]
        bursts.append((float(levels[loudest]), cut))
    return [cut for _, cut in sorted(bursts, key=lambda burst: -burst[0])[:count]]


def shouted_words(rng: np.random.Generator, loudest: int = 60) -> list[tuple[str, str, np.ndarray]]:
    """(source file, setting, audio): loud bursts cut from Emo-DB's angry clips ("W"), RAVDESS's strong angry ones
    and the `loudest` clips of the three corpora (by RMS), each brought to -16 dBFS RMS (peaks kept below full scale),
    as it is and in a 1.2 to 2.7 s bed of digital silence or of white, pink or brown noise 40 to 60 dB below its loud
    frames: the shouted single words recorded outside a studio that issue 28 saw refused."""
    angry = sorted((DATA / "emodb" / "wav").glob("*W*.wav"))
    angry += sorted((DATA / "ravdess").glob("Actor_*/03-01-05-02-*"))
    every = [clip.path for corpus in ("emodb", "ravdess", "emovo") for clip in load_corpus(corpus, DATA / corpus)]
    rms = {path: float(np.sqrt(np.mean(np.square(load_audio(path), dtype=np.float64)))) for path in every}
    sources = angry + sorted(every, key=lambda path: -rms[path])[:loudest]
    words = []
    for path in tqdm(sources, desc="shouted words", unit="clip"):
        for burst in loud_bursts(load_audio(path)):
            rms = np.sqrt(np.mean(np.square(burst, dtype=np.float64)))
            gain = min(10 ** (-16 / 20) / rms, 0.99 / np.abs(burst).max())
            burst = (burst * gain).astype(np.float32)
            words.append((Path(path).name, "bare", burst))
            loud = np.percentile(speech.frame_levels(burst), 90)
            length = max(int(rng.uniform(1.2, 2.7) * SAMPLING_RATE), burst.size + 1600)
            at = int(rng.integers(0, length - burst.size))
            for bed in ("silence", "white", "pink", "brown"):
                below = rng.uniform(40, 60)
                audio = (np.zeros(length, np.float32) if bed == "silence"
                         else noise(bed, level=loud - below, rng=rng, seconds=length / SAMPLING_RATE))
                audio[at:at + burst.size] += burst
                words.append((Path(path).name, bed, audio))
    return words


def steady_sounds(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """What must stay "no speech": noise at -60 to -6 dBFS (3 draws of each, alone and inside digital silence), hum,
    tones and a chord (alone and with white noise 30 dB below), and digital silence."""
    sounds = []
    for kind in ("white", "pink", "brown"):
        for level in (-60, -50, -40, -30, -20, -12, -6):
            for _ in range(3):
                audio = noise(kind, level, rng)
                inside = np.concatenate([np.zeros(SAMPLING_RATE // 2, np.float32), audio,
                                         np.zeros(SAMPLING_RATE // 3, np.float32)])
                sounds += [(f"{kind} {level} dBFS", audio), (f"{kind} {level} dBFS in silence", inside)]
    t = np.arange(3 * SAMPLING_RATE) / SAMPLING_RATE
    tones = {"hum 50 Hz": sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5)),
             "hum 60 Hz": sum(np.sin(2 * np.pi * 60 * k * t) / k for k in (1, 3, 5)),
             "tone 440 Hz": np.sin(2 * np.pi * 440 * t), "tone 1 kHz": np.sin(2 * np.pi * 1000 * t),
             "chord": sum(np.sin(2 * np.pi * f * t) for f in (440, 554, 659))}
    for name, wave in tones.items():
        for level in (-60, -40, -20, -6):
            audio = (wave / np.sqrt(np.mean(wave ** 2)) * 10 ** (level / 20)).astype(np.float32)
            sounds += [(f"{name} {level} dBFS", audio),
                       (f"{name} {level} dBFS + noise", audio + noise("white", level - 30, rng))]
    silence = np.zeros(3 * SAMPLING_RATE, np.float32)
    return sounds + [("digital silence", silence), ("100 zeros", silence[:100])]


def span(segments) -> tuple[int, int] | None:
    return (segments[0].start, segments[-1].end) if segments else None


def both(audio: np.ndarray, before: speech.Detector, after: speech.Detector) -> tuple[list, list]:
    """The segments of one Silero scan under two detectors that differ only in the level rules."""
    meter = speech.SileroMeter(before)
    meter.add(audio)
    first = meter.segments()
    meter.detector = after
    return first, meter.segments()


def rules() -> dict:
    after = speech.DEFAULT
    before = replace(after, loud_db=0.0, settle_db=0.0)  # the detector as it was before the rules
    rng = np.random.default_rng(0)
    pad = 2 * SAMPLING_RATE
    corpus = {"clips": 0, "refused": {"before": {"clean": 0, "noise-2s": 0}, "after": {"clean": 0, "noise-2s": 0}},
              "clean_trims_changed": 0, "clean_trim_change_seconds": [], "spread_min": np.inf, "refused_names": []}
    moves = {"before": {"start": [], "end": []}, "after": {"start": [], "end": []}}
    for name in ("emodb", "ravdess", "emovo"):
        for clip in tqdm(load_corpus(name, DATA / name), desc=name, unit="clip"):
            audio = load_audio(clip.path)
            filler = lambda: (rng.standard_normal(pad) * 10 ** (-50 / 20)).astype(np.float32)  # noqa: E731
            padded = np.concatenate([filler(), audio, filler()])
            corpus["clips"] += 1
            corpus["spread_min"] = min(corpus["spread_min"], spread(audio))
            clean, padded_segments = both(audio, before, after), both(padded, before, after)
            for i, key in enumerate(("before", "after")):
                corpus["refused"][key]["clean"] += not clean[i]
                corpus["refused"][key]["noise-2s"] += not padded_segments[i]
                if not clean[i] or not padded_segments[i]:
                    corpus["refused_names"].append(f"{key} {Path(clip.path).name}")
                    continue
                (start, end), (padded_start, padded_end) = span(clean[i]), span(padded_segments[i])
                moves[key]["start"].append((padded_start - pad - start) / SAMPLING_RATE)
                moves[key]["end"].append((padded_end - pad - end) / SAMPLING_RATE)
            if clean[0] and clean[1] and span(clean[0]) != span(clean[1]):
                corpus["clean_trims_changed"] += 1
                corpus["clean_trim_change_seconds"].append(
                    sum(abs(a - b) for a, b in zip(span(clean[0]), span(clean[1]))) / SAMPLING_RATE)
    padding = {key: {end: {"mean_abs": float(np.mean(np.abs(values))),
                           "over_0.05s": float(np.mean(np.abs(values) > 0.05)),
                           "over_0.2s": float(np.mean(np.abs(values) > 0.2))} for end, values in ends.items()}
               for key, ends in moves.items()}
    changes = corpus.pop("clean_trim_change_seconds")
    corpus["clean_trim_change_median_seconds"] = float(np.median(changes)) if changes else 0.0
    words = {"count": 0, "refused": {"before": 0, "after": 0}, "refused_by_setting": {}, "spread_min": np.inf,
             "spread_min_of_refused_before": np.inf}
    for source, setting, audio in shouted_words(rng):
        first, second = both(audio, before, after)
        words["count"] += 1
        words["refused"]["before"] += not first
        words["refused"]["after"] += not second
        if not first:
            words["refused_by_setting"][setting] = words["refused_by_setting"].get(setting, 0) + 1
            words["spread_min_of_refused_before"] = min(words["spread_min_of_refused_before"], spread(audio))
        words["spread_min"] = min(words["spread_min"], spread(audio))
    steady = {"count": 0, "refused": {"before": 0, "after": 0}, "spread_max": 0.0, "found_after": []}
    for name, audio in steady_sounds(rng):
        first, second = both(audio, before, after)
        steady["count"] += 1
        steady["refused"]["before"] += not first
        steady["refused"]["after"] += not second
        steady["found_after"] += [name] if second else []
        steady["spread_max"] = max(steady["spread_max"], spread(audio) if audio.any() else 0.0)
    print(f"| set | clips | refused before | refused after | level spread (dB) |\n|---|---|---|---|---|")
    print(f"| corpus clips, clean | {corpus['clips']} | {corpus['refused']['before']['clean']} | "
          f"{corpus['refused']['after']['clean']} | min {corpus['spread_min']:.1f} |")
    print(f"| corpus clips, noise-2s | {corpus['clips']} | {corpus['refused']['before']['noise-2s']} | "
          f"{corpus['refused']['after']['noise-2s']} | |")
    print(f"| shouted words | {words['count']} | {words['refused']['before']} | {words['refused']['after']} | min "
          f"{words['spread_min']:.1f} (of those refused before: {words['spread_min_of_refused_before']:.1f}) |")
    print(f"| steady sounds and silence | {steady['count']} | {steady['refused']['before']} | "
          f"{steady['refused']['after']} | max {steady['spread_max']:.1f} |")
    print("\nnoise-2s: the padded clip's trimmed span against the clean clip's (share of clips whose start or end "
          "moves more than 0.05 / 0.2 s)")
    for key, ends in padding.items():
        print(f"  {key}: " + "; ".join(f"{end} {v['over_0.05s']:.1%} / {v['over_0.2s']:.1%} "
                                         f"(mean {v['mean_abs']:.3f} s)" for end, v in ends.items()))
    print(f"clean clips whose trim the rules change: {corpus['clean_trims_changed']} of {corpus['clips']} "
          f"(median {corpus['clean_trim_change_median_seconds']:.3f} s)")
    return {"detector_before": before.to_dict(), "detector_after": after.to_dict(), "corpus": corpus,
            "noise_2s_trim_moves": padding, "shouted_words": words, "steady_sounds": steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", action="store_true", help="only the level rules (loud_db, settle_db)")
    if parser.parse_args().rules:
        write_result("speech_detector", rules(), name="speech_detector-rules")
        return
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
