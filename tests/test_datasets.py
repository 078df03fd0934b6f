"""Any audio dataset in (a folder saved with `datasets`, an audiofolder), corpora out as datasets, and the encoder
feature cache as a `datasets` table shared by processes: real Emo-DB clips through train_ser.py."""

import csv
import json
import shutil
import sys

import numpy as np
import pytest
from datasets import Audio, ClassLabel, Dataset, concatenate_datasets, load_from_disk

from helpers import EMODB, SPEAKERS, require, small_emodb_csv, tiny_spec, train
from ser.data import dataset
from ser.core.audio import load_audio
from ser.data.corpora import load_emodb

TWO_PROCESSES = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")


def emodb_subset(per_speaker=8):
    clips = load_emodb(require(EMODB))
    return [c for s in SPEAKERS for c in [c for c in clips if c.speaker == s and c.label in ("angry", "sad")][:per_speaker]]


def results_of(folder):
    return json.loads((folder / "results.json").read_text())


def test_train_on_a_saved_dataset_with_its_own_column_names_and_labels(tmp_path):
    """A dataset as someone else saved it: audio embedded, the emotion as a ClassLabel of other names (mapped
    explicitly), the speaker in a column of its own. Leave-one-speaker-out works from that column."""
    clips = emodb_subset()
    codes = {"angry": "W", "sad": "T"}  # Emo-DB's own letters (Wut, Trauer)
    saved = Dataset.from_dict({"file": [c.path for c in clips], "emotion": [codes[c.label] for c in clips],
                               "actor": [int(c.speaker) for c in clips]})
    saved = saved.cast_column("file", Audio()).cast_column("emotion", ClassLabel(names=["T", "W"]))
    saved.train_test_split(test_size=0.25, seed=0).save_to_disk(str(tmp_path / "saved"))  # two splits, bytes inside
    out = tmp_path / "run"
    train(tmp_path, "--dataset_name", tmp_path / "saved", "--audio_column_name", "file", "--label_column_name",
          "emotion", "--speaker_column_name", "actor", "--label_mapping", "W=angry", "T=sad", "--encoder_config",
          tiny_spec(tmp_path), "--only_folds", "speaker-8", "--num_train_epochs", 1, "--train_final_model", "false",
          "--output_dir", out)
    results = results_of(out)
    assert results["labels"] == ["angry", "sad"] and results["protocol"]["speaker_independent"]
    fold = results["runs"][0]["folds"][0]
    assert fold["test_speakers"] == ["8"] and fold["n_test"] == 8  # all splits together, one speaker held out


def test_train_on_an_audiofolder_with_speakers_from_file_names(tmp_path):
    folder = tmp_path / "audiofolder"
    for clip in emodb_subset(per_speaker=6):
        (folder / clip.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip.path, folder / clip.label)
    common = ["--dataset_name", folder, "--speaker_regex", r"^(\d\d)", "--encoder_config", tiny_spec(tmp_path),
              "--only_folds", "speaker-03", "--num_train_epochs", 2, "--train_final_model", "false"]
    done = train(tmp_path, *common, "--output_dir", tmp_path / "run")
    results = results_of(tmp_path / "run")
    assert results["corpus"] == "audiofolder" and results["labels"] == ["angry", "sad"]
    assert results["runs"][0]["folds"][0]["n_test"] == 6
    assert done.stdout.count("'test_ua'") == 1  # the Trainer logs the fold's UA (ser/reporting/ser_metrics)
    # evaluating the test speaker after every epoch logs UA each time and changes nothing in the training
    watched = train(tmp_path, *common, "--eval_strategy", "epoch", "--output_dir", tmp_path / "watched")
    assert watched.stdout.count("'eval_ua'") == 2
    assert results_of(tmp_path / "watched")["runs"][0]["folds"][0]["logits"] == results["runs"][0]["folds"][0]["logits"]
    # without speakers, only the random protocol is possible, and it says so
    failed = train(tmp_path, "--dataset_name", folder, "--encoder_config", tiny_spec(tmp_path), "--output_dir",
                   tmp_path / "nospeaker", check=False)
    assert failed.returncode != 0 and "needs speaker ids" in failed.stderr


