"""Shared helpers for the benchmarks: machine description, timing statistics, tables and JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path

from ser.data.corpora import data_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DATA = data_dir()  # the real corpora, one folder per registry name ($SER_DATA, else ../shared/data)
EMODB = DATA / "emodb"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    from ser.inference.runtime import RUNTIME_FLAGS, cpu_flags

    info = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "python": platform.python_version(),
            "cpu_flags": [flag for flag in RUNTIME_FLAGS if flag in cpu_flags()]}  # what decides kernels and rounding
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def median(values):
    return float(statistics.median(values))


def table(rows: list[dict], columns: list[str], formats: dict | None = None) -> str:
    formats = formats or {}

    def cell(row, col):
        value = row.get(col, "")
        if isinstance(value, float):
            return format(value, formats.get(col, ".4g"))
        return str(value)

    cells = [[cell(r, c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def run_clips(results: dict) -> list:
    """The clips a train_ser.py run used (its corpora from DATA, its labels only): fold test speakers refer to them."""
    from ser.data.corpora import load_mixture
    from ser.reporting.results import corpus_keys

    keys = corpus_keys(results)
    return [clip for clip in load_mixture(keys, [DATA / key for key in keys]) if clip.label in results["labels"]]


def fold_model(run: Path, results: dict, fold_name: str, seed: int | None = None) -> Path:
    """Where `train_ser.py --save_fold_models true` left a fold's model: the given seed's, else the first seed's
    (as the final model)."""
    seeds = results["seeds"]
    seed = seeds[0] if seed is None else seed
    model = (run / f"seed-{seed}" if len(seeds) > 1 else run) / fold_name / "model"
    if not model.is_dir():
        raise SystemExit(f"{model}: no fold model; train with --save_fold_models true")
    return model


def write_result(benchmark: str, payload: dict, quick: bool = False, name: str | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name or benchmark}{'-quick' if quick else ''}.json"
    name = benchmark
    payload = {"benchmark": name, "quick": quick, "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "machine": machine(), "shared_machine_note": "CPU shared with other users' jobs while measured; "
               "compare the ratios measured within one run, not absolute seconds across runs", **payload}
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")
    return path
