"""Writes and publishes a Hub model repo: the final model, its feature extractor, results.json, the confusion
matrix and a model card rendered from results.json (never typed by hand)."""

import json
import shutil
from pathlib import Path

from huggingface_hub import HfApi, get_token

from feature_extraction_ser import Preparation, emotion_feature_extractor, shortest_seconds
from ser.reporting import results as results_file
from ser.reporting.card import CROSS_CORPUS_FILENAME, write_card

RUN_FILES = (results_file.FILENAME, "confusion_matrix.png")


def export_run(run_dir: str | Path, export_dir: str | Path, hub_model_id: str | None = None) -> Path:
    """Copies `<run_dir>/final` (weights, config, feature extractor, and modeling_ser.py for custom heads) with
    the run's results, then renders README.md. The folder is exactly what the Hub repo holds."""
    run_dir, export_dir = Path(run_dir), Path(export_dir)
    final = run_dir / "final"
    missing = [str(p) for p in (final / "model.safetensors", *(run_dir / f for f in RUN_FILES)) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"cannot export {run_dir}: missing {', '.join(missing)} (train with "
                                "--train_final_model true and let the folds finish first)")
    cross = export_dir / CROSS_CORPUS_FILENAME  # another run's results, added beside the model (add_cross_corpus)
    kept = cross.read_bytes() if cross.is_file() else None  # validated when add_cross_corpus stored it
    if export_dir.exists():
        shutil.rmtree(export_dir)  # a stale file (e.g. modeling_ser.py of an earlier custom head) must not linger
    shutil.copytree(final, export_dir)
    shutil.copy2(run_dir / "confusion_matrix.png", export_dir)
    results = results_file.read(run_dir)  # a first-format file is written back upgraded
    results["hub_model_id"] = hub_model_id or export_dir.name
    results_file.write(results, export_dir)
    if kept and json.loads(kept)["labels"] == results["labels"]:  # the same task: it still describes the recipe
        cross.write_bytes(kept)
    write_card(export_dir)
    return export_dir


def refresh(model_folder: str | Path) -> Path:
    """Re-writes an exported model folder as export writes it with the current code, from its own weights and
    results: config.json, modeling_ser.py (custom heads) and the feature extractor as `save_pretrained` writes them
    now, the same weights, the card rendered again. Run after changing modeling_ser.py or ser/reporting/card.py."""
    import tempfile

    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    import modeling_ser

    model_folder = Path(model_folder)
    modeling_ser.register_auto_classes()
    model = AutoModelForAudioClassification.from_pretrained(model_folder, dtype=torch.float32)
    extractor = upgraded_extractor(AutoFeatureExtractor.from_pretrained(model_folder), model.config)
    with tempfile.TemporaryDirectory() as staged:
        model.save_pretrained(staged)
        extractor.save_pretrained(staged)
        (model_folder / "modeling_ser.py").unlink(missing_ok=True)  # a head now saved as the stock class needs none
        for path in Path(staged).iterdir():
            shutil.copy2(path, model_folder / path.name)
    write_card(model_folder)
    return model_folder


LEGACY_PREPARATION = ("trim_silence", "speech_detector", "level_normalisation")


def upgraded_extractor(extractor, config):
    """A model saved while its config recorded how its clips were prepared: that record moved into its feature
    extractor (feature_extraction_ser.Preparation), where every path that loads the model applies it."""
    extractor = emotion_feature_extractor(extractor)
    if extractor.speech_preparation is None and hasattr(config, "trim_silence"):
        settings = {key: getattr(config, key, None) for key in LEGACY_PREPARATION}
        extractor.speech_preparation = Preparation(**settings, min_seconds=shortest_seconds(config)).to_dict()
    for key in LEGACY_PREPARATION:
        if hasattr(config, key):
            delattr(config, key)
    return extractor


def add_cross_corpus(model_folder: str | Path, loco_run_folder: str | Path) -> Path:
    """Stores a leave-one-corpus-out run's results beside a model as cross_corpus_results.json and re-renders the
    card, which then shows how the recipe does on corpora it never heard. `loco_run_folder` is the run's folder or
    its results.json; it must be a "loco" run over the model's labels. Returns the README path."""
    model_folder = Path(model_folder)
    model = results_file.read(model_folder)  # a model folder: its own results.json must be there and valid
    cross = results_file.read(loco_run_folder)  # validated, and a first-format file upgraded
    if cross["protocol"]["name"] != "loco":
        raise ValueError(f"{loco_run_folder}: protocol {cross['protocol']['name']!r}, not a leave-one-corpus-out run "
                         "(train with --protocol loco on a mixture)")
    if cross["labels"] != model["labels"]:
        raise ValueError(f"{loco_run_folder}: labels {cross['labels']} differ from the model's {model['labels']}; "
                         "its numbers would not describe this model's task")
    (model_folder / CROSS_CORPUS_FILENAME).write_text(json.dumps(cross, indent=1), encoding="utf-8")
    return write_card(model_folder)


def hub_repo(repo_id: str, token: str | None = None, private: bool = False) -> HfApi:
    """The Hub client, with the model repo created if missing: called before training too, so that a missing token
    or a refused repo stops a run at its start, not after it. The token comes from the argument, HF_TOKEN or
    `hf auth login`."""
    token = token or get_token()
    if not token:
        raise PermissionError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --hub_token")
    if "/" not in repo_id:
        raise ValueError(f"--hub_model_id must be 'org/name', got {repo_id!r}")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    return api


def push_folder(export_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Uploads the exported folder as it is."""
    api = hub_repo(repo_id, token, private)
    commit = api.upload_folder(folder_path=str(export_dir), repo_id=repo_id, repo_type="model",
                               commit_message="Upload speech-emotion model, results and card")
    return commit.commit_url