def test_a_corpus_exported_as_a_dataset_has_its_folds_as_splits_and_trains_again(tmp_path):
    corpus = small_emodb_csv(tmp_path, per_speaker=6)
    exported = tmp_path / "exported"
    train(tmp_path, "--corpus", "csv", "--data_root", corpus, "--encoder_config", tiny_spec(tmp_path),
          "--export_dataset_dir", exported)
    splits = load_from_disk(str(exported))
    assert sorted(splits) == [f"speaker_{s}" for s in SPEAKERS]
    assert "leave-one-speaker-out" in (exported / "README.md").read_text()
    for name, part in splits.items():
        assert set(part["speaker"]) == {name.split("_")[1]} and len(part) == 6
        row = part.cast_column("audio", dataset.AUDIO)[0]["audio"]
        assert row["bytes"]  # embedded: the folder stands alone
        original = next(c for c in load_emodb(require(EMODB)) if c.path.endswith(row["path"]))
        np.testing.assert_array_equal(dataset.decode(row, name), load_audio(original.path))
    out = tmp_path / "again"
    train(tmp_path, "--dataset_name", exported, "--speaker_column_name", "speaker", "--encoder_config",
          tiny_spec(tmp_path), "--only_folds", "speaker-09", "--num_train_epochs", 1, "--train_final_model", "false",
          "--output_dir", out)
    assert results_of(out)["runs"][0]["folds"][0]["n_test"] == 6


def cached_frames(folder) -> dict[str, bytes]:
    table = concatenate_datasets([Dataset.from_file(str(f)) for f in sorted(folder.glob("*.arrow"))])
    return dict(zip(table["key"], table["frames"]))


def test_two_processes_extract_the_features_one_would_and_a_second_run_reads_them(tmp_path):
    """Each of two processes encodes half the clips into its own file; together they hold exactly the frames one
    process computes, and a later run finds every clip there."""
    corpus, spec = small_emodb_csv(tmp_path, per_speaker=6), tiny_spec(tmp_path, "wavlm")
    common = ["--corpus", "csv", "--data_root", corpus, "--encoder_config", spec, "--mode", "frozen",
              "--num_train_epochs", 1, "--train_final_model", "false", "--only_folds", "speaker-03",
              "--per_device_train_batch_size", 4, "--copies", 1]
    train(tmp_path, *common, "--output_dir", tmp_path / "two", launcher=TWO_PROCESSES)
    train(tmp_path, *common, "--output_dir", tmp_path / "one")
    two, one = results_of(tmp_path / "two")["feature_cache"], results_of(tmp_path / "one")["feature_cache"]
    assert (two["hits"], two["misses"]) == (one["hits"], one["misses"]) == (0, 36)  # 18 clips and a copy each
    assert two["folder"].split("/")[-1] == one["folder"].split("/")[-1]  # the same encoder fingerprint
    shared = tmp_path / "two" / "feature-cache"
    assert len(list(next(shared.iterdir()).glob("*.arrow"))) == 2  # one file per process
    assert cached_frames(next(shared.iterdir())) == cached_frames(next((tmp_path / "one" / "feature-cache").iterdir()))
    train(tmp_path, *common, "--output_dir", tmp_path / "two", "--only_folds", "speaker-08")  # one process reads it
    again = results_of(tmp_path / "two")["feature_cache"]
    assert (again["hits"], again["misses"]) == (36, 0)


def test_the_clips_of_a_selection_are_the_selected_rows():
    """A selection shares its table (datasets keeps an index mapping): the metadata must follow the mapping."""
    clips = load_emodb(require(EMODB))
    rows = [500, 3, 250]
    picked = dataset.to_clips(dataset.from_clips(clips).select(rows))
    assert [(c.path, c.label, c.speaker, c.corpus) for c in picked] == [
        (clips[i].path, clips[i].label, clips[i].speaker, clips[i].corpus) for i in rows]


EMODB_LETTERS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}


