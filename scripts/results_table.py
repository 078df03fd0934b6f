"""Prints a markdown table of results.json files (for the README), so no figure is typed by hand.

    python scripts/results_table.py models/emodb-default results/*/
"""

import argparse
import json
from pathlib import Path


def row(path: Path) -> str:
    results = json.loads((path / "results.json" if path.is_dir() else path).read_text())
    summary, protocol = results["summary"], results["protocol"]
    cell = lambda key: f"{summary[key]['mean']:.3f} ± {summary[key]['std']:.3f}"  # noqa: E731
    normalised = "yes" if results["speaker_normalisation"] else "no"
    return (f"| {results['corpus']} | {protocol['description']} ({protocol['folds']} folds) | {normalised} | "
            f"{cell('wa')} | {cell('ua')} | {cell('macro_f1')} | {summary['pooled']['ua']:.3f} | `{path}` |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or results.json files")
    paths = parser.parse_args().paths
    print("| corpus | protocol | speaker norm. | WA | UA | macro-F1 | pooled UA | results |")
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        print(row(path))


if __name__ == "__main__":
    main()
