"""Shared helpers for the benchmarks: machine description, timing statistics, tables and JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
EMODB = ROOT.parent / "shared" / "data" / "emodb"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    info = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "python": platform.python_version()}
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


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


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
