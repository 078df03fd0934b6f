"""The fold loop (ser.training.experiment) in-process, on a few real Emo-DB clips and a tiny frozen encoder: what a fold
returns, that a finished fold is read back instead of retrained, that every fold starts from the same weights, and
that speaker-independent folds are checked."""

import json

import pytest
import torch

from helpers import small_emodb_csv, tiny_spec
from ser.data import splits
from ser.training.arguments import parse_arguments
from ser.training.experiment import build_experiment, prepare_folds, read_corpus
from ser.reporting.metrics import classification_metrics


@pytest.fixture
def experiment_parts(tmp_path):
    argv = ["--corpus", "csv", "--data_root", str(small_emodb_csv(tmp_path, per_speaker=6)), "--encoder_config",
            str(tiny_spec(tmp_path, "wavlm")), "--mode", "frozen", "--num_train_epochs", "2",
            "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true",
            "--output_dir", str(tmp_path / "run")]
    data_args, model_args, augment_args, training_args, _ = parse_arguments(argv)
    training_args.remove_unused_columns = False
    table, clips, names = read_corpus(data_args)
    folds, protocol = prepare_folds(clips, data_args)
    experiment, _, inputs = build_experiment(0, table, clips, names, data_args, model_args, augment_args,
                                             training_args)
    return experiment, clips, names, folds, protocol


def test_each_fold_reports_its_test_clips_and_the_metrics_of_its_predictions(experiment_parts):
    experiment, clips, names, folds, protocol = experiment_parts
    assert protocol["description"] == "leave-one-speaker-out" and len(folds) == 3
    results = experiment.run_folds(folds, clips, speaker_independent=True)
    for fold, result in zip(folds, results):
        assert result["name"] == fold.name and result["n_test"] == len(fold.test) == 6
        assert result["y_true"] == [names.index(clips[i].label) for i in fold.test]
        assert result["y_pred"] == [max(range(len(names)), key=row.__getitem__) for row in result["logits"]]
        metrics = classification_metrics(result["y_true"], result["y_pred"], len(names))
        assert {key: result[key] for key in metrics} == metrics
        assert json.loads((experiment.output_dir / fold.name / "fold_result.json").read_text()) == result


def test_a_finished_fold_is_read_back_and_every_fold_starts_from_the_same_weights(experiment_parts):
    experiment, clips, _, folds, _ = experiment_parts
    initial = {key: value.clone() for key, value in experiment.model.state_dict().items()}
    first = experiment.run_folds(folds[:1], clips, speaker_independent=True)
    trained = experiment.model.state_dict()
    assert any(not torch.equal(initial[key], trained[key]) for key in initial)
    done = experiment.output_dir / folds[0].name / "fold_result.json"
    stamp = done.stat().st_mtime_ns
    assert experiment.run_folds(folds[:1], clips, speaker_independent=True) == first  # read, not retrained
    assert done.stat().st_mtime_ns == stamp
    done.unlink()
    again = experiment.run_folds(folds[:1], clips, speaker_independent=True)  # retrained from the initial weights
    assert again[0]["logits"] == first[0]["logits"]


def test_a_fold_sharing_a_speaker_between_training_and_test_is_refused(experiment_parts):
    experiment, clips, _, folds, _ = experiment_parts
    leaky = splits.Fold(name="leaky", train=folds[0].train + folds[0].test[:1], test=folds[0].test,
                        test_speakers=folds[0].test_speakers)
    with pytest.raises(ValueError, match="speaker"):
        experiment.run_folds([leaky], clips, speaker_independent=True)


@pytest.mark.parametrize("recipe", [[], ["--recipe", "configs/recipes/logmel-cnn.yaml"]])
def test_the_resolved_configuration_repeats_the_run(tmp_path, recipe):
    """run_config.yaml holds what the corpus YAML, its recipe and the command line resolved to: read back as a
    config, it gives every option the same value, and no token is written."""
    from dataclasses import asdict

    from ser.training.arguments import write_resolved

    argv = ["--config", "configs/emodb.yaml", *recipe, "--learning_rate", "0.002", "--only_folds", "03", "08",
            "--hub_token", "secret", "--output_dir", str(tmp_path / "run")]
    resolved = parse_arguments(argv)
    path = write_resolved(tmp_path / "run", *resolved)
    assert "secret" not in path.read_text() and "learning_rate: 0.002" in path.read_text()
    again = parse_arguments(["--config", str(path)])
    for first, second in zip(resolved, again):
        as_dict = (lambda args: args.to_dict()) if hasattr(first, "to_dict") else asdict
        expected = {key: value for key, value in as_dict(first).items() if key != "hub_token"}
        assert {key: value for key, value in as_dict(second).items() if key != "hub_token"} == expected


def test_one_normalisation_flag_with_its_choices_declared_once(tmp_path, capsys, monkeypatch):
    """--normalisation takes modeling_ser.NORMALISATIONS (its help lists them all, argparse refuses others); what it
    normalises follows the family and mode, and a choice the model cannot carry is refused before any training."""
    import modeling_ser
    from ser.training.experiment import build_model

    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps the help at the terminal's width
    with pytest.raises(SystemExit):
        parse_arguments(["--help"])
    help_text = capsys.readouterr().out
    for name, meaning in modeling_ser.NORMALISATIONS.items():
        assert f"{name} ({meaning})" in help_text
    common = ["--corpus", "csv", "--data_root", "x.csv", "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        parse_arguments([*common, "--encoder_config", str(tiny_spec(tmp_path, "wavlm")), "--normalisation", "corpus"])

    def built(family, *options):
        model_args = parse_arguments([*common, "--encoder_config", str(tiny_spec(tmp_path, family)), *options])[1]
        return build_model(model_args, ["angry", "sad"])[0].config

    assert built("logmel-cnn").normalisation == "global"  # the family's default
    assert built("logmel-cnn", "--normalisation", "speaker").normalisation == "speaker"
    assert built("wavlm", "--mode", "frozen").frame_normalisation == "none"
    assert built("wavlm", "--mode", "frozen", "--normalisation", "utterance").frame_normalisation == "utterance"
    assert built("wavlm", "--normalisation", "speaker").frame_normalisation == "none"  # full mode: outside the model
    with pytest.raises(ValueError, match="always normalises its log-mels"):
        built("logmel-cnn", "--normalisation", "none")
    with pytest.raises(ValueError, match="needs --mode frozen"):
        built("wavlm", "--normalisation", "global")
