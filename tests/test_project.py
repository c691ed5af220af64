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


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _undocumented_public_names() -> list[str]:
    """Public (no leading underscore) module-level classes and functions of sqlvec/ and wire/,
    and public methods of public classes, that have no docstring. Exempt, by decision:
    dunder methods (their contract is Python's); a `@property` whose body is one `return`
    (a trivial getter: its name says it all); and an override of a method documented in a
    base class of the same project, which inherits that docstring as `inspect.getdoc` does."""
    trees = {_module_name(p): ast.parse(p.read_text())
             for pkg in ("sqlvec", "wire") for p in sorted((ROOT / pkg).rglob("*.py"))}
    classes = {mod: {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
               for mod, tree in trees.items()}
    imported = {mod: {a.asname or a.name: node.module for node in tree.body
                      if isinstance(node, ast.ImportFrom) and node.module in trees
                      for a in node.names}
                for mod, tree in trees.items()}
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)

    def resolve(mod: str, base: ast.expr) -> tuple[str, ast.ClassDef] | None:
        name = base.id if isinstance(base, ast.Name) else None
        home = imported[mod].get(name, mod) if name else None
        cls = classes.get(home, {}).get(name) if home else None
        return (home, cls) if cls is not None else None

    def inherits_doc(mod: str, cls: ast.ClassDef, method: str, depth: int = 0) -> bool:
        for base in cls.bases:
            found = resolve(mod, base)
            if found is None or depth > 10:
                continue
            home, parent = found
            if any(isinstance(f, functions) and f.name == method and ast.get_docstring(f)
                   for f in parent.body) or inherits_doc(home, parent, method, depth + 1):
                return True
        return False

    def trivial_property(fn: ast.FunctionDef) -> bool:
        is_property = any(isinstance(d, ast.Name) and d.id in ("property", "cached_property")
                          for d in fn.decorator_list)
        return is_property and len(fn.body) == 1 and isinstance(fn.body[0], ast.Return)

    missing = []
    for mod, tree in trees.items():
        for node in tree.body:
            if not isinstance(node, (*functions, ast.ClassDef)) or node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                missing.append(f"{mod}.{node.name}")
            if not isinstance(node, ast.ClassDef):
                continue
            for fn in node.body:
                if not isinstance(fn, functions) or fn.name.startswith("_") \
                        or ast.get_docstring(fn) is not None or trivial_property(fn) \
                        or inherits_doc(mod, node, fn.name):
                    continue
                missing.append(f"{mod}.{node.name}.{fn.name}")
    return missing


def test_public_classes_and_functions_say_why_they_exist():
    """Every public class, function and method of the engine and the wire has a docstring (see
    `_undocumented_public_names` for what is exempt), so a newcomer can read a module's
    contracts without reverse-engineering them."""
    missing = _undocumented_public_names()
    assert not missing, "no docstring:\n" + "\n".join(missing)
