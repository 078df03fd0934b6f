"""A corpus (or a mixture) as a `datasets` folder with its evaluation folds as splits and a dataset card, ready for
`push_to_hub`, so others can reproduce our protocols with `load_dataset`/`load_from_disk` alone.

    python train_ser.py --config configs/emodb.yaml --export_dataset_dir datasets/emodb

Each split is one fold's test set (named after the fold), so "train on every other split, test on this one" is
the protocol; clips no fold tests (a fixed split's training part) form the split "train". The audio is embedded.
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets import Dataset, DatasetDict

from ser.data import corpora
from ser.data.splits import Fold


def split_name(fold: str) -> str:
    """A fold name as a valid split name (word characters only): "speaker-03" -> "speaker_03"."""
    return re.sub(r"\W+", "_", fold).strip("_")


def fold_splits(table: Dataset, folds: list[Fold]) -> DatasetDict:
    splits = {split_name(fold.name): table.select(fold.test) for fold in folds}
    if len(splits) != len(folds):
        raise ValueError(f"fold names collide as split names: {[fold.name for fold in folds]}")
    tested = {i for fold in folds for i in fold.test}
    rest = [i for i in range(len(table)) if i not in tested]
    if rest:
        splits["train"] = table.select(rest)
    return DatasetDict(splits)


def export_dataset(table: Dataset, folds: list[Fold], protocol: dict, name: str, corpus_names: list[str],
                   folder: str | Path) -> Path:
    """Writes the splits (`save_to_disk`, audio embedded) and README.md; returns the folder."""
    folder = Path(folder)
    splits = fold_splits(table, folds)
    splits.save_to_disk(str(folder))
    (folder / "README.md").write_text(dataset_card(splits, protocol, name, corpus_names))
    return folder


def dataset_card(splits: DatasetDict, protocol: dict, name: str, corpus_names: list[str]) -> str:
    infos = [corpora.corpus_info(corpus) for corpus in corpus_names]
    known = [info for info in infos if info]
    licences = sorted({info.license for info in known}) or [corpora.DEFAULT_LICENSE]
    languages = sorted({info.language for info in known})
    labels = next(iter(splits.values())).features["label"].names
    rows = "\n".join(f"| `{split}` | {len(part)} | {len(set(part['speaker']))} |" for split, part in splits.items())
    sources = "\n".join(f"- **{info.display_name}** ({info.language}), licence `{info.license}`" for info in known)
    citations = "\n\n".join(f"```bibtex\n{info.citation.strip()}\n```" for info in known if info.citation)
    header = "\n".join(["---", f"license: {licences[0] if len(licences) == 1 else 'other'}",
                        *(["language:", *(f"- {code}" for code in languages)] if languages else []),
                        "task_categories:", "- audio-classification", f"pretty_name: {name} (emotion, {protocol['description']})",
                        "---"])
    return f"""{header}

# {name}: speech emotion, {protocol['description']}

The clips of {name} with their emotion, speaker, corpus and language, in the splits of the protocol
**{protocol['description']}** ({'speaker-independent' if protocol['speaker_independent'] else 'speaker-dependent'}):
each split is one fold's test set. Train on all the other splits, test on one, and average over the splits to
compare with our published numbers.

Emotions ({len(labels)}): {', '.join(labels)}.

| split | clips | speakers |
|---|---|---|
{rows}

```python
from datasets import concatenate_datasets, load_dataset  # or load_from_disk for this folder
splits = load_dataset("<this repo>")
test = splits["{next(iter(splits))}"]
train = concatenate_datasets([part for name, part in splits.items() if name != "{next(iter(splits))}"])
```

Columns: `audio` (the original file, embedded), `label` (ClassLabel), `speaker`, `corpus`, `language`.
Our training script reads this folder with `train_ser.py --dataset_name <folder> --speaker_column_name speaker`.

## Sources and licences
The audio is the corpora's own; their licences apply to it and to models trained on it.

{sources or "- your own clips"}

{citations}
"""
