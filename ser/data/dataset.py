"""Labelled clips as a `datasets.Dataset`, one schema for our corpora, folders, CSVs and any audio dataset saved
with `datasets` (`save_to_disk`), laid out as an audiofolder, or on the Hub.

Columns: `audio` ({"path", "bytes"}: an `Audio` feature that datasets does not decode), `label` (a `ClassLabel`),
`speaker`, `corpus` and `language`. The protocols split by these columns (through `to_clips`). Audio is decoded
here with soundfile + soxr (ser.core.audio): 10x faster per clip than datasets' torchcodec path in the measurement issue
20 cites, and without torchcodec, which has no CPU build in the package index here.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Value, concatenate_datasets, load_dataset
from datasets import load_from_disk

from ser.data import corpora
from ser.core.audio import SAMPLING_RATE, AudioError, find_audio_files, load_audio, load_audio_bytes
from ser.data.corpora import UNKNOWN_SPEAKER, Clip, CorpusError

AUDIO = Audio(sampling_rate=SAMPLING_RATE, decode=False)
METADATA_COLUMNS = ("speaker", "corpus", "language")


def from_clips(clips: list[Clip], language: str | None = None) -> Dataset:
    """Our clips (registered corpora, folders, CSVs) in the common schema, labels sorted by name."""
    names = sorted({clip.label for clip in clips})
    table = Dataset.from_dict({
        "audio": [str(clip.path) for clip in clips],
        "label": [names.index(clip.label) for clip in clips],
        "speaker": [clip.speaker for clip in clips],
        "corpus": [clip.corpus or "" for clip in clips],
        "language": [language or _language(clip.corpus) for clip in clips],
    })
    return table.cast(Features({"audio": AUDIO, "label": ClassLabel(names=names), "speaker": Value("string"),
                                "corpus": Value("string"), "language": Value("string")}))


def _language(corpus: str | None) -> str:
    info = corpora.corpus_info(corpus) if corpus else None
    return info.language if info else ""


def to_clips(dataset: Dataset) -> list[Clip]:
    """The metadata the protocols need, one Clip per row (rows whose audio has no path are named `corpus[i]`)."""
    names = dataset.features["label"].names
    audio = audio_paths(dataset, "audio")
    columns = dataset.select_columns(["label", *METADATA_COLUMNS])[:]
    return [Clip(path=path or f"{corpus}[{i}]", label=names[label], speaker=speaker, corpus=corpus or None)
            for i, (path, label, speaker, corpus) in
            enumerate(zip(audio, columns["label"], columns["speaker"], columns["corpus"]))]


def audio_paths(dataset: Dataset, column: str) -> list[str | None]:
    """Each row's audio path, read from the Arrow column without touching the bytes (chunk by chunk: a column of
    embedded audio can exceed the 2 GB a single Arrow binary array holds)."""
    paths = [path for chunk in dataset.data.table.column(column).chunks for path in chunk.field("path").to_pylist()]
    if dataset._indices is not None:  # a selection (`select`) maps rows onto the table it shares
        paths = [paths[i] for i in dataset._indices.column(0).to_pylist()]
    return paths


def decode(audio: dict, name: str) -> np.ndarray:
    """One row's audio at SAMPLING_RATE: its embedded bytes, else its file."""
    if audio.get("bytes"):
        return load_audio_bytes(audio["bytes"], audio.get("path") or name)
    if audio.get("path"):
        return load_audio(audio["path"])
    raise AudioError(f"{name}: the row has neither audio bytes nor a path")


