"""Prints a markdown table of results.json files (for the README), so no figure is typed by hand.

    python scripts/results_table.py models/emodb-default results/*/

Pooled UA/WA/macro-F1: the metric of all folds' test predictions pooled, mean ± std over seeds (population std;
0 with one seed). UA over folds: mean ± std over every fold of every seed.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ser import results as results_file  # noqa: E402

HEADER = ("corpus", "protocol", "speaker norm.", "seeds", "pooled UA", "pooled WA", "pooled macro-F1",
          "UA over folds", "results")


def spread(numbers: dict) -> str:
    return f"{numbers['mean']:.3f} ± {numbers['std']:.3f}"


def row(path: Path) -> str:
    results = results_file.read(path)
    headline, over_folds = results_file.headline(results), results_file.over_folds(results)
    protocol = results["protocol"]
    cells = (results["corpus"], f"{protocol['description']} ({protocol['folds']} folds)",
             "yes" if results["speaker_normalisation"] else "no", str(headline["seeds"]),
             spread(headline["ua"]), spread(headline["wa"]), spread(headline["macro_f1"]), spread(over_folds["ua"]),
             f"`{path}`")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or results.json files")
    paths = parser.parse_args().paths
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for path in paths:
        print(row(path))


if __name__ == "__main__":
    main()
