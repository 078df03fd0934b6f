"""scripts/deploy_space.py: a dry run lists only what the Space needs, with a requirements.txt a Space can install,
and the staged folder it would upload serves the demo on its own (`python app.py` there, as a Space starts it)."""

import ast
import importlib.metadata
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from gradio_client import Client, handle_file

from helpers import EMODB, ROOT, require
from helpers import free_port, serving
from ser.core.defaults import DEFAULT_MODEL

MODEL_CODE = ("modeling_ser", "feature_extraction_ser", "speech_ser")  # beside the app and beside the model
SPACE_FILES = {"README.md", "app.py", "packages.txt", "requirements.txt", "ser/__init__.py", "ser/demo/analysis.py",
               "ser/inference/predictor.py", "ser/core/defaults.py", f"{DEFAULT_MODEL}/model.safetensors", f"{DEFAULT_MODEL}/config.json",
               f"{DEFAULT_MODEL}/preprocessor_config.json", f"{DEFAULT_MODEL}/results.json",
               *(f"{folder}{name}.py" for name in MODEL_CODE for folder in ("", f"{DEFAULT_MODEL}/"))}


def without_pythonpath() -> dict[str, str]:
    """The environment without PYTHONPATH, so nothing points a child process at the repository."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[list[str], str, Path]:
    """One dry run with --stage: the listed files, the generated requirements and the staged folder."""
    staged = tmp_path_factory.mktemp("deploy") / "space"
    env = {**without_pythonpath(), "HF_HUB_OFFLINE": "1"}  # no network call may be needed, and none is possible
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "deploy_space.py"), "--space", "someone/ser-demo",
                           "--dry-run", "--stage", str(staged)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    listing, requirements = done.stdout.split("requirements.txt:\n", 1)
    files = [line.strip() for line in listing.splitlines()[1:]]
    return files, requirements, staged


def test_dry_run_lists_only_what_the_space_needs(dry_run):
    files, _, staged = dry_run
    assert SPACE_FILES <= set(files)
    assert not any(name.startswith(("runs/", "tests/", "benchmarks/", "configs/", ".venv/")) for name in files)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in files)
    training = {"ser/training/experiment.py", "ser/training/arguments.py", "ser/training/frozen.py", "ser/data/dataset.py", "ser/data/augment.py",
                "ser/training/run_outputs.py", "ser/training/convert_whisper.py", "ser/reporting/export.py"}
    assert not training & set(files)  # inference only: the modules app.py imports, not the training code
    models = {name.rsplit("/", 1)[0] for name in files if name.startswith("models/")}
    assert models == {DEFAULT_MODEL}  # the default model only, never the others under models/
    # The staged folder is exactly the list (it is what gets uploaded), with the generated requirements.
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == sorted(files)
    assert (staged / f"{DEFAULT_MODEL}/model.safetensors").read_bytes() == \
        (ROOT / f"{DEFAULT_MODEL}/model.safetensors").read_bytes()


def test_the_space_gets_its_own_readme_configured_and_the_repository_readme_has_none(dry_run):
    _, _, staged = dry_run
    space = (staged / "README.md").read_text()
    config = dict(line.split(": ", 1) for line in space.split("---")[1].strip().splitlines())
    gradio = re.search(r"^gradio==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert config["sdk"] == "gradio" and config["sdk_version"] == gradio and config["app_file"] == "app.py"
    card = (ROOT / DEFAULT_MODEL / "README.md").read_text()
    assert f"license: {config['license']}" in card  # the default model's licence, not a second one
    assert not (ROOT / "README.md").read_text().startswith("---")


def test_requirements_pin_the_cpu_torch_and_leave_out_tests_and_benchmarks(dry_run):
    _, requirements, staged = dry_run
    assert (staged / "requirements.txt").read_text() == requirements
    lines = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    torch_pin = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert f"torch=={torch_pin}+cpu" in lines
    names = {re.match(r"[\w.-]+", line).group(0).lower() for line in lines if not line.startswith("--")}
    assert not names & {"pytest", "playwright", "opensmile", "setuptools", "gradio", "gradio_client"}
    assert {"transformers", "huggingface_hub", "soundfile", "soxr", "onnxruntime"} <= names


def test_every_import_of_the_space_is_installed_there(dry_run):
    """A Space installs requirements.txt on top of gradio (and gradio's own dependencies); every third-party module
    the staged code imports, at the top or inside a function, must come from one of them."""
    _, requirements, staged = dry_run
    installed = {re.match(r"[\w.-]+", line).group(0) for line in requirements.splitlines()
                 if line and not line.startswith(("#", "--"))}
    installed |= {"gradio", "gradio_client"}
    installed |= {re.match(r"[\w.-]+", spec).group(0) for spec in importlib.metadata.requires("gradio")
                  if "extra ==" not in spec}
    installed = {normalise(name) for name in installed}
    local = {"app", "ser", *MODEL_CODE}
    distributions = importlib.metadata.packages_distributions()
    missing = set()
    for path in staged.rglob("*.py"):
        for module in imported_modules(path):
            if module in sys.stdlib_module_names or module in local:
                continue
            if not {normalise(name) for name in distributions.get(module, [module])} & installed:
                missing.add(f"{module} ({path.relative_to(staged)})")
    assert not missing, f"imported on the Space but not installed there: {sorted(missing)}"


def test_every_module_of_the_package_the_space_imports_is_staged(dry_run):
    """Only part of `ser` is staged: every `ser` module a staged file imports, in a function too (a runtime or an
    upload the demo's first request may not reach), must be there."""
    _, _, staged = dry_run
    absent = set()
    for path in staged.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ser"):
                continue
            folder = node.module.replace(".", "/")
            if (ROOT / folder).is_dir():  # a package: its named modules (or subpackages)
                wanted = [f"{folder}/{alias.name}.py" if (ROOT / folder / f"{alias.name}.py").exists()
                          else f"{folder}/{alias.name}/__init__.py" for alias in node.names]
            else:
                wanted = [folder + ".py"]
            absent |= {f"{name} ({path.relative_to(staged)})" for name in wanted if not (staged / name).is_file()}
    assert not absent, f"imported on the Space but not staged: {sorted(absent)}"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every absolute import in a file."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_staged_space_serves_a_prediction(dry_run, tmp_path):
    """`python app.py` in the staged folder, configured only through the variables a Space sets, answers /predict
    on a real Emo-DB clip, with the staged copy of `ser` (not the repository's, installed editable in this venv)."""
    clip = require(EMODB / "wav" / "03a01Wa.wav")
    _, _, staged = dry_run
    port = free_port()
    env = {**without_pythonpath(), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}  # uploads land in tmp, not in the shared /tmp/gradio
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the bytecode written below is the proof of which `ser` ran
    with serving([sys.executable, "app.py"], staged, env, port, tmp_path / "space.log") as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"), analytics_enabled=False)
        result = client.predict(handle_file(str(clip)), api_name="/predict")
    scores = {item["label"]: item["confidence"] for item in result["confidences"]}
    assert result["label"] in scores and abs(sum(scores.values()) - 1) < 1e-4, result
    # The staged app imported its own ser: Python wrote the staged modules' bytecode beside them.
    assert list((staged / "ser" / "demo" / "__pycache__").glob("analysis.*.pyc")), "the staged app did not import its own ser"


def test_upload_creates_the_space_and_uploads_the_staged_folder(monkeypatch, tmp_path):
    """The network side with a stand-in HfApi: the calls and their arguments, and the plain error without a token."""
    import huggingface_hub

    deploy_space = SimpleNamespace(**runpy.run_path(str(ROOT / "scripts" / "deploy_space.py")))  # a script, not a module
    calls = []

    class RecordingApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **options):
            calls.append(("create_repo", repo_id, options))
            return f"https://huggingface.co/spaces/{repo_id}"

        def upload_folder(self, **options):
            calls.append(("upload_folder", options))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(PermissionError, match="hf auth login.*HF_TOKEN"):
        deploy_space.upload(tmp_path, "someone/ser-demo", private=False)
    assert not calls
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    assert deploy_space.upload(tmp_path, "someone/ser-demo", private=True).endswith("/spaces/someone/ser-demo")
    assert calls[1] == ("create_repo", "someone/ser-demo",
                        dict(repo_type="space", space_sdk="gradio", private=True, exist_ok=True))
    upload = calls[2][1]
    assert (upload["folder_path"], upload["repo_id"], upload["repo_type"]) == (tmp_path, "someone/ser-demo", "space")