def decoded(dataset: Dataset, skip_bad: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(row, samples) for every readable row, one clip at a time, so memory does not grow with the dataset.
    Unreadable rows are reported by name and count at the end: an error by default, a printed report (and the rows
    left out) with `skip_bad`, never a silent drop."""
    bad = []
    for i, row in enumerate(dataset.select_columns(["audio", "corpus"])):
        try:
            yield i, decode(row["audio"], f"{row['corpus']}[{i}]")
        except AudioError as error:
            bad.append(str(error))
    if bad:
        report = f"{len(bad)} of {len(dataset)} audio files are unreadable or empty:\n  " + "\n  ".join(bad[:20])
        if not skip_bad:
            raise AudioError(report + "\n(fix or remove them, or pass --skip_bad_files to leave them out)")
        print(report + "\n(left out because of --skip_bad_files)", file=sys.stderr)  # a report, not a warning
    if len(bad) == len(dataset):
        raise AudioError("no readable audio left")


def readable(dataset: Dataset, skip_bad: bool = False) -> Dataset:
    """The rows whose audio decodes (a first pass, one clip at a time; see `decoded` for the report)."""
    rows = [i for i, _ in tqdm(decoded(dataset, skip_bad), total=len(dataset), desc="checking audio", unit="clip")]
    return dataset if len(rows) == len(dataset) else dataset.select(rows)


# --- any dataset in ---------------------------------------------------------------------------------------------
def load_any(name: str, config: str | None = None, audio_column: str = "audio", label_column: str = "label",
             speaker_column: str | None = None, speaker_regex: str | None = None, language: str | None = None,
             label_mapping: dict[str, str] | None = None) -> Dataset:
    """A dataset by Hub id, or a local folder (saved with `save_to_disk`, or an audiofolder: audio files with a
    metadata.csv naming each `file_name` with its `label` and `speaker`, or one folder per label, optionally inside
    split folders), in the common schema: all splits together, labels as our names (`corpora.canonical_label`, after
    `label_mapping`), speakers from `speaker_column` (an audiofolder's metadata: its `speaker` column unless told
    otherwise) or, failing that, from the file names by `speaker_regex`, else unknown (then only a random split is
    possible)."""
    source = _read(name, config, audio_column)
    if speaker_column is None and speaker_regex is None and SPEAKER in source.column_names and metadata_files(name):
        speaker_column = SPEAKER
    for column in (audio_column, label_column, speaker_column):
        if column and column not in source.column_names:
            raise CorpusError(f"{name}: no column {column!r}; the columns are {source.column_names}")
    labels = _label_names(source, label_column, label_mapping or {})
    speakers = (source[speaker_column] if speaker_column else
                _speakers_from_paths(source, audio_column, speaker_regex) if speaker_regex else None)
    corpus = Path(name).name if Path(name).is_dir() else name
    names = sorted(set(labels))
    table = Dataset.from_dict({
        "label": [names.index(label) for label in labels],
        "speaker": [str(s) for s in speakers] if speakers is not None else [UNKNOWN_SPEAKER] * len(source),
        "corpus": [corpus] * len(source), "language": [language or ""] * len(source),
    }, features=Features({"label": ClassLabel(names=names), "speaker": Value("string"), "corpus": Value("string"),
                          "language": Value("string")}))
    audio = source.select_columns([audio_column]).cast_column(audio_column, AUDIO)
    if audio_column != "audio":
        audio = audio.rename_column(audio_column, "audio")
    return concatenate_datasets([audio, table], axis=1)


def _read(name: str, config: str | None, audio_column: str) -> Dataset:
    folder = Path(name)
    if folder.is_dir() and any((folder / f).exists() for f in ("dataset_dict.json", "state.json")):
        data = load_from_disk(str(folder))
    elif folder.is_dir():
        data = _audiofolder(folder, audio_column)
    else:
        data = load_dataset(name, config)  # a Hub id (needs the network unless it is in the local cache)
    if isinstance(data, DatasetDict):
        data = concatenate_datasets([data[split] for split in data])
    return data


def _audiofolder(folder: Path, audio_column: str) -> Dataset:
    """An audiofolder: with metadata files (`metadata_table`), or label folders (optionally in split folders)
    through datasets' own builder. Its audio and label are read as plain strings: datasets encodes an `Audio`
    column through torchcodec, which is not needed to read paths."""
    if metadata_files(folder):
        return metadata_table(folder, audio_column)
    features = Features({audio_column: Value("string"), "label": Value("string")})
    return load_dataset("audiofolder", data_dir=str(folder), drop_labels=False, features=features)


METADATA_FILES = ("metadata.csv", "metadata.jsonl")  # datasets' audiofolder names
FILE_NAME = "file_name"  # its column naming each clip, relative to the metadata file's folder
SPEAKER = "speaker"  # the metadata column a speaker-independent protocol splits by


def metadata_files(folder: str | Path) -> list[Path]:
    """The metadata files of an audiofolder (any level, e.g. one per split folder); [] for other folders."""
    folder = Path(folder)
    return sorted(path for name in METADATA_FILES for path in folder.rglob(name)) if folder.is_dir() else []


def metadata_table(folder: Path, audio_column: str = "audio") -> Dataset:
    """An audiofolder as the `datasets` documentation lays it out for audio classification: audio files and a
    metadata.csv (or .jsonl) whose `file_name` column names each clip relative to the metadata file, and further
    columns (`label`, `speaker`, ...) read as strings. Every file named must exist (missing ones are listed, never
    dropped); audio files no metadata names are left out, and counted in a warning."""
    rows, bad = [], []
    for metadata in metadata_files(folder):
        entries = _metadata_rows(metadata)
        for line, entry in enumerate(entries, start=2 if metadata.suffix == ".csv" else 1):
            name = entry.pop(FILE_NAME, "")
            path = metadata.parent / name
            if not name or not path.is_file():
                bad.append(f"{metadata.relative_to(folder)} line {line}: {name!r}")
                continue
            rows.append({audio_column: str(path), **entry})
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CorpusError(f"{folder}: {len(bad)} clip(s) named in {FILE_NAME} are missing: {', '.join(bad[:5])}{more}")
    if not rows:
        raise CorpusError(f"{folder}: its metadata files name no clips")
    named = {Path(row[audio_column]).resolve() for row in rows}
    unnamed = [path for path in find_audio_files(folder) if path.resolve() not in named]
    if unnamed:
        warnings.warn(f"{folder}: {len(unnamed)} audio file(s) no metadata file names are left out, e.g. "
                      f"{unnamed[0].relative_to(folder)}", stacklevel=2)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return Dataset.from_dict({column: [row.get(column, "") for row in rows] for column in columns},
                             features=Features({column: Value("string") for column in columns}))


def metadata_columns(files: list[Path]) -> set[str]:
    """Every column the metadata files have."""
    return {column for path in files for row in _metadata_rows(path) for column in row}


def _metadata_rows(metadata: Path) -> list[dict[str, str]]:
    """One dict of strings per clip ("" for an empty value); a file without a `file_name` column is refused."""
    if metadata.suffix == ".csv":
        with metadata.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            entries = [{key.strip(): (value or "").strip() for key, value in row.items() if key} for row in reader]
    else:
        entries = [json.loads(line) for line in metadata.read_text(encoding="utf-8").splitlines() if line.strip()]
        entries = [{key: "" if value is None else str(value) for key, value in entry.items()} for entry in entries]
        columns = list(dict.fromkeys(key for entry in entries for key in entry))
    if FILE_NAME not in columns:
        raise CorpusError(f"{metadata}: an audiofolder's metadata needs a {FILE_NAME!r} column (the clip's path "
                          f"relative to this file), got {columns}")
    return entries


def _label_names(source: Dataset, column: str, mapping: dict[str, str]) -> list[str]:
    feature = source.features[column]
    raw = source[column]
    if isinstance(feature, ClassLabel):
        raw = feature.int2str(raw)
    return [corpora.canonical_label(mapping.get(str(label), str(label))) for label in raw]


def _speakers_from_paths(source: Dataset, audio_column: str, pattern: str) -> list[str]:
    regex, speakers = re.compile(pattern), []
    for path in audio_paths(source.cast_column(audio_column, AUDIO), audio_column):
        match = regex.search(Path(path or "").stem)
        if not match:
            raise CorpusError(f"--speaker_regex {pattern!r} finds no speaker in {path!r}")
        speakers.append(match.group("speaker") if "speaker" in regex.groupindex else match.group(1))
    return speakers


def parse_label_mapping(pairs: list[str] | None) -> dict[str, str]:
    """["0=angry", "hap=happy"] -> {"0": "angry", "hap": "happy"}: the dataset's label, then ours."""
    mapping = {}
    for pair in pairs or []:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--label_mapping {pair!r}: write each as DATASET_LABEL=OUR_LABEL, e.g. hap=happy")
        mapping[source] = target
    return mapping
