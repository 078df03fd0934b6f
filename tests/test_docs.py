"""The documentation a user follows: README.md and docs/*.md.

Every fenced shell command that runs one of our scripts (`python X.py ...`, `python -m ser....`, `bash scripts/...`,
`accelerate launch X.py ...`, and the console scripts of pyproject.toml such as `ser-predict`) names a script that
exists, only `--flags` that script accepts (read from the parser the script builds, once per script), and repository paths
(configs/..., models/..., scripts/..., benchmarks/..., ...) that exist. No page names an issue of the tracker, every
relative link resolves, and README.md is a short front page that reaches using the models early.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shlex
import sys
import tomllib
import warnings
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

SHELL_FENCES = {"bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3", ".venv/bin/python"}
# Top-level folders of the repository: a command's word starting with one of them is a path that must exist.
REPOSITORY_ROOTS = {"configs", "models", "scripts", "benchmarks", "results", "tests", "docs", "metrics", "ser"}
# Flags whose value is something the command writes or an id, not a file that must exist beforehand.
OUTPUT_FLAGS = {"--output", "--output_dir", "--export_dir", "--export_dataset_dir", "--plot", "--stage", "--name",
                "--hub_model_id", "--feature_cache_dir"}
# Placeholders a reader replaces (a word containing <...> is one too).
PLACEHOLDERS = {"my.wav", "FOLDER"}
ISSUE_REFERENCE = re.compile(r"\bissues?\s*#?\d+|#\d{2,}", re.IGNORECASE)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of a markdown page."""
    return [(match[1].strip().lower(), match[2])
            for match in re.finditer(r"^```([^\n`]*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def shell_commands(body: str) -> list[list[str]]:
    """The commands of a shell block as word lists: continuation lines joined, comments dropped, variables assigned in
    the block (`P="--flag value"`) expanded, `&&` / `;` / `|` separating commands, leading `VAR=value` and `time`
    words removed."""
    variables: dict[str, str] = {}

    def expand(line: str) -> str:
        return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: variables.get(m[1], m[0]), line)

    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(expand(line), comments=True)
        if not words:
            continue
        assignment = re.fullmatch(r"([A-Za-z_]\w*)=(.*)", words[0]) if len(words) == 1 else None
        if assignment:
            variables[assignment[1]] = assignment[2]
            continue
        command: list[str] = []
        for word in [*words, ";"]:
            if word in {"&&", "||", ";", "|"}:
                while command and (re.fullmatch(r"[A-Za-z_]\w*=.*", command[0]) or command[0] == "time"):
                    command.pop(0)
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(word)
    return commands


@cache
def console_scripts() -> dict[str, str]:
    """Console command -> module (`ser-predict` -> `predict_ser`), from pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


def module_file(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


class _Parser(Exception):
    """Raised instead of parsing, to hand over the parser a script built."""

    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def built_parser(kind: str, name: str) -> argparse.ArgumentParser:
    """The argument parser a script (or `python -m` module) builds, caught when it starts parsing: the script runs in
    this process up to that point (its imports), and no further."""
    original = argparse.ArgumentParser.parse_known_args

    def catch(self, *args, **kwargs):
        raise _Parser(self)

    argv, path, cwd = sys.argv, list(sys.path), os.getcwd()
    argparse.ArgumentParser.parse_known_args = catch
    try:
        with warnings.catch_warnings():
            # a module the tests imported already runs again as __main__, which runpy remarks on
            warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
            os.chdir(ROOT)
            sys.argv = [name]
            if kind == "script":
                sys.path.insert(0, str((ROOT / name).parent))  # as `python X.py` does (benchmarks import _common)
                runpy.run_path(str(ROOT / name), run_name="__main__")
            else:
                runpy.run_module(name, run_name="__main__", alter_sys=True)
    except _Parser as found:
        return found.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original
        sys.argv, sys.path[:] = argv, path
        os.chdir(cwd)
    raise AssertionError(f"{name} ran to its end without parsing arguments")


@cache
def accepted_flags(target: tuple[str, ...]) -> frozenset[str]:
    """Every --flag of the parser a script builds (target: `("script", path)`, `("module", name)` or
    `("accelerate",)`), with the flags its argument parsing reads from argv before the parser (`"--config" in
    argv`). A script without an argument parser accepts none, and is not run."""
    if target == ("accelerate",):
        from accelerate.commands.launch import launch_command_parser

        parser, source = launch_command_parser(), ""
    else:
        kind, name = target
        source = (ROOT / name if kind == "script" else module_file(name)).read_text()
        if not re.search(r"ArgumentParser|parse_arguments|parse_args", source):
            return frozenset()
        parser = built_parser(kind, name)
    flags = {option for option in parser._option_string_actions if option.startswith("--")}
    if "parse_arguments" in source:
        # train_ser.py's parsing reads --config and --recipe from argv before the parser (ser/training/arguments.py)
        for path in sorted((ROOT / "ser").rglob("*.py")):
            flags.update(re.findall(r"""["'](--[\w-]+)["']\s+in\s+argv""", path.read_text()))
    return frozenset(flags)


def ours(command: list[str]) -> tuple[tuple[str, ...], list[str], list[str]] | None:
    """(script target, the script's arguments, accelerate's own arguments) of a command that runs our code, or
    None for any other program (git, pip, ...)."""
    program, *rest = command
    launcher_arguments: list[str] = []
    if program == "accelerate" and rest[:1] == ["launch"]:
        at = next((i for i, word in enumerate(rest) if word.endswith(".py")), None)
        assert at is not None, f"accelerate launch without a script: {shlex.join(command)}"
        launcher_arguments, program, rest = rest[1:at], rest[at], rest[at + 1:]
        return ("script", program), rest, launcher_arguments
    if program in PYTHONS:
        if rest[:1] == ["-m"]:
            return (("module", rest[1]), rest[2:], []) if rest[1].split(".")[0] in {"ser", *REPOSITORY_ROOTS} \
                else None
        if rest and rest[0].endswith(".py"):
            return ("script", rest[0]), rest[1:], []
        return None
    if program == "bash" and rest and rest[0].startswith("scripts/"):
        return ("bash", rest[0]), rest[1:], []
    if program in console_scripts():
        module = console_scripts()[program]
        target = ("script", f"{module}.py") if (ROOT / f"{module}.py").is_file() else ("module", module)
        return target, rest, []
    return None


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for language, body in fenced_blocks(page.read_text()):
            if language in SHELL_FENCES:
                found += [(page.relative_to(ROOT).as_posix(), command) for command in shell_commands(body)]
    return found


COMMANDS = [(page, command) for page, command in documented_commands() if ours(command)]


def repository_paths(arguments: list[str]) -> list[str]:
    """The words that name a path inside the repository, except the values of output flags and placeholders."""
    paths = []
    for before, word in zip(["", *arguments], arguments):
        if before.split("=")[0] in OUTPUT_FLAGS or word.startswith("-") or word in PLACEHOLDERS or "<" in word:
            continue
        value = word.split("=", 1)[1] if re.fullmatch(r"[\w.-]+=.+", word) else word
        if value.split("/")[0] in REPOSITORY_ROOTS and "/" in value:
            paths.append(value)
    return paths


def test_the_pages_have_commands_of_ours():
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "docs/training.md", "docs/inference.md", "docs/results.md", "docs/demo.md"} <= pages
    assert len(COMMANDS) > 50


def test_the_parser_sees_through_variables_continuations_and_launchers():
    body = 'P="--speech_detector energy"\nSER_X=1 time python train_ser.py --config configs/emodb.yaml $P \\\n' \
           '    --output_dir runs/x   # comment --not_a_flag\naccelerate launch --num_processes 2 predict_ser.py a.wav\n'
    commands = shell_commands(body)
    assert commands == [["python", "train_ser.py", "--config", "configs/emodb.yaml", "--speech_detector", "energy",
                         "--output_dir", "runs/x"],
                        ["accelerate", "launch", "--num_processes", "2", "predict_ser.py", "a.wav"]]
    assert ours(commands[1]) == (("script", "predict_ser.py"), ["a.wav"], ["--num_processes", "2"])
    assert ours(["ser-adapt", "m", "a", "--output", "o"])[0] == ("module", "ser.training.adaptation")
    assert ours(["git", "show", "x"]) is None
    assert repository_paths(["--config", "configs/x.yaml", "--export_dir", "models/new", "my.wav", "<dir>/a"]) \
        == ["configs/x.yaml"]


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{page}:{shlex.join(c)[:80]}" for page, c in COMMANDS])
def test_documented_command_names_real_scripts_flags_and_files(page, command):
    target, arguments, launcher_arguments = ours(command)
    kind, name = target
    script = ROOT / name if kind in {"script", "bash"} else module_file(name)
    assert script.is_file(), f"{page}: `{shlex.join(command)}` runs {name}, which does not exist"

    flags = {word.split("=")[0] for word in arguments if word.startswith("--")}
    if kind == "bash":
        # scripts/test.sh hands its arguments to pytest; the other shell scripts take none.
        assert name == "scripts/test.sh" or not arguments, f"{page}: {name} takes no arguments: {shlex.join(command)}"
    else:
        unknown = sorted(flags - accepted_flags(target))
        assert not unknown, f"{page}: {name} does not accept {unknown}: `{shlex.join(command)}`"
    launcher_flags = {word.split("=")[0] for word in launcher_arguments if word.startswith("--")}
    unknown = sorted(launcher_flags - accepted_flags(("accelerate",)))
    assert not unknown, f"{page}: accelerate launch does not accept {unknown}: `{shlex.join(command)}`"

    missing = [path for path in repository_paths(arguments) if not (ROOT / path).exists()]
    assert not missing, f"{page}: `{shlex.join(command)}` names {missing}, which do not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_no_page_names_an_issue(page):
    found = [(number, line) for number, line in enumerate(page.read_text().splitlines(), 1)
             if ISSUE_REFERENCE.search(line)]
    assert not found, f"{page.name} names issues (they belong in CHANGELOG.md): {found}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    targets = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)
               if not re.match(r"[a-z]+:|#", target)]
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.name} links to {missing}"


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 170, f"README.md has {len(lines)} lines: details belong in docs/"
    first = "\n".join(lines[:60])
    for needed in ("predict_ser.py", "pipeline(", "python app.py"):
        assert needed in first, f"{needed!r} is not within README.md's first 60 lines"
