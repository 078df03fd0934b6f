"""A per-corpus model tested on corpora it never heard (ser.training.evaluate_other_corpora): real models, real
clips of another corpus; the stored results and the card's section agree with each other, and what would not be
a test on unheard voices is refused."""

import json
import shutil

import pytest

from helpers import DATA, ROOT, require
from ser.reporting import other_corpora
from ser.reporting.card import OTHER_CORPORA_HEADING, write_card
from ser.reporting.results import corpus_keys, read
from ser.training.evaluate_other_corpora import evaluate, main

EMOVO_MODEL = ROOT / "models" / "ser-whisper-emovo"


@pytest.fixture(scope="module")
def rows():
    require(DATA / "emodb")
    return evaluate(EMOVO_MODEL, ["emodb"], limit=16)


def test_a_row_counts_every_clip_of_the_shared_emotions(rows):
    (row,) = rows
    labels = read(EMOVO_MODEL)["labels"]
    assert row["corpus"] == "emodb" and row["clips"] == 16 and row["refused"] == 0
    assert set(row["labels"]) <= set(labels) and "boredom" not in row["labels"]  # Emo-DB's, not the model's
    assert row["labels"] == [label for label in labels if label in row["labels"]]  # in the model's order
    confusion = row["confusion"]
    assert sum(map(sum, confusion)) == row["clips"]
    assert row["wa"] == pytest.approx(sum(confusion[i][i] for i in range(len(confusion))) / row["clips"])
    shared = [labels.index(label) for label in row["labels"]]
    assert all(sum(confusion[i]) == 0 for i in range(len(labels)) if i not in shared)  # truth only shared labels


def test_stored_results_render_on_the_card(rows, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(EMOVO_MODEL, folder)
    other_corpora.write(folder, "models/ser-whisper-emovo", "onnx", "the command", rows)
    card = write_card(folder).read_text()
    assert OTHER_CORPORA_HEADING in card and "the command" in card
    assert f"| Emo-DB | German | {', '.join(rows[0]['labels'])} | 16 | {100 * rows[0]['ua']:.1f} |" in card
    assert "tested only on the corpora above" in card
    (folder / other_corpora.FILENAME).write_text(json.dumps({"format_version": 1, "rows": [{"corpus": "x"}]}))
    with pytest.raises(ValueError, match="lacks"):
        write_card(folder)


def test_committed_results_are_on_unheard_corpora():
    found = sorted(ROOT.glob(f"models/*/{other_corpora.FILENAME}"))
    assert found, "no model folder carries results on other corpora"
    for path in found:
        stored = other_corpora.read(path.parent)
        trained = set(corpus_keys(read(path.parent)))
        assert stored["rows"] and not trained & {row["corpus"] for row in stored["rows"]}, path


def test_what_is_not_a_test_on_unheard_voices_is_refused(capsys):
    with pytest.raises(ValueError, match="trained on"):
        evaluate(EMOVO_MODEL, ["emovo"])
    with pytest.raises(SystemExit) as stopped:
        main([str(EMOVO_MODEL), "--corpora", "emovo", "emodb"])
    assert stopped.value.code == 2 and "trained on ['emovo']" in capsys.readouterr().err
