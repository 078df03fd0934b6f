"""train_ser.py end to end on real Emo-DB clips: results, resume, two processes, the feature cache, bad data."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import EMODB, ROOT, SPEAKERS, TINY_SPECS, require, small_emodb_csv, tiny_spec, train
import speech_ser as speech
from ser.data.corpora import load_emodb

@pytest.mark.slow
def test_real_emodb_end_to_end(tmp_path):
    """The real corpus through the real loader: two speaker-independent folds, results, plot and final model."""
    out = tmp_path / "run"
    train(tmp_path, "--corpus", "emodb", "--data_root", require(EMODB), "--encoder_config", tiny_spec(tmp_path),
          "--only_folds", "speaker-03", "speaker-16", "--num_train_epochs", 2, "--learning_rate", 2e-3,
          "--pooling", "stats", "--head_hidden_sizes", 16, "--output_dir", out)
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["description"] == "leave-one-speaker-out"
    assert results["protocol"]["speaker_independent"] and results["protocol"]["folds"] == 2
    assert results["encoder"]["pretrained"] is False and results["speaker_normalisation"] is False
    assert [f["test_speakers"] for f in results["runs"][0]["folds"]] == [["03"], ["16"]]
    assert [f["n_test"] for f in results["runs"][0]["folds"]] == [49, 71]  # counts from the corpus README
    assert len(results["labels"]) == 7 and results["trust_remote_code"] is True
    pooled = results["summary"]["pooled"]
    assert np.sum(pooled["confusion"]) == 120 and 0 <= pooled["ua"] <= 1
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    assert "only_folds:\n- speaker-03\n- speaker-16\n" in (out / "run_config.yaml").read_text()  # the resolved options
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_ser.py"} <= {
        p.name for p in (out / "final").iterdir()}


def test_random_split_is_labelled_speaker_dependent(tmp_path):
    out = tmp_path / "run"
    train(tmp_path, "--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config",
          tiny_spec(tmp_path), "--protocol", "random", "--num_folds", 2, "--num_train_epochs", 1,
          "--train_final_model", "false", "--output_dir", out)
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["description"] == "random (speaker-dependent)"
    assert results["protocol"]["speaker_independent"] is False


def test_yaml_config_with_command_line_override(tmp_path):
    config = tmp_path / "corpus.yaml"
    config.write_text(f"corpus: csv\ndata_root: {small_emodb_csv(tmp_path)}\nencoder_config: {tiny_spec(tmp_path)}\n"
                      f"output_dir: {tmp_path / 'from-yaml'}\nnum_train_epochs: 5\nlabels: [angry, sad]\n"
                      "train_final_model: false\npooling: attentive\n")
    out = tmp_path / "overridden"
    train(tmp_path, "--config", config, "--num_train_epochs", 1, "--output_dir", out)
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == ["angry", "sad"] and results["training"]["epochs"] == 1
    assert results["head"]["pooling"] == "attentive" and not (tmp_path / "from-yaml").exists()


def is_json(path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except ValueError:
        return False


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config", tiny_spec(tmp_path),
            "--only_folds", "speaker-03", "--num_train_epochs", 40, "--per_device_train_batch_size", 4,
            "--save_strategy", "steps", "--save_steps", 10, "--train_final_model", "false", "--output_dir", out]
    run = train(tmp_path, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((out / "speaker-03").glob("checkpoint-20")) and time.time() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    # Killed as checkpoint-20 appeared, it is usually half written: the resume must use the newest complete one.
    complete = sorted(int(p.parent.name.split("-")[1]) for p in (out / "speaker-03").glob("checkpoint-*/trainer_state.json")
                      if is_json(p))
    assert complete and not (out / "results.json").exists()
    resumed = train(tmp_path, *args)
    assert f"speaker-03: resuming from {out / 'speaker-03' / f'checkpoint-{complete[-1]}'}" in resumed.stdout
    assert json.loads((out / "results.json").read_text())["runs"][0]["folds"][0]["n_test"] == 12


def test_two_process_accelerate_launch_gives_one_result(tmp_path):
    out = tmp_path / "run"
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")
    done = train(tmp_path, "--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config",
                 tiny_spec(tmp_path), "--only_folds", "speaker-08", "--num_train_epochs", 1,
                 "--per_device_train_batch_size", 4, "--output_dir", out, launcher=launcher)
    assert done.stdout.count("leave-one-speaker-out, 1 seed(s): pooled wa") == 1  # the summary is written by one process only
    assert "ParallelMode" not in done.stderr  # the Trainer did join the process group
    results = json.loads((out / "results.json").read_text())
    assert results["training"]["batch_size"] == 8  # 4 per process x 2 processes
    assert results["runs"][0]["folds"][0]["n_test"] == 12 and len(results["runs"][0]["folds"][0]["y_pred"]) == 12
    assert (out / "final" / "model.safetensors").exists()


def test_frozen_mode_reads_features_from_the_cache_the_second_time(tmp_path):
    corpus, spec = small_emodb_csv(tmp_path), tiny_spec(tmp_path, "wavlm")
    common = ["--corpus", "csv", "--data_root", corpus, "--encoder_config", spec, "--mode", "frozen",
              "--feature_layer", "weighted", "--num_train_epochs", 2, "--train_final_model", "false",
              "--output_dir", tmp_path / "run", "--normalisation", "speaker"]
    train(tmp_path, *common, "--only_folds", "speaker-03")
    first = json.loads((tmp_path / "run" / "results.json").read_text())["feature_cache"]
    assert (first["hits"], first["misses"]) == (0, 36)
    train(tmp_path, *common, "--only_folds", "speaker-09")
    second = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (second["feature_cache"]["hits"], second["feature_cache"]["misses"]) == (36, 0)
    assert second["speaker_normalisation"] is True and second["head"]["freeze_backbone"] is True
    train(tmp_path, *common[:-2], "--feature_layer", "last", "--only_folds", "speaker-09")  # other layer: new key
    third = json.loads((tmp_path / "run" / "results.json").read_text())["feature_cache"]
    assert third["misses"] == 36 and third["folder"] != first["folder"]


def test_bad_data_is_reported_by_name(tmp_path):
    """Refusals before any training (in-process: train_ser.main raises them), and --skip_bad_files run for real."""
    import train_ser

    corpus = small_emodb_csv(tmp_path)
    (tmp_path / "broken.wav").write_bytes(b"not audio at all" * 100)
    with corpus.open("a") as f:
        f.write(f"{tmp_path / 'broken.wav'},angry,03\n")
    base = ["--corpus", "csv", "--data_root", str(corpus), "--encoder_config", str(tiny_spec(tmp_path)),
            "--num_train_epochs", "1", "--train_final_model", "false", "--only_folds", "speaker-03", "--report_to",
            "none"]
    with pytest.raises(Exception, match=r"(?s)1 of 37 audio files are unreadable.*broken\.wav.*--skip_bad_files"):
        train_ser.main([*base, "--output_dir", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="furious"):
        train_ser.main([*base, "--labels", "angry", "furious", "--output_dir", str(tmp_path / "c")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no usable audio files found"):
        train_ser.main([*base[4:], "--corpus", "emodb", "--data_root", str(tmp_path / "empty"),
                        "--output_dir", str(tmp_path / "d")])
    skipped = train(tmp_path, *base, "--skip_bad_files", "true", "--output_dir", tmp_path / "b")
    assert "broken.wav" in skipped.stderr


def test_folder_corpus_with_speaker_regex(tmp_path):
    """One folder per label, the speaker found in the file name: real Emo-DB clips linked into that layout."""
    for clip in load_emodb(require(EMODB)):
        if clip.speaker in SPEAKERS and clip.label in ("angry", "sad"):
            folder = tmp_path / "corpus" / clip.label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"spk{clip.speaker}_{Path(clip.path).name}").symlink_to(clip.path)
    out = tmp_path / "run"
    common = ["--corpus", "folder", "--data_root", tmp_path / "corpus", "--encoder_config", tiny_spec(tmp_path),
              "--num_train_epochs", 1, "--train_final_model", "false", "--only_folds", "speaker-09", "--output_dir", out]
    without = train(tmp_path, *common, check=False)
    assert without.returncode != 0 and "random (speaker-dependent)" in without.stderr
    train(tmp_path, *common, "--speaker_regex", r"^spk(?P<speaker>\d+)_")
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == ["angry", "sad"] and results["runs"][0]["folds"][0]["test_speakers"] == ["09"]


def test_seeds_run_writes_per_seed_and_aggregate_numbers(tmp_path):
    """--seeds runs the protocol once per seed; the logmel-cnn saves the training clips' statistics it used."""
    from safetensors.torch import load_file
    from sklearn.metrics import recall_score

    out = tmp_path / "run"
    train(tmp_path, "--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config",
          tiny_spec(tmp_path, "logmel-cnn"), "--seeds", 0, 1, "--augment", "true", "--mixup_alpha", 0.2,
          "--crop_seconds", 1.0, "--num_train_epochs", 1, "--only_folds", "speaker-03", "speaker-08",
          "--output_dir", out)
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and [run["seed"] for run in results["runs"]] == [0, 1]
    pooled_ua = []
    for run in results["runs"]:
        assert [fold["name"] for fold in run["folds"]] == ["speaker-03", "speaker-08"]
        y_true = [y for fold in run["folds"] for y in fold["y_true"]]
        y_pred = [y for fold in run["folds"] for y in fold["y_pred"]]
        pooled_ua.append(recall_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0))
        assert run["summary"]["pooled"]["ua"] == pytest.approx(pooled_ua[-1])
    over_seeds = results["summary"]["over_seeds"]["ua"]
    assert over_seeds["values"] == pytest.approx(pooled_ua)
    assert over_seeds["mean"] == pytest.approx(np.mean(pooled_ua)) and over_seeds["std"] == pytest.approx(np.std(pooled_ua))
    assert results["augmentation"]["augment"] is True and results["encoder"]["family"] == "logmel-cnn"
    assert (out / "seed-0" / "speaker-03" / "fold_result.json").exists()
    assert (out / "seed-1" / "speaker-08" / "fold_result.json").exists()
    stats = load_file(out / "final" / "model.safetensors")["cnn.global_stats"]
    assert stats.shape == (2, 32) and stats[0].abs().min() > 0.5  # log-mel means of real speech, not the initial 0


