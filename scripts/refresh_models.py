"""Re-write model folders with the current code: config.json, modeling_ser.py and the feature extractor as
`save_pretrained` writes them now, the same weights, and README.md cards rendered from the results.json beside them.

Run after changing modeling_ser.py or ser/reporting/card.py: the numbers always come from results.json (read, and upgraded
from the first one-seed format, by ser.reporting.results), never from the old card, and a test fails while a committed
folder differs from what this writes. A folder with results but no model gets its card only.

    python scripts/refresh_models.py                      # every folder under models/ and exports/
    python scripts/refresh_models.py models/ser-cnn-emodb # one folder (or a root searched recursively)
    python scripts/refresh_models.py models/ser-mix --cross_corpus runs/mix-loco
        # store a leave-one-corpus-out run's results.json beside one model (as cross_corpus_results.json,
        # validated) and re-render its card with the cross-corpus section
"""

import argparse
from pathlib import Path

from ser.reporting.card import write_card
from ser.reporting.export import add_cross_corpus, refresh
from ser.reporting.results import FILENAME

DEFAULT_ROOTS = ("models", "exports")


def result_folders(roots):
    """Every folder under the roots that holds a results.json, in stable order."""
    folders = set()
    for root in roots:
        root = Path(root)
        if (root / FILENAME).is_file():
            folders.add(root)
        folders.update(path.parent for path in root.rglob(FILENAME))
    return sorted(folders)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Re-write every model folder (and card) containing a results.json with the current code."
    )
    parser.add_argument(
        "roots",
        nargs="*",
        help="root folders to search recursively (default: models/ and exports/ where they exist)",
    )
    parser.add_argument(
        "--cross_corpus",
        metavar="RUN_FOLDER",
        help="a leave-one-corpus-out run folder (or its results.json) to store beside the one model folder given, "
             "as cross_corpus_results.json, before re-rendering that model's card",
    )
    args = parser.parse_args(argv)
    missing = [root for root in args.roots if not Path(root).is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    if args.cross_corpus:
        if len(args.roots) != 1 or not (Path(args.roots[0]) / FILENAME).is_file():
            parser.error("--cross_corpus needs exactly one model folder (one holding a results.json)")
        try:
            print(f"rewrote {add_cross_corpus(args.roots[0], args.cross_corpus)}")
        except (OSError, ValueError) as error:
            parser.error(str(error))
        return
    roots = args.roots or [root for root in DEFAULT_ROOTS if Path(root).is_dir()]
    folders = result_folders(roots)
    for folder in folders:
        print(f"rewrote {refresh(folder) if (folder / 'config.json').is_file() else write_card(folder)}")
    if not folders:
        print(f"no results.json found under: {', '.join(map(str, roots)) or '(no roots)'}")


if __name__ == "__main__":
    main()
