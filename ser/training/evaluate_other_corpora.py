"""How a saved model does on corpora it never heard: its published weights classify every clip of each other named
corpus whose emotion it knows, through the predictor on the default runtime, as a user's clips would be. The
results are stored beside the model (ser/reporting/other_corpora.py) and its card shows them.

    python -m ser.training.evaluate_other_corpora models/ser-whisper-emodb --corpora ravdess emovo

A model of one corpus has no leave-one-corpus-out run of its own (the mixture's has, with other labels): this is
its test on voices, languages and recordings it never met. A corpus that shares fewer than two of the model's
emotions is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ser.core import defaults
from ser.core.audio import AudioError
from ser.data.corpora import corpus_dir, load_corpus, select_labels
from ser.inference.predictor import EmotionPredictor
from ser.inference.runtime import RUNTIMES
from ser.reporting import other_corpora, results as results_file
from ser.reporting.card import write_card
from ser.reporting.metrics import classification_metrics


def corpus_row(predictor: EmotionPredictor, corpus: str, data_dir: str | None, limit: int | None = None) -> dict:
    """One corpus's row (other_corpora.ROW_KEYS): every clip of the model's emotions, or the first `limit`."""
    labels = predictor.labels
    clips = load_corpus(corpus, corpus_dir(corpus, data_dir))
    shared = [label for label in labels if label in {clip.label for clip in clips}]
    if len(shared) < 2:
        raise ValueError(f"{corpus} shares {shared or 'none'} of the model's emotions {labels}: nothing to rank")
    clips = select_labels(clips, shared)[:limit]
    truth, predicted, refused = [], [], 0
    for clip in tqdm(clips, desc=f"{corpus}", unit="clip"):
        truth.append(labels.index(clip.label))
        try:
            scores = predictor.classify_file(clip.path)
        except AudioError:
            refused += 1
            predicted.append(-1)  # wrong whatever the truth: the confusion matrix leaves it out
            continue
        predicted.append(labels.index(max(scores, key=scores.get)))
    metrics = classification_metrics(truth, predicted, len(labels))
    return {"corpus": corpus, "labels": shared, "clips": len(clips), "refused": refused, **metrics}


def evaluate(model_folder: str | Path, corpora: list[str], data_dir: str | None = None,
             runtime: str = defaults.RUNTIME, limit: int | None = None) -> list[dict]:
    """The rows for `corpora`, none of which the model trained on."""
    own = set(results_file.corpus_keys(results_file.read(model_folder)))
    trained = sorted(own & set(corpora))
    if trained:
        raise ValueError(f"the model trained on {trained}: a test there is not on voices it never heard")
    predictor = EmotionPredictor.from_pretrained(model_folder, runtime=runtime)
    return [corpus_row(predictor, corpus, data_dir, limit) for corpus in corpora]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved model folder with its results.json")
    parser.add_argument("--corpora", nargs="+", required=True, help="named corpora it never trained on")
    parser.add_argument("--data_dir",
                        help="the folder holding the named corpora (default $SER_DATA, else ../shared/data)")
    parser.add_argument("--runtime", default=defaults.RUNTIME, choices=RUNTIMES, help=f"default {defaults.RUNTIME}")
    args = parser.parse_args(argv)
    try:
        rows = evaluate(args.model, args.corpora, args.data_dir, args.runtime)
    except (OSError, ValueError) as error:
        parser.exit(2, f"evaluate_other_corpora: {error}\n")
    command = " ".join(["python -m ser.training.evaluate_other_corpora", *(argv if argv is not None else sys.argv[1:])])
    other_corpora.write(args.model, args.model, args.runtime, command, rows)
    print(f"card: {write_card(args.model)}")
    for row in rows:
        print(f"{row['corpus']}: UA {row['ua']:.3f} over {len(row['labels'])} emotions, {row['clips']} clips")


if __name__ == "__main__":
    main()