def metadata_audiofolder(folder, speakers=SPEAKERS, per_speaker=20, speaker_column=True):
    """~60 real Emo-DB clips linked into an audiofolder as the `datasets` documentation lays one out for audio
    classification: the clips (here in a subfolder) and a metadata.csv naming each `file_name` with its `label`
    and `speaker`, parsed from the Emo-DB names (speaker: characters 1-2; emotion: letter 6)."""
    (folder / "clips").mkdir(parents=True)
    rows = []
    for speaker in speakers:
        for wav in sorted((require(EMODB) / "wav").glob(f"{speaker}*.wav"))[:per_speaker]:
            (folder / "clips" / wav.name).symlink_to(wav)
            rows.append([f"clips/{wav.name}", EMODB_LETTERS[wav.stem[5]], *([wav.stem[:2]] if speaker_column else [])])
    with (folder / "metadata.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["file_name", "label", *(["speaker"] if speaker_column else [])], *rows])
    return rows


def test_an_audiofolder_with_metadata_trains_speaker_independently(tmp_path):
    """`--dataset_name FOLDER` with a metadata.csv (file_name, label, speaker): leave-one-speaker-out from the speaker
    column by itself, every fold by speaker, results.json written; its card and the demo's description say only
    what is known of such data (no "actors")."""
    from ser.reporting.card import render_card

    folder = tmp_path / "my clips"
    rows = metadata_audiofolder(folder)
    out = tmp_path / "run"
    train(tmp_path, "--dataset_name", folder, "--encoder_config", tiny_spec(tmp_path, "logmel-cnn"),
          "--num_train_epochs", 1, "--train_final_model", "false", "--output_dir", out)
    results = results_of(out)
    assert results["corpus"] == "my clips" and results["labels"] == sorted({row[1] for row in rows})
    assert results["protocol"]["name"] == "loso" and results["protocol"]["speaker_independent"] is True
    assert results["protocol"]["description"] == "leave-one-speaker-out" and results["protocol"]["folds"] == 3
    folds = results["runs"][0]["folds"]
    assert [(fold["name"], fold["test_speakers"], fold["n_test"]) for fold in folds] == [
        (f"speaker-{speaker}", [speaker], 20) for speaker in SPEAKERS]
    card = render_card({**results, "hub_model_id": "someone/my-model"})
    assert "actor" not in card.lower() and "None" not in card
    assert "given as a folder, CSV or dataset (`my clips`)" in card
    assert "Learned from people (3 voices)." in card  # the plain-words section the demo shows


def test_an_audiofolder_without_speakers_is_refused_unless_the_random_split_is_asked_for(tmp_path):
    from ser.training.arguments import parse_arguments
    from ser.training.experiment import read_corpus

    folder = tmp_path / "no speakers"
    metadata_audiofolder(folder, per_speaker=8, speaker_column=False)
    common = ["--dataset_name", folder, "--encoder_config", tiny_spec(tmp_path, "logmel-cnn"), "--num_train_epochs", 1,
              "--train_final_model", "false"]
    with pytest.raises(dataset.CorpusError) as refused:  # as train_ser.py reads it, before any audio is
        read_corpus(parse_arguments([*map(str, common), "--output_dir", str(tmp_path / "refused")])[0])
    assert "--protocol loso needs speaker ids" in str(refused.value) and "(metadata.csv) has no 'speaker' column" \
        in str(refused.value) and "--protocol random" in str(refused.value)
    train(tmp_path, *common, "--protocol", "random", "--num_folds", 2, "--only_folds", "random-1of2",
          "--output_dir", tmp_path / "random")
    protocol = results_of(tmp_path / "random")["protocol"]
    assert protocol["name"] == "random" and protocol["speaker_independent"] is False
    assert protocol["description"] == "random (speaker-dependent)"


def test_an_audiofolder_metadata_naming_a_missing_clip_is_refused(tmp_path):
    folder = tmp_path / "broken"
    metadata_audiofolder(folder, per_speaker=2)
    (folder / "clips" / "03a01Fa.wav").unlink()
    with pytest.raises(dataset.CorpusError, match=r"1 clip\(s\) named in file_name are missing: metadata.csv line 2"):
        dataset.load_any(str(folder))