def small_csv(tmp_path, name, clips, speakers, per_label=3):
    """A CSV corpus of `per_label` real clips per speaker of each of angry, neutral and sad."""
    path = tmp_path / f"{name}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "speaker"])
        for speaker in speakers:
            for label in ("angry", "neutral", "sad"):
                chosen = [c for c in clips if c.speaker == speaker and c.label == label][:per_label]
                writer.writerows([[c.path, c.label, c.speaker] for c in chosen])
    return path


def test_mixture_leave_one_corpus_out_with_calibration(tmp_path):
    """Two corpora (Emo-DB and EMOVO clips as CSV corpora) left out in turn: folds named by corpus, numbers per
    corpus, the calibration temperature in results.json and in the final model, trimming recorded in the model."""
    from ser.data.corpora import load_emovo

    emodb = small_csv(tmp_path, "german", load_emodb(require(EMODB)), ["03", "08"])
    emovo = small_csv(tmp_path, "italian", load_emovo(require(EMODB.parent / "emovo")), ["f1", "m1"])
    out = tmp_path / "run"
    train(tmp_path, "--corpus", "csv", "csv", "--data_root", emodb, emovo, "--protocol", "loco",
          "--encoder_config", tiny_spec(tmp_path, "logmel-cnn"), "--pooling", "stats", "--num_train_epochs", 1,
          "--normalisation", "speaker", "--normalisation_group", "corpus", "--corpus_balanced", "true",
          "--output_dir", out)
    results = json.loads((out / "results.json").read_text())
    assert results["corpus"] == "csv+csv" and results["protocol"]["description"] == "leave-one-corpus-out"
    folds = results["runs"][0]["folds"]
    assert [f["name"] for f in folds] == ["german", "italian"]
    assert folds[0]["test_speakers"] == ["german-03", "german-08"] and set(folds[0]["corpus"]) == {"german"}
    assert all(len(f["logits"]) == f["n_test"] and len(f["logits"][0]) == 3 for f in folds)
    assert set(results["summary"]["per_corpus"]) == {"german", "italian"}
    calibration = results["calibration"]
    assert calibration["temperature"] > 0 and 0 <= calibration["ece_calibrated"] <= 1
    assert results["trim_silence"] is True and results["normalisation_group"] == "corpus"
    assert results["training"]["corpus_balanced"] is True
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["calibration_temperature"] == pytest.approx(calibration["temperature"])
    assert config["normalisation"] == "speaker" and "trim_silence" not in config  # the extractor's, below
    extractor = json.loads((out / "final" / "preprocessor_config.json").read_text())
    assert extractor["speech_preparation"]["trim_silence"] is True


