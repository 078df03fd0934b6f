"""The package's layout: every module in the folder of its stage, and imports that run downward only (a module may
use its own stage and the stages below it), so the Space ships core, inference and demo and nothing else."""

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "ser"
# What each stage may import besides itself: training and the demo use inference, never the reverse.
BELOW = {
    "core": set(),
    "data": {"core"},
    "inference": {"core"},
    "reporting": {"core", "data"},
    "training": {"core", "data", "inference", "reporting"},
    "demo": {"core", "inference"},
}


def stage_imports(path: Path) -> set[str]:
    """The stages a module imports anywhere in it, function-level imports included (they run too)."""
    stages = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "ser" else [])
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        stages |= {name.split(".")[1] for name in names if name.startswith("ser.")}
    return stages


def test_every_module_lives_in_its_stage_and_each_stage_says_what_it_is():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(BELOW)
    for stage in BELOW:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "\n" not in doc.strip(), stage


def test_imports_run_downward_only():
    wrong = []
    for stage, allowed in BELOW.items():
        for path in sorted((PACKAGE / stage).glob("*.py")):
            for used in stage_imports(path) - allowed - {stage}:
                wrong.append(f"{path.relative_to(ROOT)} imports ser.{used}")
    assert not wrong, "\n".join(wrong)
