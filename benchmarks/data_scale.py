"""Memory and throughput of the frozen-encoder path as the dataset grows: feature extraction and head training on
2,000 and 20,000 clips.

    python benchmarks/data_scale.py                    # 2,000 and 20,000 clips (about 40 min on one core)
    python benchmarks/data_scale.py --clips 500 5000   # smaller

The clips are the three corpora's 2,563 real clips, repeated with a perturbation per repeat (gain, 30 dB white
noise, a shift of up to 0.2 s: each repeat is new audio, so nothing is read from the feature cache), written as a
`datasets` folder with the audio embedded as WAV. Each size runs in a fresh process, the user's own path:
the functions of `train_ser.py` (ser.training.arguments, ser.training.experiment) with the whisper-frozen recipe and `--dataset_name`, no copies, one epoch of one fold
(speaker 5-fold), an empty cache. Measured per phase: wall time per clip, and the process's peak resident memory,
both in total (VmHWM: it counts the memory-mapped cache pages the kernel keeps, which it can drop at any time) and
anonymous only (RssAnon, sampled every 0.1 s: the memory the process itself holds, which does not grow with the
dataset if nothing is held per clip).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from _common import DATA, ROOT, table, write_result  # noqa: I001

CORPORA = ("emodb", "ravdess", "emovo")


def build_dataset(clips_wanted: int, folder: Path) -> None:
    """`clips_wanted` clips: the corpora's clips, repeat r perturbed with a generator seeded by (clip, r)."""
    import soundfile as sf
    from datasets import Dataset, Features, Value

    from ser.data import dataset
    from ser.core.audio import SAMPLING_RATE, load_audio
    from ser.data.corpora import load_mixture

    clips = load_mixture(list(CORPORA), [DATA / name for name in CORPORA])

    def rows():
        for n in range(clips_wanted):
            clip, repeat = clips[n % len(clips)], n // len(clips)
            audio = load_audio(clip.path)
            if repeat:
                rng = np.random.default_rng([n % len(clips), repeat])
                audio = np.roll(audio, int(rng.integers(0, 3200))) * 10 ** (rng.uniform(-6, 6) / 20)
                audio = audio + rng.normal(0, np.sqrt(np.mean(audio ** 2)) * 10 ** (-30 / 20), len(audio))
            encoded = io.BytesIO()
            sf.write(encoded, np.clip(audio, -1, 1), SAMPLING_RATE, format="WAV", subtype="PCM_16")
            yield {"audio": {"bytes": encoded.getvalue(), "path": f"{Path(clip.path).stem}-{repeat}.wav"},
                   "label": clip.label, "speaker": f"{clip.corpus}-{clip.speaker}"}

    # the audio as a plain struct first: datasets encodes an Audio column through torchcodec, casting does not
    features = Features({"audio": {"bytes": Value("binary"), "path": Value("string")}, "label": Value("string"),
                         "speaker": Value("string")})
    generated = Dataset.from_generator(rows, features=features, cache_dir=str(folder.parent / "hf-cache"))
    generated.cast_column("audio", dataset.AUDIO).save_to_disk(str(folder))


class MemorySampler:
    """The process's largest RssAnon (kB) seen since the last `reset`, read from /proc every 0.1 s."""

    def __init__(self):
        self.peak, self.stop = 0, False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, status("RssAnon"))
            time.sleep(0.1)

    def reset(self) -> int:
        peak, self.peak = max(self.peak, status("RssAnon")), 0
        return peak


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(folder: Path, work: Path) -> dict:
    """One size, in this process: read the dataset, extract features (empty cache), train the head one epoch."""
    from ser.training.arguments import parse_arguments
    from ser.training.experiment import build_experiment, prepare_folds, read_corpus

    argv = ["--recipe", str(ROOT / "configs/recipes/whisper-frozen.yaml"), "--dataset_name", str(folder),
            "--speaker_column_name", "speaker", "--protocol", "speaker_kfold", "--num_folds", "5", "--copies", "0",
            "--num_train_epochs", "1", "--seeds", "0", "--output_dir", str(work / "run"), "--feature_cache_dir",
            str(work / "cache"), "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0"]
    data_args, model_args, augment_args, training_args, _ = parse_arguments(argv)
    training_args.remove_unused_columns = False
    sampler, phases = MemorySampler(), {}
    start = time.perf_counter()
    table_, clips, names = read_corpus(data_args)
    folds, _ = prepare_folds(clips, data_args)
    phases["read"] = {"seconds": time.perf_counter() - start, "anon_kb": sampler.reset()}
    start = time.perf_counter()
    experiment, _, inputs = build_experiment(0, table_, clips, names, data_args, model_args, augment_args,
                                                       training_args)
    phases["extract"] = {"seconds": time.perf_counter() - start, "anon_kb": sampler.reset(),
                         "misses": inputs.cache_stats["misses"]}
    start = time.perf_counter()
    experiment.train(folds[0].name, folds[0].train)
    phases["train"] = {"seconds": time.perf_counter() - start, "anon_kb": sampler.reset(),
                       "clips": len(folds[0].train)}
    return {"clips": len(clips), "phases": phases, "peak_rss_kb": status("VmHWM")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "WORK"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(Path(args.one[0]), Path(args.one[1]))))
        return
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as tmp:
        for n in args.clips:
            folder, work = Path(tmp) / f"data-{n}", Path(tmp) / f"work-{n}"
            build_dataset(n, folder)
            done = subprocess.run([sys.executable, __file__, "--one", str(folder), str(work)], stdout=subprocess.PIPE,
                                  text=True, check=True)  # stderr (progress, errors) passes through
            result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
            phases = result["phases"]
            rows.append({"clips": result["clips"],
                         "extract ms/clip": 1000 * phases["extract"]["seconds"] / result["clips"],
                         "train ms/clip": 1000 * phases["train"]["seconds"] / phases["train"]["clips"],
                         "peak RSS MiB": result["peak_rss_kb"] / 1024,
                         "peak anon MiB": max(p["anon_kb"] for p in phases.values()) / 1024, "detail": result})
            print(table(rows[-1:], [k for k in rows[-1] if k != "detail"], {"peak RSS MiB": ".0f",
                                                                             "peak anon MiB": ".0f"}), flush=True)
    small, large = rows[0], rows[-1]
    ratios = {key: large[key] / small[key] for key in ("extract ms/clip", "train ms/clip", "peak RSS MiB",
                                                         "peak anon MiB")}
    print(table(rows, ["clips", "extract ms/clip", "train ms/clip", "peak RSS MiB", "peak anon MiB"],
                {"peak RSS MiB": ".0f", "peak anon MiB": ".0f"}))
    print("largest / smallest: " + ", ".join(f"{key} {value:.2f}x" for key, value in ratios.items()))
    write_result("data_scale", {"rows": rows, "ratios_largest_over_smallest": ratios})


if __name__ == "__main__":
    main()