def test_whisper_trains_from_a_spec(tmp_path):
    """Whisper's log-mels are (mel bins, frames): train_ser.py crops and pads them along time like every other
    family (ser.data.inputs time-first features, transposed back by the collator), and the saved model predicts."""
    from helpers import WHISPER_SPEC as SPEC

    spec = tmp_path / "tiny-whisper.json"
    spec.write_text(json.dumps(SPEC))
    out = tmp_path / "run"
    train(tmp_path, "--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config", spec,
          "--only_folds", "speaker-03", "--num_train_epochs", 1, "--crop_seconds", 2, "--output_dir", out)
    results = json.loads((out / "results.json").read_text())
    assert results["encoder"]["family"] == "whisper" and results["runs"][0]["folds"][0]["n_test"] == 12

    from ser.inference.predictor import EmotionPredictor

    predictor = EmotionPredictor.from_pretrained(out / "final", runtime="fp32")
    clips = load_emodb(require(EMODB))[:3]
    scores = predictor.classify_batch([predictor.load_file(clip.path) for clip in clips])
    assert all(abs(sum(row.values()) - 1) < 1e-4 for row in scores)


@pytest.mark.parametrize("family,normalisation", [("whisper", "speaker"), ("whisper", "global"),
                                                  ("logmel-cnn", "speaker")])
