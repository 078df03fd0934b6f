"""Recipe search: runs the real `train_ser.py` once per recipe variant and tabulates what each one measured.

Every variant is a base config plus command-line overrides, trained and evaluated by train_ser.py itself (the same
data, model, augmentation and protocol code as any run), so what this measures is what train_ser.py trains.
Variants run as parallel processes of one thread each (on 2 cores, two at once is ~1.7x faster than one after the
other with two threads each).

    python benchmarks/recipe_search.py --config configs/emodb.yaml --name spk-aug \\
        --variant "aug=--normalisation speaker" \\
        --variant "no-aug=--normalisation speaker --augment false" \\
        --common "--only_folds speaker-03 speaker-09 speaker-11 speaker-13 speaker-15"

Writes benchmarks/results/recipe_search-<name>.json (per variant: the overrides, pooled WA/UA/macro-F1 mean ± std
over seeds, per-fold UA, minutes) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, write_result
from ser.reporting import results as results_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="base train_ser.py config (YAML)")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=OVERRIDES",
                        help="a variant: its name, '=', then train_ser.py options (repeat for more variants)")
    parser.add_argument("--common", default="", help="options added to every variant (e.g. --only_folds ...)")
    parser.add_argument("--name", required=True, help="names the results file and the run folders")
    parser.add_argument("--jobs", type=int, default=2, help="variants run at once, one thread each")
    parser.add_argument("--runs_dir", default="runs/recipe_search", help="where the variants' run folders go")
    return parser.parse_args(argv)


def run_variant(name: str, overrides: str, args) -> dict:
    output_dir = Path(args.runs_dir) / args.name / name
    log = output_dir.with_suffix(".log")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "train_ser.py"), "--config", args.config, "--train_final_model", "false",
               "--disable_tqdm", "true", *shlex.split(args.common), *shlex.split(overrides),
               "--output_dir", str(output_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"variant {name} failed (exit {done.returncode}); see {log}")
    results = results_file.read(output_dir)
    headline = results_file.headline(results)
    return {"overrides": overrides, "minutes": (time.perf_counter() - start) / 60, "seeds": headline["seeds"],
            **{key: headline[key] for key in ("wa", "ua", "macro_f1")},
            "fold_ua": {row["name"]: row["ua"]["mean"] for row in results_file.fold_table(results)}}


def main(argv=None) -> None:
    args = parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {name: pool.submit(run_variant, name, overrides, args) for name, overrides in variants.items()}
        measured = {name: future.result() for name, future in futures.items()}
    print(f"| variant | overrides | seeds | pooled UA | pooled WA | pooled macro-F1 | minutes (this call) |\n|---|---|---|---|---|---|---|")
    for name, m in measured.items():
        cell = lambda key: f"{m[key]['mean']:.3f} ± {m[key]['std']:.3f}"  # noqa: E731
        print(f"| {name} | `{m['overrides']}` | {m['seeds']} | {cell('ua')} | {cell('wa')} | {cell('macro_f1')} | "
              f"{m['minutes']:.1f} |")
    write_result(f"recipe_search-{args.name}", {"config": args.config, "common": args.common, "variants": measured})


if __name__ == "__main__":
    main()
