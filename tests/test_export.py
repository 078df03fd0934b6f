"""Export a trained tiny model as a Hub repo folder; the card parses and matches results.json; the folder loads
with the stock pipeline in a fresh process; the push path fails clearly without a token."""

import json
import shutil

import pytest
from huggingface_hub import ModelCard

from helpers import EMODB, ROOT
from ser.reporting import results as results_file
from helpers import run_fresh_pipeline, run_fresh_pipelines
from helpers import small_emodb_csv, tiny_spec, train


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("export")
    out, export = tmp_path / "run", tmp_path / "ser-w2vbert-emodb"
    done = train(tmp_path, "--corpus", "csv", "--data_root", small_emodb_csv(tmp_path), "--encoder_config",
                 tiny_spec(tmp_path), "--only_folds", "speaker-03", "speaker-09", "--num_train_epochs", 1,
                 "--feature_layer", "weighted", "--output_dir", out, "--export_dir", export,
                 "--hub_model_id", "org/ser-w2vbert-emodb", "--language", "de",
                 # clips as they are: a stock head whose extractor prepares nothing needs no code of ours
                 "--trim_silence", "false", "--level_normalisation", "false")
    assert f"exported: {export}" in done.stdout
    return tmp_path, out, export


def test_export_folder_holds_the_repo(exported):
    _, _, export = exported
    names = {p.name for p in export.iterdir()}
    assert names == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "results.json",
                     "confusion_matrix.png"}  # a stock-expressible head: no code file, no auto_map
    assert json.loads((export / "config.json").read_text())["architectures"] == ["Wav2Vec2BertForSequenceClassification"]


def test_card_metadata_matches_results(exported):
    _, _, export = exported
    results = results_file.read(export)
    assert json.loads((export / "results.json").read_text()) == results  # written in the current format
    assert results["hub_model_id"] == "org/ser-w2vbert-emodb"
    card = ModelCard.load(export / "README.md")
    assert card.data.pipeline_tag == "audio-classification" and card.data.language == "de"
    measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
    headline = results_file.headline(results)  # pooled metrics, mean over seeds
    assert measured == {"accuracy": headline["wa"]["mean"], "recall": headline["ua"]["mean"],
                        "f1": headline["macro_f1"]["mean"]}
    assert f"- Seeds: {headline['seeds']} (" in card.text
    assert "speaker-independent" in card.data.eval_results[0].dataset_split
    assert 'pipeline("audio-classification", model="org/ser-w2vbert-emodb")' in card.text
    assert "trained from scratch" in card.text and "trust_remote_code" not in card.text


def test_exported_folder_loads_in_fresh_process_without_remote_code(exported):
    _, _, export = exported
    result = run_fresh_pipeline(export, EMODB / "wav" / "03a01Wa.wav", remote=False)
    assert result["class"] == "Wav2Vec2BertForSequenceClassification"
    assert {r["label"] for r in result["out"]} == set(json.loads((export / "results.json").read_text())["labels"])
    assert sum(r["score"] for r in result["out"]) == pytest.approx(1.0, abs=1e-5)


def test_push_without_token_fails_clearly_and_with_one_reaches_the_upload(exported, monkeypatch):
    tmp_path, out, export = exported
    common = ["--corpus", "csv", "--data_root", tmp_path / "corpus.csv", "--encoder_config",
              tmp_path / "tiny-wav2vec2-bert.json", "--only_folds", "speaker-03", "speaker-09",
              "--num_train_epochs", 1, "--feature_layer", "weighted", "--output_dir", out,
              "--export_dir", tmp_path / "again", "--hub_model_id", "org/ser-w2vbert-emodb", "--push_to_hub", "true"]
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    no_token = train(tmp_path, *common[:-8], "--output_dir", tmp_path / "fresh", *common[-6:], check=False)
    assert no_token.returncode != 0 and "no Hugging Face token" in no_token.stderr
    assert not (tmp_path / "fresh" / "speaker-03").exists()  # refused before any training
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_that_cannot_be_used")
    offline = train(tmp_path, *common, check=False)  # HF_HUB_OFFLINE=1: the first Hub call is refused
    assert offline.returncode != 0 and "create_repo" in offline.stderr and "offline" in offline.stderr.lower()
    bad = train(tmp_path, *common[:-4], "--push_to_hub", "true", check=False)
    assert bad.returncode != 0 and "--hub_model_id" in bad.stderr


def test_shipped_models_are_what_the_current_code_writes(tmp_path):
    """Every committed model folder equals what `scripts/refresh_models.py` writes from its own weights and results
    with the current code (config, modeling_ser.py, feature extractor, card): a folder that differs would load other
    code, or state other facts, on the Hub than the code tested here."""
    from ser.reporting.export import refresh

    folders = sorted(config.parent for config in (ROOT / "models").glob("*/config.json"))
    assert folders, "no exported models in models/"
    for folder in folders:
        copy = shutil.copytree(folder, tmp_path / folder.name, ignore=shutil.ignore_patterns("onnx"))
        refresh(copy)
        written = sorted(path.name for path in copy.iterdir())
        assert written == sorted(path.name for path in folder.iterdir() if path.name != "onnx"), folder.name
        for name in written:
            assert (copy / name).read_bytes() == (folder / name).read_bytes(), \
                f"models/{folder.name}/{name} is not what the current code writes: run scripts/refresh_models.py"


@pytest.mark.slow
def test_shipped_models_load_in_the_stock_pipeline_in_a_fresh_process(tmp_path):
    """Every model folder in the repo, as a Hub user would load it: the stock pipeline, no project code (a copy, so
    the remote-code module cache is not written into the repository)."""
    configs = sorted((ROOT / "models").glob("*/config.json"))
    folders = [(shutil.copytree(config.parent, tmp_path / config.parent.name, ignore=shutil.ignore_patterns("onnx")),
                "auto_map" in config.read_text()) for config in configs]
    results = run_fresh_pipelines(folders, EMODB / "wav" / "03a01Wa.wav")  # one process: it imports transformers once
    for config, result in zip(configs, results):
        labels = json.loads(config.read_text())["id2label"].values()
        assert {row["label"] for row in result["out"]} == set(labels), config.parent.name