def test_a_normalised_model_is_served_as_it_was_tested(tmp_path, family, normalisation):
    """A model that normalises with statistics (a frozen encoder's head: a speaker's, or the training clips' saved
    in the model; the log-mel CNN, fine-tuned whole: a speaker's log-mel statistics) gives, through the predictor
    and for a speaker-normalised model through `predict_ser.py --same-speaker`, the held-out fold's own test
    probabilities: training and serving share one definition of the statistics and of where they apply."""
    from helpers import WHISPER_SPEC as SPEC

    from ser.inference.predictor import EmotionPredictor

    spec = tmp_path / f"tiny-{family}.json"
    spec.write_text(json.dumps(SPEC if family == "whisper" else TINY_SPECS[family]))
    out = tmp_path / "run"
    # the global variant also trains on one cached perturbed copy of each clip (evaluated on the clips as they are)
    option = ["--normalisation", "speaker"] if normalisation == "speaker" else \
        ["--normalisation", "global", "--copies", 1]
    mode = ["--mode", "frozen", "--feature_layer", 1, "--pooled_norm", "true"] if family == "whisper" else []
    train(tmp_path, "--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config", spec,
          *mode, "--pooling", "stats", *option,
          "--only_folds", "speaker-03", "--num_train_epochs", 2, "--save_fold_models", "true",
          "--train_final_model", "false", "--output_dir", out)
    fold = json.loads((out / "speaker-03" / "fold_result.json").read_text())
    results = json.loads((out / "results.json").read_text())
    predictor = EmotionPredictor.from_pretrained(out / "speaker-03" / "model", runtime="fp32")
    if family == "whisper":
        copies = 1 if normalisation == "global" else 0
        assert results["feature_cache"]["misses"] == 36 * (1 + copies)  # the clips and their copies, encoded once
        assert (results["augmentation"] or {}).get("copies", 0) == copies
        assert predictor.model.config.frame_normalisation == normalisation
    else:
        assert predictor.model.config.normalisation == normalisation
    # what training did to the input, recorded in the model: the predictor repeats it
    assert predictor.detector == speech.DEFAULT and predictor.preparation.trim_silence
    assert predictor.preparation.level_normalisation
    clips = [c for c in load_emodb(require(EMODB)) if c.speaker == "03"][:12]
    audio = [predictor.load_file(clip.path) for clip in clips]
    stats = predictor.speaker_statistics(audio) if normalisation == "speaker" else None
    scores = predictor.classify_batch(audio, stats)
    got = np.array([[row[label] for label in predictor.labels] for row in scores])
    if normalisation == "speaker":  # as a user serves it: the command line, told the clips are one speaker's
        import predict_ser

        table = tmp_path / "served.csv"
        assert predict_ser.main(["--model", str(out / "speaker-03" / "model"), "--runtime", "fp32",
                                 "--same-speaker", *(str(clip.path) for clip in clips), "--output", str(table)]) == 0
        with open(table, newline="") as handle:
            served = {row["file"]: row for row in csv.DictReader(handle)}
        cli = np.array([[float(served[str(clip.path)][label]) for label in predictor.labels] for clip in clips])
        assert np.abs(cli - got).max() < 1e-5
    logits = np.array(fold["logits"])
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert np.abs(got - expected).max() < 2e-3  # the fold's logits are stored to 4 decimals
    assert got.argmax(1).tolist() == fold["y_pred"]
    if normalisation == "speaker":  # someone else's statistics change the answer: they are really used
        other = predictor.speaker_statistics([predictor.load_file(c.path) for c in load_emodb(require(EMODB))
                                              if c.speaker == "16"][:12])
        changed = predictor.classify_batch(audio, other)
        assert max(abs(a[k] - b[k]) for a, b in zip(scores, changed) for k in a) > 1e-3


