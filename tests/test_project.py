"""Project-level contracts: the README's test command is what CI runs; import layers hold."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", quick, re.S)


def test_readme_quick_start_has_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "sqlvec serve" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = readme_commands()[1].strip()
    assert test_command in ci.splitlines()


def test_import_layers_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (it is part of the test extra)")
    result = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_executor_imports_at_module_level_and_only_public_names():
    """Modules of sqlvec/execution import each other at the top (the import-linter contract then
    sees every dependency and forbids cycles) and never a private `_name` of another module."""
    problems = []
    for path in sorted((ROOT / "sqlvec" / "execution").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if id(node) not in top:
                problems.append(f"{where}: import inside a function or class")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlvec"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    problems.append(f"{where}: private names {private} from {node.module}")
    assert not problems, "\n".join(problems)


def test_cli_help_explains_serve():
    out = subprocess.run([sys.executable, "-m", "wire", "serve", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "--data-dir" in out and "sqlvec-data" in out
