"""Prints a markdown table of results.json files (for the README), so no figure is typed by hand.

    python scripts/results_table.py models/ser-cnn-* results/*/

Pooled UA/WA/macro-F1: the metric of all folds' test predictions pooled, mean ± std over seeds (population std;
0 with one seed). UA over folds: mean ± std over every fold of every seed. Floor: the pooled UA of eGeMAPS + SVM
on the same corpus and folds, with or without per-speaker normalisation as the row
(benchmarks/baseline_opensmile.py's results, `--floor`). A mixture gets one more row per corpus: that corpus's test
clips pooled; for leave-one-corpus-out, with the floor of eGeMAPS + SVM with per-corpus z-normalisation on the same
held-out corpus (`baseline_opensmile.py --loco`).
"""

import argparse
import json
from pathlib import Path

from ser.reporting import results as results_file

HEADER = ("corpus", "protocol", "speaker norm.", "seeds", "pooled UA", "pooled WA", "pooled macro-F1",
          "UA over folds", "floor UA", "results")
FLOOR = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "baseline_opensmile.json"
LOCO_FLOOR = FLOOR.with_name("baseline_opensmile_loco.json")
LOCO_FLOOR_NORMALISATION = "per-corpus z-norm"


def spread(numbers: dict) -> str:
    return f"{numbers['mean']:.3f} ± {numbers['std']:.3f}"


def floor_ua(floor: dict, results: dict) -> str:
    """The handcrafted floor's pooled UA on this corpus, normalised as this run was (when measured)."""
    corpus = floor.get("corpora", {}).get(results["corpus"])
    if not corpus or corpus.get("labels") != results["labels"]:  # a floor on other emotions compares nothing
        return "–"
    measured = corpus["results"]["per-speaker z-norm" if results["speaker_normalisation"] else "none"]
    return f"{measured['summary']['pooled']['ua']:.3f}"


def corpus_rows(results: dict, loco_floor: dict) -> list[str]:
    """A mixture's per-corpus rows: pooled UA/WA/macro-F1 of that corpus's test clips, mean ± std over seeds."""
    rows = []
    floors = loco_floor.get("results", {}).get(LOCO_FLOOR_NORMALISATION, {})
    for corpus, numbers in results_file.per_corpus(results).items():
        floor = "–"
        if results["protocol"]["name"] == "loco" and corpus in floors:
            floor = f"{floors[corpus]['ua']:.3f}"
        held_out = "held out" if results["protocol"]["name"] == "loco" else "in the mixture"
        cells = (f"↳ {corpus} ({held_out})", "", "", "", spread(numbers["ua"]), spread(numbers["wa"]),
                 spread(numbers["macro_f1"]), "", floor, "")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def row(path: Path, floor: dict) -> str:
    results = results_file.read(path)
    headline, over_folds = results_file.headline(results), results_file.over_folds(results)
    protocol = results["protocol"]
    cells = (results["corpus"], f"{protocol['description']} ({protocol['folds']} folds)",
             "yes" if results["speaker_normalisation"] else "no", str(headline["seeds"]),
             spread(headline["ua"]), spread(headline["wa"]), spread(headline["macro_f1"]), spread(over_folds["ua"]),
             floor_ua(floor, results), f"`{path}`")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or results.json files")
    parser.add_argument("--floor", type=Path, default=FLOOR, help="baseline_opensmile.py's results (if present)")
    args = parser.parse_args()
    paths = args.paths
    floor = json.loads(args.floor.read_text()) if args.floor.is_file() else {}
    loco_floor = json.loads(LOCO_FLOOR.read_text()) if LOCO_FLOOR.is_file() else {}
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for path in paths:
        print(row(path, floor))
        for line in corpus_rows(results_file.read(path), loco_floor):
            print(line)


if __name__ == "__main__":
    main()