def test_recipe_replaces_the_included_one_and_the_config_still_wins(tmp_path):
    """`--recipe` swaps the recipe a corpus config includes (the CNN instead of the Whisper default); the corpus
    config's own keys and then the command line still win."""
    from ser.training.arguments import parse_arguments

    config = ROOT / "configs" / "emodb.yaml"
    data, model, *_ = parse_arguments(["--config", str(config), "--output_dir", str(tmp_path)])
    assert model.encoder_name_or_path == "encoders/whisper-base" and model.mode == "frozen"
    data, model, _, training, _ = parse_arguments(["--config", str(config), "--recipe",
                                                   str(ROOT / "configs" / "recipes" / "logmel-cnn.yaml"),
                                                   "--num_train_epochs", "3"])
    assert model.encoder_name_or_path is None and model.encoder_config == "configs/encoders/logmel-cnn.json"
    assert data.corpus == ["emodb"] and training.output_dir == "runs/emodb" and training.num_train_epochs == 3


def test_speaker_normalisation_a_saved_model_could_not_repeat_is_refused(tmp_path):
    """A fine-tuned w2v-BERT normalises its filterbanks outside the model: its results are fine (with
    --train_final_model false), a saved model would be served without the normalisation, so saving one is refused
    before any training."""
    common = ["--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config", tiny_spec(tmp_path),
              "--normalisation", "speaker", "--only_folds", "speaker-03", "--num_train_epochs", 1]
    failed = train(tmp_path, *common, "--output_dir", tmp_path / "saved", check=False)
    assert failed.returncode != 0 and "would be served without it" in failed.stderr
    assert not (tmp_path / "saved" / "speaker-03").exists()
