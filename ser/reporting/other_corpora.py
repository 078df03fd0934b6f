"""other_corpora_results.json: how a saved model's published weights do on corpora it never heard, beside it in its
folder; the only code that reads or writes it (ser.training.evaluate_other_corpora measures it, the card shows it).

    {"format_version": 1, "model": "models/ser-whisper-emodb", "runtime": "onnx", "command": "...",
     "rows": [{"corpus": "ravdess", "labels": [...], "clips": 1152, "refused": 0,
               "wa": 0.41, "ua": 0.40, "macro_f1": 0.38, "confusion": [[...]]}]}

Each row is one corpus: its clips whose emotion the model knows (`labels`, in the model's order), every one
classified (a clip the model refuses counts as wrong); UA averages recall over those labels; the confusion matrix
is over all the model's labels (it may answer one the corpus lacks).
"""

import json
from pathlib import Path

FILENAME = "other_corpora_results.json"
FORMAT_VERSION = 1
ROW_KEYS = ("corpus", "labels", "clips", "refused", "wa", "ua", "macro_f1", "confusion")


def check_rows(rows: list[dict], where: str) -> None:
    for row in rows:
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"{where}: the row of {row.get('corpus')!r} lacks {missing}")


def write(folder: str | Path, model: str, runtime: str, command: str, rows: list[dict]) -> Path:
    path = Path(folder) / FILENAME
    check_rows(rows, str(path))
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, "model": model, "runtime": runtime,
                                "command": command, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    return path


def read(folder: str | Path) -> dict | None:
    """The stored results beside a model, or None where there are none."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
    check_rows(data["rows"], str(path))
    return data
