"""ser/inference/rows.py: one definition of a prediction and a segment, and the writers every output goes through."""

import csv
import json

import pytest

from ser.inference import rows as outputs
from ser.inference.rows import Prediction, Segment

LABELS = ["angry", "sad"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_clip_rows_with_an_error_round_trip_through_csv_and_jsonl(tmp_path):
    rows = [Prediction.of({"angry": 0.3, "sad": 0.7}, 0.5, file="a.wav"), Prediction(file="b.wav", error="unreadable")]
    assert rows[0].label == "sad" and rows[0].uncertain is False
    assert outputs.write(rows, LABELS, tmp_path / "p.csv") == 1  # the error rows
    table = read_csv(tmp_path / "p.csv")
    assert list(table[0]) == ["file", "label", "uncertain", "angry", "sad", "error"]
    assert table[1] == {"file": "b.wav", "label": "", "uncertain": "", "angry": "", "sad": "", "error": "unreadable"}
    outputs.write(rows, LABELS, tmp_path / "p.jsonl")
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert [outputs.from_dict(json.loads(line)) for line in lines] == rows


def test_segments_write_their_times_and_words_only_where_asked(tmp_path):
    rows = [Segment.of({"angry": 0.9, "sad": 0.1}, 0.5, start=0.0, end=2.5, text="Kids are talking by the door.")]
    outputs.write(rows, LABELS, tmp_path / "words.csv", words=True)
    [row] = read_csv(tmp_path / "words.csv")
    assert list(row) == ["start", "end", "label", "uncertain", "angry", "sad", "text"]
    assert row["text"] == "Kids are talking by the door." and row["uncertain"] == "False"
    with pytest.raises(ValueError, match="text"):  # a value without a column is an error, never dropped
        outputs.write(rows, LABELS, tmp_path / "no-words.csv")


def test_an_output_must_be_csv_or_jsonl(tmp_path):
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        outputs.write([], LABELS, tmp_path / "p.txt")
