"""Writes and publishes a Hub model repo: the final model, its feature extractor, results.json, the confusion
matrix and a model card rendered from results.json (never typed by hand)."""

import shutil
from pathlib import Path

from huggingface_hub import HfApi, get_token

from ser import results as results_file
from ser.card import write_card

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
    if export_dir.exists():
        shutil.rmtree(export_dir)  # a stale file (e.g. modeling_ser.py of an earlier custom head) must not linger
    shutil.copytree(final, export_dir)
    shutil.copy2(run_dir / "confusion_matrix.png", export_dir)
    results = results_file.read(run_dir)  # a first-format file is written back upgraded
    results["hub_model_id"] = hub_model_id or export_dir.name
    results_file.write(results, export_dir)
    write_card(export_dir)
    return export_dir


def push_folder(export_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Uploads the exported folder as it is. The token comes from the argument, HF_TOKEN or `hf auth login`."""
    token = token or get_token()
    if not token:
        raise PermissionError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --hub_token")
    if "/" not in repo_id:
        raise ValueError(f"--hub_model_id must be 'org/name', got {repo_id!r}")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(export_dir), repo_id=repo_id, repo_type="model",
                               commit_message="Upload speech-emotion model, results and card")
    return commit.commit_url
