"""What a prediction is, defined once: a clip's `Prediction` and a recording's `Segment`, as the predictor returns
them and every output writes them (predict_ser.py's CSV and JSON lines, the archive's parts, the demo and its API).
A new output is a new field here; the writers below follow it."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

FORMATS = (".csv", ".jsonl")


@dataclass(kw_only=True)
class Prediction:
    """A clip's probabilities; `file` and `error` where it came from a file (an error row has no scores)."""

    label: str | None = None
    scores: dict[str, float] | None = None
    uncertain: bool | None = None  # the top probability is below the predictor's `uncertain_below`
    file: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, scores: dict[str, float], uncertain_below: float, **where) -> Prediction:
        """The row for `scores`: the top label, and unsure where no probability reaches `uncertain_below`."""
        top = max(scores, key=scores.get)
        return cls(label=top, scores=scores, uncertain=scores[top] < uncertain_below, **where)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(kw_only=True)
class Segment(Prediction):
    """A stretch of a recording, in seconds from its start, with its words where they were asked for."""

    start: float | None = None
    end: float | None = None
    text: str | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start


def from_dict(row: dict) -> Prediction:
    """A row as `to_dict` wrote it (a segment has a start)."""
    return (Segment if "start" in row else Prediction)(**row)


# --- writers ---------------------------------------------------------------------------------------------------------


def check_output(path: str | Path | None) -> None:
    if path is not None and str(path) != "-" and Path(path).suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: the output must end in .csv or .jsonl")


def write(rows: Iterable[Prediction], labels: list[str], path: str | Path | None, words: bool = False) -> int:
    """Rows to .csv (one column per label) or .jsonl (a `scores` mapping each), as they arrive; None or "-": CSV on
    stdout. The CSV's columns follow the first row (a file's name and `error`, a segment's start and end) and
    `words` (a `text` column); a value with no column is an error, never dropped. Returns the number of error
    rows."""
    check_output(path)
    to_stdout = path is None or str(path) == "-"
    if not to_stdout:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    handle = sys.stdout if to_stdout else open(path, "w", newline="", encoding="utf-8")
    jsonl = not to_stdout and Path(path).suffix.lower() == ".jsonl"
    failed, writer = 0, None
    try:
        for row in rows:
            failed += row.error is not None
            if jsonl:
                handle.write(json.dumps(row.to_dict()) + "\n")
            else:
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=columns(row, labels, words), lineterminator="\n")
                    writer.writeheader()
                writer.writerow(_flat(row, labels))
            handle.flush()
    finally:
        if not to_stdout:
            handle.close()
    return failed


def columns(first: Prediction, labels: list[str], words: bool = False) -> list[str]:
    where = ["file"] if first.file is not None else []
    when = ["start", "end"] if isinstance(first, Segment) else []
    return where + when + ["label", "uncertain", *labels] + (["text"] if words else []) + (["error"] if where else [])


def _flat(row: Prediction, labels: list[str]) -> dict:
    """The row as CSV cells: the scores spread over the label columns; a field left None has no cell to fill."""
    values = {k: v for k, v in row.to_dict().items() if k != "scores" and v is not None}
    values.update({label: (row.scores or {}).get(label, "") for label in labels})
    return {key: "" if value is None else value for key, value in values.items()}
